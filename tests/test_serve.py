"""`zoo serve` with real HTTP requests on 127.0.0.1: endpoints, 4xx for every bad request while
the server stays up, a bounded concurrent load, and the CLI end to end (train -> export ->
sample -> serve)."""

from __future__ import annotations

import http.client
import io
import json
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from export_fixtures import shared_exports
from PIL import Image

from exporters import runtime, server

ZOO = [str(Path(sys.executable).with_name("zoo"))]
if not Path(ZOO[0]).exists():
    ZOO = [sys.executable, "-m", "zoo.cli"]


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    return shared_exports(tmp_path_factory)


def call(address, method, path, body=None, headers=None, timeout=60):
    """(status, content type, body bytes) of one request on a fresh connection."""
    connection = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def _running_server(artifact):
    """A server on a free loopback port for the duration of a fixture."""
    srv = server.make_server(artifact, "127.0.0.1", 0)
    srv.start_background()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def cgan_server(exports):
    yield from _running_server(exports("cgan").path("generator.onnx"))


@pytest.fixture(scope="module")
def gan_server(exports):
    yield from _running_server(exports("gan").path("generator-b1.tflite"))


def test_health_metadata_generate_and_png(cgan_server, exports):
    address = cgan_server.server_address[:2]
    assert call(address, "GET", "/health")[::2] == (200, b'{"status": "ok"}')
    status, kind, body = call(address, "GET", "/v1/metadata")
    meta = json.loads(body)
    assert status == 200 and kind == "application/json"
    assert (meta["family"], meta["num_classes"], meta["latent_dim"]) == ("cgan", 10, 16)
    assert meta["image_shape"] == [28, 28, 1] and meta["format"] == "onnx"

    status, _, body = call(address, "POST", "/v1/generate",
                           {"n": 4, "labels": [0, 1, 2, 3], "seed": 1})
    reply = json.loads(body)
    assert status == 200 and reply["shape"] == [4, 28, 28, 1]
    images = np.asarray(reply["images"], dtype=np.uint8)
    expected = runtime.load(exports("cgan").path("generator.onnx")).generate(
        4, labels=[0, 1, 2, 3], seed=1
    )
    assert np.array_equal(images, expected)  # the same seed gives the same images

    status, kind, body = call(address, "GET", "/v1/generate.png?n=16&seed=2&labels=3")
    assert status == 200 and kind == "image/png"
    picture = Image.open(io.BytesIO(body))
    assert picture.size == (4 * 30 + 2, 4 * 30 + 2)  # 4x4 grid of 28px images, 2px padding


@pytest.mark.parametrize(
    "method,path,body,status,fragment",
    [
        ("POST", "/v1/generate", "{not json", 400, "not valid JSON"),
        ("POST", "/v1/generate", [1, 2], 400, "JSON object"),
        ("POST", "/v1/generate", {"n": 2, "labels": [0, 1], "extra": 1}, 400, "unknown fields"),
        ("POST", "/v1/generate", {"n": 0, "labels": []}, 400, "positive integer"),
        ("POST", "/v1/generate", {"n": "4", "labels": [0] * 4}, 400, "positive integer"),
        ("POST", "/v1/generate", {"n": 257, "labels": [0] * 257}, 400, "at most 256"),
        ("POST", "/v1/generate", {"n": 2}, 400, "conditional: pass labels"),
        ("POST", "/v1/generate", {"n": 2, "labels": [0, 10]}, 400, "out of range"),
        ("POST", "/v1/generate", {"n": 3, "labels": [0, 1]}, 400, "expected 3 labels"),
        ("POST", "/v1/generate", {"n": 2, "labels": ["a", "b"]}, 400, "must be integers"),
        ("POST", "/v1/generate", {"n": 2, "labels": [0, 1], "seed": -5}, 400, "seed must be"),
        ("POST", "/v1/generate", {"n": 2, "labels": [0, 1], "seed": 1.5}, 400, "seed must be"),
        ("GET", "/v1/generate.png?n=abc", None, 400, "n must be an integer"),
        ("GET", "/v1/generate.png?n=4&labels=a,b", None, 400, "comma-separated integers"),
        ("GET", "/v1/generate.png?n=4&labels=1,2", None, 400, "expected 4 labels"),
        ("GET", "/v1/generate.png?n=2000&labels=1", None, 400, "at most"),
        ("GET", "/v1/generate.png?n=4&labels=1&colour=red", None, 400, "unknown parameters"),
        ("GET", "/v1/generate", None, 405, "not allowed"),
        ("DELETE", "/health", None, 405, "not allowed"),
        ("GET", "/v2/everything", None, 404, "no endpoint"),
    ],
)
def test_bad_requests_are_4xx_with_a_message(cgan_server, method, path, body, status, fragment):
    address = cgan_server.server_address[:2]
    got, kind, reply = call(address, method, path, body)
    assert got == status and kind == "application/json", (got, reply[:200])
    assert fragment in json.loads(reply)["error"]
    assert call(address, "GET", "/health")[0] == 200  # still up


def test_oversized_and_malformed_bodies(cgan_server):
    address = cgan_server.server_address[:2]
    status, _, reply = call(address, "POST", "/v1/generate", "x" * (server.MAX_BODY_BYTES + 1))
    assert status == 413 and "at most" in json.loads(reply)["error"]
    status, _, reply = call(address, "POST", "/v1/generate", "{}", {"Content-Length": "-1"})
    assert status == 413 or status == 400
    assert call(address, "GET", "/health")[0] == 200


def test_unconditional_server_refuses_labels(gan_server):
    address = gan_server.server_address[:2]
    status, _, reply = call(address, "POST", "/v1/generate", {"n": 2, "labels": [0, 1]})
    assert status == 400 and "unconditional" in json.loads(reply)["error"]
    status, _, reply = call(address, "POST", "/v1/generate", {"n": 3, "seed": 0})
    assert status == 200 and json.loads(reply)["shape"] == [3, 28, 28, 1]


def test_concurrent_requests_are_all_served(cgan_server):
    """64 requests from 16 clients at once (JSON and PNG), bounded in time, all answered right."""
    address = cgan_server.server_address[:2]

    def one(i):
        if i % 2:
            return call(address, "GET", f"/v1/generate.png?n=8&seed={i % 4}&labels={i % 10}")
        return call(address, "POST", "/v1/generate",
                    {"n": 8, "labels": [i % 10] * 8, "seed": i % 4})

    start = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(one, range(64)))
    assert time.monotonic() - start < 120
    assert [status for status, _, _ in replies] == [200] * 64
    by_request = {}
    for i, (_, _, body) in enumerate(replies):
        by_request.setdefault((i % 2, i % 4, i % 10), set()).add(body)
    assert all(len(bodies) == 1 for bodies in by_request.values())  # deterministic under load


# ---- the CLI end to end -------------------------------------------------------------------------
def zoo_cli(*args, timeout=300):
    return subprocess.run([*ZOO, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, check=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_cli_train_export_sample_serve(tmp_path, capsys):
    from zoo import cli

    run = tmp_path / "run"
    result = zoo_cli("train", "cgan", "--dataset", "digits", "--epochs", "1", "--steps-per-epoch",
                     "2", "--batch-size", "64", "--seed", "1", "--verbose", "0", "--model-arg",
                     "base_filters=8", "--model-arg", "latent_dim=8", "--out", run,
                     "--export", "onnx")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run / "export" / "manifest.json").is_file()

    # `zoo export` in this process (TensorFlow is loaded already): same handler, less time
    assert cli.main(["export", str(run / "model.keras"), "--out", str(tmp_path / "again"),
                     "--formats", "onnx"]) == 0
    printed = capsys.readouterr()
    assert "generator.onnx" in printed.out and "max abs diff" in printed.out
    assert cli.main(["export", str(run), "--formats", "onnx"]) == 2  # RUN/export is not empty
    assert "not empty" in capsys.readouterr().err.strip().splitlines()[-1]

    result = zoo_cli("sample", run, "--n", "10", "--labels", "7", "--seed", "0",
                     "--out", tmp_path / "grid.png")
    assert result.returncode == 0, result.stderr[-3000:]
    assert Image.open(tmp_path / "grid.png").format == "PNG"
    result = zoo_cli("sample", tmp_path / "again" / "generator.onnx", "--n", "3",
                     "--labels", "0,1,2", "--out", tmp_path / "s.npy")
    assert result.returncode == 0, result.stderr[-3000:]
    assert np.load(tmp_path / "s.npy").shape == (3, 8, 8, 1)
    result = zoo_cli("sample", run, "--n", "3", "--out", tmp_path / "g.png")
    assert result.returncode == 2 and "conditional" in result.stderr

    port = free_port()
    process = subprocess.Popen(
        [*ZOO, "serve", str(run / "export" / "generator.onnx"), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if call(("127.0.0.1", port), "GET", "/health", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            assert process.poll() is None, process.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.3)
        status, _, body = call(("127.0.0.1", port), "POST", "/v1/generate",
                               {"n": 2, "labels": [3, 4], "seed": 0})
        assert status == 200 and json.loads(body)["shape"] == [2, 8, 8, 1]
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
