"""The Open Inference Protocol (KServe v2 / Triton HTTP) on `zoo serve`, checked with the official
`tritonclient[http]` as a user would: health, server and model metadata, `infer` in JSON and
with the binary tensor extension, on the artifact's own tensors (z, label -> images); results
equal the runtime's for the same inputs. Every bad v2 request is a 4xx naming the value.

Runs on the committed pretrained exports (no TensorFlow); the diffusion case exports a tiny
CDDPM (TensorFlow) once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_serve import _running_server, call, snapshot

from exporters import server
from exporters.images import to_uint8
from exporters.sampling import latents

tritonclient_http = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException

COMMITTED = Path(__file__).resolve().parents[1] / "saved_models"


@pytest.fixture(scope="module")
def cgan_server():
    folder = COMMITTED / "cgan-mnist5k" / "export"
    before = snapshot(folder)
    yield from _running_server(folder / "generator.onnx")
    assert snapshot(folder) == before  # no request wrote anything beside the artifact


@pytest.fixture(scope="module")
def gan_server():
    yield from _running_server(COMMITTED / "gan-mnist5k" / "export" / "generator-b1.tflite")


def client_for(srv):
    host, port = srv.server_address[:2]
    return tritonclient_http.InferenceServerClient(f"{host}:{port}")


def infer_inputs(z, labels=None, binary=True):
    tensor = tritonclient_http.InferInput("z", list(z.shape), "FP32")
    tensor.set_data_from_numpy(z, binary_data=binary)
    inputs = [tensor]
    if labels is not None:
        tensor = tritonclient_http.InferInput("label", list(labels.shape), "INT32")
        tensor.set_data_from_numpy(labels, binary_data=binary)
        inputs.append(tensor)
    return inputs


def test_health_and_metadata_through_tritonclient(cgan_server):
    client = client_for(cgan_server)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("generator") and client.is_model_ready("generator", "1")
    assert not client.is_model_ready("nope")
    assert client.get_server_metadata()["name"] == "genzoo"
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata("generator")
    assert meta["name"] == "generator" and meta["versions"] == ["1"]
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "z", "datatype": "FP32", "shape": [-1, 32]},
                              {"name": "label", "datatype": "INT32", "shape": [-1]}]
    assert meta["outputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 28, 28, 1]}]
    with pytest.raises(InferenceServerException, match="unknown model 'nope'") as error:
        client.get_model_metadata("nope")
    assert error.value.status() == "404"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_equals_the_runtime(cgan_server, binary):
    client = client_for(cgan_server)
    z = np.random.default_rng(5).standard_normal((6, 32), dtype=np.float32)
    labels = np.array([0, 1, 2, 7, 8, 9], np.int32)
    outputs = [tritonclient_http.InferRequestedOutput("images", binary_data=binary)]
    result = client.infer("generator", infer_inputs(z, labels, binary), outputs=outputs,
                          request_id="req-1")
    images = result.as_numpy("images")
    assert result.get_response()["id"] == "req-1"
    assert result.get_response()["model_version"] == "1"
    expected = cgan_server.generator.backend.run({"z": z, "label": labels})["images"]
    assert images.dtype == np.float32 and images.shape == (6, 28, 28, 1)
    np.testing.assert_array_equal(images, expected)
    # no outputs named: tritonclient asks for binary outputs of every output
    result = client.infer("generator", infer_inputs(z, labels, binary), model_version="1")
    np.testing.assert_array_equal(result.as_numpy("images"), expected)


def test_infer_with_seeded_latents_gives_the_v1_images(cgan_server):
    """z = the runtime's latent draw for a seed: v2 images (as uint8) equal /v1/generate's."""
    client = client_for(cgan_server)
    labels = np.array([3, 1, 4], np.int32)
    result = client.infer("generator", infer_inputs(latents(3, 32, 42), labels))
    _, _, body = call(cgan_server.server_address[:2], "POST", "/v1/generate",
                      {"n": 3, "labels": [3, 1, 4], "seed": 42})
    v1 = np.asarray(json.loads(body)["images"], np.uint8)
    np.testing.assert_array_equal(to_uint8(result.as_numpy("images")), v1)


def test_unconditional_tflite_model(gan_server):
    client = client_for(gan_server)
    meta = client.get_model_metadata("generator")
    assert [t["name"] for t in meta["inputs"]] == ["z"] and meta["platform"] == "tflite"
    z = latents(3, 32, 0)  # batch 3 on a batch-1 TFLite file: the runtime loops
    images = client.infer("generator", infer_inputs(z)).as_numpy("images")
    np.testing.assert_array_equal(images, gan_server.generator.backend.run({"z": z})["images"])
    with pytest.raises(InferenceServerException, match="unknown input 'label'") as error:
        client.infer("generator", infer_inputs(z, np.zeros(3, np.int32)))
    assert error.value.status() == "400"


def test_bad_infer_through_tritonclient_is_400(cgan_server):
    client = client_for(cgan_server)
    z = latents(2, 32, 0)
    cases = [
        (infer_inputs(z, np.array([0, 10], np.int32)), "out of range"),
        (infer_inputs(z, np.array([0, 1, 2], np.int32)), "same batch size"),
        (infer_inputs(latents(2, 31, 0), np.array([0, 1], np.int32)), "must have shape"),
        (infer_inputs(z), "missing inputs ['label']"),
    ]
    for inputs, fragment in cases:
        with pytest.raises(InferenceServerException) as error:
            client.infer("generator", inputs)
        assert error.value.status() == "400" and fragment in error.value.message(), \
            error.value.message()
    assert client.is_server_ready()


def raw_infer(srv, body, headers=None, path="/v2/models/generator/infer"):
    status, kind, reply = call(srv.server_address[:2], "POST", path, body, headers)
    return status, kind, reply


Z2 = {"name": "z", "datatype": "FP32", "shape": [1, 32], "data": [0.5] * 32}
L1 = {"name": "label", "datatype": "INT32", "shape": [1], "data": [4]}


@pytest.mark.parametrize(
    "body,headers,status,fragment",
    [
        ("{oops", None, 400, "not valid JSON"),
        ([1, 2], None, 400, "JSON object"),
        ({"inputs": []}, None, 400, "non-empty list"),
        ({"inputs": [Z2, L1], "extra": 1}, None, 400, "unknown inference request fields"),
        ({"inputs": [{**Z2, "datatype": "INT32"}, L1]}, None, 400, "got 'INT32'"),
        ({"inputs": [{**Z2, "datatype": "FP64"}, L1]}, None, 400, "must have datatype FP32"),
        ({"inputs": [{**Z2, "shape": [32]}, L1]}, None, 400, "got [32]"),
        ({"inputs": [{**Z2, "shape": [1, 33]}, L1]}, None, 400, "got [1, 33]"),
        ({"inputs": [{**Z2, "data": [0.5] * 31}, L1]}, None, 400, "has 31 values"),
        ({"inputs": [{**Z2, "data": ["a"] * 32}, L1]}, None, 400, "must be numbers"),
        ({"inputs": [Z2, {**L1, "data": [1.5]}]}, None, 400, "must be integers"),
        ({"inputs": [Z2, {**L1, "data": [-1]}]}, None, 400, "[-1] out of range"),
        ({"inputs": [Z2, L1, L1]}, None, 400, "given twice"),
        ({"inputs": [{**Z2, "name": "x"}, L1]}, None, 400, "unknown input 'x'"),
        ({"inputs": [{**Z2, "shape": [0, 32], "data": []}, {**L1, "shape": [0], "data": []}]},
         None, 400, "got 0"),
        ({"inputs": [{**Z2, "shape": [2000, 32], "data": [0.0] * 64000},
                     {**L1, "shape": [2000], "data": [1] * 2000}]}, None, 400, "got 2000"),
        ({"inputs": [{**Z2, "data": [float("nan")] * 32}, L1]}, None, 400, "NaN"),
        ({"inputs": [Z2, L1], "outputs": [{"name": "pixels"}]}, None, 400, "unknown output"),
        ({"inputs": [Z2, L1], "parameters": {"steps": 5}}, None, 400, "unknown parameters"),
        ({"inputs": [Z2, L1]}, {"Inference-Header-Content-Length": "x"}, 400, "got 'x'"),
        ({"inputs": [Z2, L1]}, {"Inference-Header-Content-Length": "99999"}, 400, "99999"),
    ],
)
def test_bad_v2_requests_are_4xx_naming_the_value(cgan_server, body, headers, status, fragment):
    body = json.dumps(body).replace("NaN", "NaN") if not isinstance(body, str) else body
    got, kind, reply = raw_infer(cgan_server, body, headers)
    assert got == status and kind == "application/json", (got, reply[:300])
    assert fragment in json.loads(reply)["error"], json.loads(reply)["error"]
    assert call(cgan_server.server_address[:2], "GET", "/v2/health/live")[0] == 200


def test_oversized_infer_body_is_413(cgan_server):
    status, kind, reply = raw_infer(cgan_server, b" " * (server.MAX_BODY_BYTES + 1))
    assert status == 413 and kind == "application/json"
    assert f"got Content-Length {server.MAX_BODY_BYTES + 1}" in json.loads(reply)["error"]
    assert call(cgan_server.server_address[:2], "GET", "/v2/health/ready")[0] == 200


def test_binary_sizes_must_match(cgan_server):
    header = json.dumps({"inputs": [
        {"name": "z", "datatype": "FP32", "shape": [1, 32], "parameters": {"binary_data_size": 128}},
        {"name": "label", "datatype": "INT32", "shape": [1], "parameters": {"binary_data_size": 4}},
    ]}).encode()
    good = latents(1, 32, 0).tobytes() + np.int32(2).tobytes()
    status, kind, reply = raw_infer(cgan_server, header + good,
                                    {"Inference-Header-Content-Length": str(len(header))})
    assert status == 200 and kind == "application/json"  # outputs as JSON unless asked
    assert json.loads(reply)["outputs"][0]["shape"] == [1, 28, 28, 1]
    for body, fragment in ((header + good[:-4], "binary_data_size 4"),
                           (header + good + b"xx", "2 binary bytes no input claims")):
        status, _, reply = raw_infer(cgan_server, body,
                                     {"Inference-Header-Content-Length": str(len(header))})
        assert status == 400 and fragment in json.loads(reply)["error"]


@pytest.mark.parametrize(
    "method,path,status,fragment",
    [
        ("GET", "/v2/models/other", 404, "unknown model 'other'"),
        ("GET", "/v2/models/other/ready", 404, "unknown model 'other'"),
        ("GET", "/v2/models/generator/versions/2", 404, "no version '2'"),
        ("POST", "/v2/models/other/infer", 404, "unknown model 'other'"),
        ("POST", "/v2/models/generator/versions/7/infer", 404, "no version '7'"),
        ("GET", "/v2/models/generator/infer", 405, "not allowed"),
        ("POST", "/v2/models/generator", 405, "not allowed"),
    ],
)
def test_unknown_models_and_versions(cgan_server, method, path, status, fragment):
    got, _, reply = call(cgan_server.server_address[:2], method, path,
                         {"inputs": [Z2, L1]} if method == "POST" else None)
    assert got == status and fragment in json.loads(reply)["error"]


def test_model_name_is_settable():
    srv = server.make_server(COMMITTED / "vae-mnist5k" / "export", "127.0.0.1", 0,
                             model_name="digits-vae")
    srv.start_background()
    try:
        client = client_for(srv)
        assert client.is_model_ready("digits-vae") and not client.is_model_ready("generator")
        z = latents(2, srv.generator.latent_dim, 1)
        images = client.infer("digits-vae", infer_inputs(z)).as_numpy("images")
        np.testing.assert_array_equal(images, srv.generator.backend.run({"z": z})["images"])
    finally:
        srv.shutdown()
        srv.server_close()


# ---- a diffusion artifact: z is x_T, the sampler settings are request parameters ---------------
@pytest.fixture(scope="module")
def diffusion_server(tmp_path_factory):
    import exporters
    import zoo

    model = zoo.build("cddpm", image_shape=(8, 8, 1), num_classes=10, base_filters=8,
                      channel_multipliers=(1, 2), timesteps=50, sampling_steps=5, seed=0)
    out_dir = tmp_path_factory.mktemp("cddpm") / "export"
    exporters.export(model, out_dir, formats=("onnx",))
    yield from _running_server(out_dir / "generator.onnx")


def test_diffusion_infer_takes_sampler_parameters(diffusion_server):
    client = client_for(diffusion_server)
    generator = diffusion_server.generator
    meta = client.get_model_metadata("generator")
    assert [t["name"] for t in meta["inputs"]] == ["z", "label"]
    assert meta["outputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 8, 8, 1]}]
    labels = np.array([0, 3, 9, 5], np.int32)
    for options in ({"steps": 3, "guidance_scale": 2.5},
                    {"steps": 4, "eta": 0.5, "guidance_scale": 1.5},
                    {"steps": 3, "sampler": "ddpm"}):
        z = latents(4, generator.latent_dim, 8)
        result = client.infer("generator", infer_inputs(z, labels),
                              parameters={**options, "seed": 8})
        expected = generator.generate_float(4, labels, seed=8, **options)
        np.testing.assert_allclose(result.as_numpy("images"), expected, atol=1e-6)
    for parameters, fragment in (({"steps": 99}, "at most 50"), ({"sampler": "euler"}, "sampler"),
                                 ({"eta": 2}, "eta"), ({"seed": -1}, "seed"),
                                 ({"colour": 1}, "unknown parameters")):
        with pytest.raises(InferenceServerException, match=fragment) as error:
            client.infer("generator", infer_inputs(z, labels), parameters=parameters)
        assert error.value.status() == "400"
