"""Diffusion artifacts on the TensorFlow-free runtime: a tiny CDDPM (8x8, 50 timesteps) exported
once to ONNX and TFLite; the runtime's numpy DDIM/DDPM loop over the exported denoiser gives
`model.sample`'s images for the same seed, steps, eta and guidance (float max abs diff <= 1e-3
in [-1, 1]; measured ~1e-5), without importing TensorFlow; the server and `zoo sample` take
steps and guidance_scale; bad inputs are ValueErrors / 4xx with a message."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from test_serve import ZOO, call

from exporters import runtime, server

# Exports a CDDPM to ONNX + TFLite (~15 s) and runs subprocesses; the fast tier has the diffusion
# loop in test_diffusion_pipeline.py and a diffusion ONNX export in test_serve_v2.py.
pytestmark = pytest.mark.slow
TOLERANCE = 1e-3
LABELS = [0, 3, 9, 5]
TINY = {"image_shape": (8, 8, 1), "num_classes": 10, "base_filters": 8,
        "channel_multipliers": (1, 2), "timesteps": 50, "sampling_steps": 5, "seed": 0}
TFLITE_BATCH = 8  # = 2 x 4 images: one guided step (conditional + unconditional) per call


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import exporters
    import zoo

    model = zoo.build("cddpm", **TINY)
    out_dir = tmp_path_factory.mktemp("cddpm") / "export"
    report = exporters.export(
        model, out_dir, formats=("onnx", "tflite"), tflite_batch_sizes=(TFLITE_BATCH,)
    )
    return model, out_dir, report


@pytest.fixture(scope="module")
def onnx_generator(exported):
    return runtime.load(exported[1] / "generator.onnx")


CASES = [
    {"steps": 5, "guidance_scale": 2.0},  # DDIM eta 0 with guidance (the default sampler)
    {"steps": 4, "eta": 0.5, "guidance_scale": 3.0},  # stochastic DDIM: noise draws in order
    {"steps": 5, "sampler": "ddpm", "guidance_scale": 1.0},  # ancestral, conditional only
]


@pytest.mark.parametrize("options", CASES, ids=lambda o: "-".join(f"{k}{v}" for k, v in o.items()))
def test_onnx_runtime_matches_model_sample(exported, onnx_generator, options):
    model = exported[0]
    expected = model.sample(4, labels=LABELS, seed=7, **options)
    found = onnx_generator.generate_float(4, labels=LABELS, seed=7, **options)
    assert found.shape == (4, 8, 8, 1) and found.dtype == np.float32
    assert np.abs(found - expected).max() <= TOLERANCE
    # different seeds differ; uint8 output and batch_size chunking give the same images
    assert np.abs(onnx_generator.generate_float(4, LABELS, seed=8, **options) - found).max() > 0.01
    chunked = onnx_generator.generate(4, LABELS, seed=7, batch_size=3, **options)
    assert chunked.dtype == np.uint8
    assert np.abs(chunked.astype(int) - onnx_generator.generate(4, LABELS, 7, **options)).max() <= 1


def test_tflite_runtime_matches_model_sample(exported):
    model, out_dir, _ = exported
    generator = runtime.load(out_dir / f"generator-b{TFLITE_BATCH}.tflite")
    assert isinstance(generator, runtime.DiffusionGenerator) and generator.format == "tflite"
    expected = model.sample(4, labels=LABELS, seed=11, steps=5, guidance_scale=2.0)
    found = generator.generate_float(4, labels=LABELS, seed=11, steps=5, guidance_scale=2.0)
    assert np.abs(found - expected).max() <= TOLERANCE


def test_defaults_come_from_the_manifest(exported, onnx_generator):
    model, out_dir, _ = exported
    sampling = onnx_generator.metadata()["sampling"]
    assert sampling["steps"] == 5 and sampling["timesteps"] == 50 and sampling["sampler"] == "ddim"
    assert sampling["guidance_scale"] == model.guidance_scale == 2.0
    assert runtime.load(out_dir).path.name == "generator.onnx"  # a folder picks the ONNX file
    np.testing.assert_allclose(
        onnx_generator.generate_float(2, [1, 2], seed=3), model.sample(2, [1, 2], seed=3),
        atol=TOLERANCE,
    )


def test_runtime_without_tensorflow(exported, tmp_path):
    model, out_dir, _ = exported
    expected = model.sample(3, labels=[1, 2, 3], seed=5, steps=3, guidance_scale=1.5)
    np.save(tmp_path / "expected.npy", expected)
    script = f"""
import sys
import numpy as np
from exporters import runtime
g = runtime.load({str(out_dir)!r})
found = g.generate_float(3, labels=[1, 2, 3], seed=5, steps=3, guidance_scale=1.5)
diff = float(np.abs(found - np.load({str(tmp_path / 'expected.npy')!r})).max())
bad = [m for m in ("tensorflow", "keras", "zoo") if m in sys.modules]
print(type(g).__name__, diff, bad)
assert not bad and diff <= {TOLERANCE}, (diff, bad)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=False, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("DiffusionGenerator")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"labels": None}, "conditional"),
        ({"labels": [0, 1, 2, 10]}, r"in \[0, 10\)"),  # the null label is not a user label
        ({"labels": [0, 1]}, "expected 4 labels"),
        ({"steps": 0}, "positive integer"),
        ({"steps": -3}, "positive integer"),
        ({"steps": 2.5}, "positive integer"),
        ({"steps": True}, "positive integer"),
        ({"steps": 51}, "at most 50"),
        ({"guidance_scale": "2"}, "finite number"),
        ({"guidance_scale": float("nan")}, "finite number"),
        ({"guidance_scale": True}, "finite number"),
        ({"eta": 1.5}, r"eta must be in \[0, 1\]"),
        ({"sampler": "ddpm", "eta": 0.5}, "DDIM option"),
        ({"sampler": "euler"}, "sampler must be one of"),
        ({"n": 0}, "positive integer"),
        ({"n": 5000}, "at most 4096"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_inputs(onnx_generator, kwargs, match):
    args = {"n": 4, "labels": LABELS, "seed": 0, **kwargs}
    if "n" in kwargs and "labels" not in kwargs:
        args["labels"] = None if kwargs["n"] <= 0 else [0] * min(kwargs["n"], 4096)
    with pytest.raises(ValueError, match=match):
        onnx_generator.generate(args.pop("n"), **args)


def test_bad_schedule_in_manifest(exported, tmp_path):
    _, out_dir, _ = exported
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "generator.onnx").write_bytes((out_dir / "generator.onnx").read_bytes())
    manifest = json.loads((out_dir / "manifest.json").read_text())
    manifest["schedule"]["params"]["s"] = 0.02  # not the schedule the denoiser was trained with
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(runtime.ArtifactError, match="alphas_cumprod"):
        runtime.load(copy / "generator.onnx")


@pytest.fixture(scope="module")
def diffusion_server(onnx_generator):
    srv = server.make_server(onnx_generator, "127.0.0.1", 0)
    srv.start_background()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_server_generates(exported, onnx_generator, diffusion_server):
    address = diffusion_server.server_address[:2]
    status, _, body = call(address, "GET", "/v1/metadata")
    assert status == 200 and json.loads(body)["sampling"]["timesteps"] == 50
    request = {"n": 4, "labels": LABELS, "seed": 2, "steps": 3, "guidance_scale": 2.5}
    status, _, body = call(address, "POST", "/v1/generate", request)
    assert status == 200, body
    images = np.array(json.loads(body)["images"], np.uint8)
    expected = onnx_generator.generate(4, LABELS, seed=2, steps=3, guidance_scale=2.5)
    np.testing.assert_array_equal(images, expected)
    status, kind, body = call(
        address, "GET", "/v1/generate.png?n=4&seed=1&labels=7&steps=2&guidance_scale=1.5"
    )
    assert status == 200 and kind == "image/png" and body.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("method", "path", "body", "match"),
    [
        ("POST", "/v1/generate", {"n": 2, "labels": [0, 1], "steps": 0}, "positive integer"),
        ("POST", "/v1/generate", {"n": 2, "labels": [0, 1], "steps": 99}, "at most 50"),
        ("POST", "/v1/generate", {"n": 2, "labels": [0, 1], "steps": "5"}, "positive integer"),
        ("POST", "/v1/generate", {"n": 2, "labels": [0, 1], "guidance_scale": "x"}, "number"),
        ("POST", "/v1/generate", {"n": 2, "labels": [0, 1], "eta": 0.5}, "unknown fields"),
        ("POST", "/v1/generate", {"n": 2, "labels": [0, 10]}, "labels"),
        ("GET", "/v1/generate.png?n=2&labels=1&steps=x", None, "steps must be an integer"),
        ("GET", "/v1/generate.png?n=2&labels=1&guidance_scale=y", None, "must be a number"),
    ],
)
def test_server_bad_requests(diffusion_server, method, path, body, match):
    address = diffusion_server.server_address[:2]
    status, _, answer = call(address, method, path, body)
    assert status == 400 and match in json.loads(answer)["error"]
    assert call(address, "GET", "/health")[0] == 200  # still up


def test_zoo_sample_with_steps_and_guidance(exported, onnx_generator, tmp_path):
    _, out_dir, _ = exported
    out = tmp_path / "samples.npy"
    result = subprocess.run(
        [*ZOO, "sample", str(out_dir), "--n", "4", "--labels", "0,3,9,5", "--seed", "4",
         "--steps", "3", "--guidance-scale", "1.5", "--out", str(out)],
        capture_output=True, text=True, check=False, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    expected = onnx_generator.generate(4, LABELS, seed=4, steps=3, guidance_scale=1.5)
    np.testing.assert_array_equal(np.load(out), expected)
    result = subprocess.run(
        [*ZOO, "sample", str(out_dir), "--n", "4", "--labels", "0,3,9,5", "--steps", "60",
         "--out", str(out)], capture_output=True, text=True, check=False, timeout=120,
    )
    assert result.returncode != 0 and "at most 50" in result.stderr
