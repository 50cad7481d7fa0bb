"""`zoo serve` with real HTTP requests on 127.0.0.1: endpoints, 4xx for every bad request while
the server stays up, compact outputs, body/header limits (chunked bodies, oversize, slow and
vanished clients), dynamic batching with per-request seeds, CORS, OpenAPI, access logs,
`--workers`, and the CLI end to end (train -> export -> sample -> serve). The Open Inference
Protocol (v2) is in test_serve_v2.py."""

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


def _running_server(artifact, **settings):
    """A server on a free loopback port for the duration of a fixture."""
    srv = server.make_server(artifact, "127.0.0.1", 0, **settings)
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
    assert str(server.MAX_BODY_BYTES + 1) in json.loads(reply)["error"]
    status, kind, reply = call(address, "GET", "/health", None, {"X-Big": "a" * 70_000})
    assert status == 431 and "at most 16384 bytes" in json.loads(reply)["error"]
    status, kind, reply = call(address, "POST", "/v1/generate", "{}", {"Content-Length": "-1"})
    assert status == 400 and kind == "application/json" and "malformed" in json.loads(reply)["error"]
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


# ---- compact outputs, limits, batching, CORS, OpenAPI (on the committed pretrained export) ------
COMMITTED = Path(__file__).resolve().parents[1] / "saved_models"


@pytest.fixture(scope="module")
def artifact_copy(tmp_path_factory):
    """A copy of the committed cgan export: the tests check nothing is ever written into it."""
    import shutil

    folder = tmp_path_factory.mktemp("artifact") / "export"
    shutil.copytree(COMMITTED / "cgan-mnist5k" / "export", folder)
    return folder


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def tuned_server(artifact_copy):
    """Small limits so each can be crossed cheaply; a batching delay so bursts merge."""
    before = snapshot(artifact_copy)
    yield from _running_server(artifact_copy / "generator.onnx", max_body_bytes=2048,
                               body_timeout=1.0, max_delay=0.05)
    assert snapshot(artifact_copy) == before  # nothing written beside the artifact


def test_compact_outputs_equal_the_json_images(tuned_server):
    address = tuned_server.server_address[:2]
    request = {"n": 5, "labels": [1, 2, 3, 4, 5], "seed": 7}
    expected = tuned_server.generator.generate(5, labels=[1, 2, 3, 4, 5], seed=7)
    _, _, body = call(address, "POST", "/v1/generate", request)
    assert np.array_equal(np.asarray(json.loads(body)["images"], np.uint8), expected)

    connection = http.client.HTTPConnection(*address, timeout=30)
    connection.request("POST", "/v1/generate", json.dumps(request),
                       {"Accept": "application/octet-stream"})
    response = connection.getresponse()
    raw = response.read()
    assert response.status == 200 and response.getheader("X-Shape") == "5,28,28,1"
    assert response.getheader("X-Dtype") == "uint8" and len(raw) == expected.size
    assert np.array_equal(np.frombuffer(raw, np.uint8).reshape(expected.shape), expected)
    connection.request("POST", "/v1/generate", json.dumps(request), {"Accept": "application/x-npy"})
    response = connection.getresponse()
    assert response.getheader("Content-Type") == "application/x-npy"
    assert np.array_equal(np.load(io.BytesIO(response.read())), expected)
    connection.close()


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 5, 2, 3), (16, 28, 28, 1), (2, 1, 4, 3)])
def test_fast_uint8_json_is_json_dumps(shape):
    images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    images.flat[0], images.flat[-1] = 0, 255
    assert server.uint8_json(images) == json.dumps(images.tolist())


def test_batcher_merges_up_to_max_batch_splits_back_and_bounds_its_queue():
    import asyncio

    from exporters.batching import DynamicBatcher, QueueFull

    calls = []

    def run(feeds):
        calls.append(len(feeds["x"]))
        if np.any(feeds["x"] < 0):
            raise ArithmeticError("negative")
        return {"y": feeds["x"] * 2}

    async def scenario():
        batcher = DynamicBatcher(run, max_batch=8, max_delay=0.05, max_queue=18)
        jobs = [batcher.submit({"x": np.full(3, i)}) for i in range(7)]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        failing = await asyncio.gather(batcher.submit({"x": np.full(2, -1)}),
                                       batcher.submit({"x": np.full(2, 5)}),
                                       return_exceptions=True)
        batcher.close()
        return results, failing, batcher.stats

    results, failing, stats = asyncio.run(scenario())
    assert isinstance(results[6], QueueFull) and "18" in str(results[6])  # 21 rows > 18
    for i, result in enumerate(results[:6]):
        np.testing.assert_array_equal(result["y"], np.full(3, 2 * i))
    assert calls[:3] == [6, 6, 6] and max(calls) <= 8  # merged pairwise: a third would pass 8
    assert all(isinstance(error, ArithmeticError) for error in failing)  # one call, both fail
    assert stats.refused == 1 and stats.requests == 8
    with pytest.raises(ValueError, match="max_batch must be a positive integer, got 0"):
        DynamicBatcher(run, max_batch=0)
    with pytest.raises(ValueError, match="max_delay must be in"):
        DynamicBatcher(run, max_delay=-1)


def test_chunked_bodies_are_read_and_limited(tuned_server):
    address = tuned_server.server_address[:2]
    connection = http.client.HTTPConnection(*address, timeout=30)
    parts = [b'{"n": 2, ', b'"labels": [3, 4], ', b'"seed": 0}']
    connection.request("POST", "/v1/generate", body=iter(parts),
                       headers={"Transfer-Encoding": "chunked"}, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 200, response.read()
    assert json.loads(response.read())["shape"] == [2, 28, 28, 1]
    connection.close()

    connection = http.client.HTTPConnection(*address, timeout=30)
    connection.request("POST", "/v1/generate", body=iter([b" " * 1000] * 3),
                       headers={"Transfer-Encoding": "chunked"}, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413 and "at most 2048" in json.loads(response.read())["error"]
    connection.close()
    assert call(address, "GET", "/health")[0] == 200


def test_a_body_that_never_arrives_gets_408(tuned_server):
    address = tuned_server.server_address[:2]
    with socket.create_connection(address, timeout=10) as client:
        client.sendall(b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        start = time.monotonic()
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.endswith(b"}"):
            chunk = client.recv(4096)
            if not chunk:
                break
            reply += chunk
    assert time.monotonic() - start < 5
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408") and b"within 1 s" in body
    assert call(address, "GET", "/health")[0] == 200


def test_batched_requests_give_the_images_they_give_alone(tuned_server):
    """The same request alone and inside a burst of others: identical bytes; the burst merged."""
    address = tuned_server.server_address[:2]
    mine = {"n": 3, "labels": [7, 8, 9], "seed": 11}
    alone = call(address, "POST", "/v1/generate", mine)[2]
    stats = tuned_server.app.state.service.batcher.stats
    largest_before = stats.largest

    def one(i):
        request = mine if i % 4 == 0 else {"n": 1 + i % 5, "labels": [i % 10] * (1 + i % 5),
                                           "seed": 100 + i}
        return request, call(address, "POST", "/v1/generate", request)

    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(one, range(32)))
    assert all(status == 200 for _, (status, _, _) in replies)
    for request, (_, _, body) in replies:
        if request is mine:
            assert body == alone
        else:
            expected = tuned_server.generator.generate(request["n"], request["labels"],
                                                       seed=request["seed"])
            assert np.array_equal(np.asarray(json.loads(body)["images"], np.uint8), expected)
    assert stats.largest > max(largest_before, 5)  # several requests ran as one call


def test_a_full_queue_answers_503_with_retry_after():
    srv = server.make_server(COMMITTED / "gan-mnist5k" / "export" / "generator.onnx",
                             "127.0.0.1", 0, max_queue=8, max_delay=1.0)
    srv.start_background()
    try:
        address = srv.server_address[:2]
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(call, address, "POST", "/v1/generate", {"n": 8, "seed": 1})
            time.sleep(0.3)  # the first waits in the queue for others to join (1 s)
            connection = http.client.HTTPConnection(*address, timeout=30)
            connection.request("POST", "/v1/generate", json.dumps({"n": 1, "seed": 2}))
            response = connection.getresponse()
            assert response.status == 503 and response.getheader("Retry-After") == "1"
            assert "queue is full" in json.loads(response.read())["error"]
            connection.close()
            assert first.result()[0] == 200
        assert call(address, "POST", "/v1/generate", {"n": 1, "seed": 2})[0] == 200
    finally:
        srv.shutdown()
        srv.server_close()


def test_cors_is_off_by_default_and_allows_one_origin(tuned_server):
    address = tuned_server.server_address[:2]
    connection = http.client.HTTPConnection(*address, timeout=30)
    connection.request("GET", "/health", headers={"Origin": "http://elsewhere.test"})
    response = connection.getresponse()
    response.read()
    assert response.getheader("Access-Control-Allow-Origin") is None
    connection.close()

    srv = server.make_server(COMMITTED / "gan-mnist5k" / "export", "127.0.0.1", 0,
                             cors_origin="http://app.test")
    srv.start_background()
    try:
        connection = http.client.HTTPConnection(*srv.server_address[:2], timeout=30)
        connection.request("OPTIONS", "/v1/generate", headers={
            "Origin": "http://app.test", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        assert response.getheader("Access-Control-Allow-Origin") == "http://app.test"
        connection.request("POST", "/v1/generate", json.dumps({"n": 1}),
                           {"Origin": "http://app.test", "Accept": "application/octet-stream"})
        response = connection.getresponse()
        response.read()
        assert response.getheader("Access-Control-Allow-Origin") == "http://app.test"
        assert "X-Shape" in response.getheader("Access-Control-Expose-Headers")
        connection.request("OPTIONS", "/v1/generate", headers={
            "Origin": "http://evil.test", "Access-Control-Request-Method": "POST"})
        response = connection.getresponse()
        response.read()
        assert response.status == 400 and response.getheader("Access-Control-Allow-Origin") is None
        connection.close()
    finally:
        srv.shutdown()
        srv.server_close()


def test_openapi_and_offline_docs(tuned_server):
    address = tuned_server.server_address[:2]
    status, kind, body = call(address, "GET", "/openapi.json")
    spec = json.loads(body)
    assert status == 200 and spec["openapi"].startswith("3.")
    for path in ("/health", "/v1/metadata", "/v1/generate", "/v1/generate.png",
                 "/v2/models/generator/infer", "/v2/health/ready"):
        assert path in spec["paths"], path
    assert spec["paths"]["/v1/generate"]["post"]["requestBody"]["content"][
        "application/json"]["example"]["labels"] == [0, 1, 2, 3]
    status, kind, page = call(address, "GET", "/docs")
    assert status == 200 and kind.startswith("text/html") and b"openapi.json" in page
    assert b"http://" not in page and b"https://" not in page  # nothing fetched from elsewhere


# ---- a real `zoo serve` process: access log, slow and vanished clients, --workers ---------------
class ServeProcess:
    def __init__(self, *args):
        self.port = free_port()
        self.process = subprocess.Popen(
            [*ZOO, "serve", *map(str, args), "--port", str(self.port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.address = ("127.0.0.1", self.port)
        deadline = time.monotonic() + 60
        while True:
            try:
                if call(self.address, "GET", "/health", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            assert self.process.poll() is None, self.process.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.2)

    def threads(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines()
                        if line.startswith("Threads:")))

    def children(self) -> list[int]:
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                found.append(int(stat.parent.name))
        return found

    def stop(self) -> tuple[str, str]:
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.communicate()


@pytest.mark.slow  # a real `zoo serve` process held open by 100 stalled clients
def test_slowloris_and_vanished_clients_cost_a_bounded_amount(artifact_copy):
    """100 connections that never finish their headers are closed within the header timeout,
    /health answers throughout, the thread count stays flat; clients that vanish mid-request
    print no traceback; every request is one access-log line."""
    served = ServeProcess(artifact_copy / "generator.onnx", "--header-timeout", "2",
                          "--body-timeout", "2")
    stalled = []
    try:
        call(served.address, "POST", "/v1/generate", {"n": 2, "labels": [1, 2], "seed": 0})
        threads = served.threads()
        start = time.monotonic()
        for i in range(100):
            client = socket.create_connection(served.address, timeout=10)
            client.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * (i % 7))
            stalled.append(client)
        for _ in range(5):
            assert call(served.address, "GET", "/health", timeout=5)[0] == 200
            time.sleep(0.2)
        assert served.threads() <= threads + 2
        closed = 0
        for client in stalled:
            try:
                closed += client.recv(1024) == b""
            except ConnectionResetError:
                closed += 1
        assert closed == 100 and time.monotonic() - start < 2 + 6

        for i in range(10):  # vanished clients: mid-body, and before the (large) answer
            client = socket.create_connection(served.address, timeout=10)
            if i % 2:
                client.sendall(b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n"
                               b"\r\n{\"n\":")
            else:
                body = json.dumps({"n": 256, "labels": [1] * 256}).encode()
                client.sendall(b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Length: "
                               + str(len(body)).encode() + b"\r\n\r\n" + body)
            client.close()
        time.sleep(3)
        assert call(served.address, "GET", "/health")[0] == 200
    finally:
        for client in stalled:
            client.close()
        _, stderr = served.stop()
    assert "Traceback" not in stderr and "Error" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if '"GET /health HTTP/1.1" 200' in line]
    assert len(lines) >= 6 and all(line.count("GET /health") == 1 for line in lines)


def test_connections_are_bounded_and_shutdown_is_graceful(artifact_copy):
    """Past --max-connections a request gets 503 and the server recovers once they close; on
    SIGTERM a request already being served still gets its answer, then the process exits."""
    served = ServeProcess(artifact_copy / "generator.onnx", "--max-connections", "8",
                          "--max-delay-ms", "1500", "--quiet")
    idle = []
    try:
        for _ in range(8):
            idle.append(socket.create_connection(served.address, timeout=10))
        time.sleep(0.3)
        assert call(served.address, "GET", "/health", timeout=10)[0] == 503
        for client in idle:
            client.close()
        idle.clear()
        time.sleep(0.3)
        assert call(served.address, "GET", "/health", timeout=10)[0] == 200

        with ThreadPoolExecutor(1) as pool:  # waits ~1.5 s in the batch queue
            pending = pool.submit(call, served.address, "POST", "/v1/generate",
                                  {"n": 2, "labels": [1, 2], "seed": 0}, None, 30)
            time.sleep(0.5)
            served.process.send_signal(signal.SIGTERM)
            status, _, body = pending.result()
        assert status == 200 and json.loads(body)["shape"] == [2, 28, 28, 1]
        # uvicorn re-raises the signal once drained: the process ends as SIGTERM'd, promptly
        assert served.process.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        for client in idle:
            client.close()
        _, stderr = served.stop() if served.process.poll() is None else \
            served.process.communicate()
    assert "Traceback" not in stderr, stderr[-3000:]


def test_workers_serve_from_several_processes(artifact_copy):
    served = ServeProcess(artifact_copy, "--workers", "2", "--quiet")
    try:
        assert len(served.children()) >= 2
        status, _, body = call(served.address, "POST", "/v1/generate",
                               {"n": 2, "labels": [5, 6], "seed": 3})
        assert status == 200
        expected = runtime.load(artifact_copy / "generator.onnx").generate(2, [5, 6], seed=3)
        assert np.array_equal(np.asarray(json.loads(body)["images"], np.uint8), expected)
    finally:
        _, stderr = served.stop()
    assert "Traceback" not in stderr and "GET /health" not in stderr  # --quiet: no access log


# ---- the CLI end to end -------------------------------------------------------------------------
def zoo_cli(*args, timeout=300):
    return subprocess.run([*ZOO, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, check=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow  # `zoo train` + `zoo serve` processes
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
