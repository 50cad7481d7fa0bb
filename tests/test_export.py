"""exporters.export: every family x format reloaded in its own runtime and compared with Keras,
the manifest, TFLite without Flex ops, the ONNX Runtime graph rewrite, and safe overwrites."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
from export_fixtures import (
    QUANTIZE,
    TFLITE_BATCH,
    build_tiny,
    families,
    labels_for,
    shared_exports,
)

import exporters
from exporters import manifest as manifest_lib
from exporters import runtime, sampling
from exporters.converters import verify
from exporters.images import to_uint8

FLOAT32_TOLERANCE = 1e-4


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    return shared_exports(tmp_path_factory)


def keras_images(model, z, labels):
    inputs = [z, np.asarray(labels, np.int32)] if model.num_classes else z
    return np.asarray(model.generator(inputs, training=False), np.float32)


# ---- parity: family x format ------------------------------------------------------------------
@pytest.mark.parametrize("family", families())
def test_saved_model_serve_signature_matches_keras_at_two_batch_sizes(exports, family):
    import tensorflow as tf

    exported = exports(family)
    model = exported.model
    serve = tf.saved_model.load(str(exported.path("generator_saved_model"))).signatures["serve"]
    for n in (1, 5):  # one signature, dynamic batch
        z = sampling.latents(n, model.latent_dim, seed=n)
        labels = labels_for(model, n)
        feeds = {"z": tf.constant(z)}
        if model.num_classes:
            feeds["label"] = tf.constant(labels, tf.int32)
        got = serve(**feeds)["images"].numpy()
        assert got.shape == (n, *model.image_shape)
        assert np.abs(got - keras_images(model, z, labels)).max() <= FLOAT32_TOLERANCE


@pytest.mark.parametrize("family", families())
@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_runtime_artifacts_match_model_sample(exports, family, fmt):
    """Every ONNX/TFLite generator (float32 and quantized) through the TF-free runtime against
    model.sample with the same seed, at two batch sizes, within its stated tolerance."""
    exported = exports(family)
    model = exported.model
    artifacts = exported.artifacts(fmt)
    assert artifacts, f"no {fmt} generator exported for {family}"
    for name, entry in artifacts.items():
        generator = runtime.load(exported.path(name))
        tolerance = verify.TOLERANCES[entry["quantization"]]
        for n in (1, TFLITE_BATCH + 3):  # also a partial last chunk for static-batch files
            labels = labels_for(model, n)
            expected = model.sample(n, labels=labels, seed=11)
            got = generator.generate_float(n, labels=labels, seed=11)
            diff = float(np.abs(got - expected).max())
            assert diff <= tolerance, (name, n, diff, tolerance)
        if entry["quantization"] == "none":
            images = generator.generate(3, labels=labels_for(model, 3), seed=2)
            expected = to_uint8(model.sample(3, labels=labels_for(model, 3), seed=2))
            assert images.dtype == np.uint8 and np.abs(images.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("family", families())
def test_every_artifact_verified_in_the_manifest(exports, family):
    exported = exports(family)
    manifest = json.loads((exported.out_dir / "manifest.json").read_text())
    model = exported.model
    assert manifest["family"] == family
    assert manifest["latent_dim"] == model.latent_dim
    assert manifest["num_classes"] == model.num_classes
    assert manifest["image_shape"] == list(model.image_shape)
    assert manifest["output_range"] == [-1.0, 1.0]
    for package in ("tensorflow", "keras", "tf2onnx", "onnx"):
        assert manifest["versions"][package]
    formats = {entry["format"] for entry in manifest["artifacts"].values()}
    assert formats == {"saved_model", "tflite", "onnx"}
    quantizations = {entry["quantization"] for entry in manifest["artifacts"].values()}
    assert quantizations == {"none", QUANTIZE[family]}
    for name, entry in manifest["artifacts"].items():
        assert entry["file"] == name
        assert manifest_lib.digest(exported.path(name)) == {
            "sha256": entry["sha256"], "bytes": entry["bytes"]
        }
        check = entry["verification"]
        assert check["passed"] and check["max_abs_diff"] <= check["tolerance"]
        assert check["tolerance"] == verify.TOLERANCES[entry["quantization"]]
        assert len(check["batch_sizes"]) >= 2
        assert [i["name"] for i in entry["inputs"]][:1] == [
            "image" if entry["role"] == "encoder" else "z"
        ]
    onnx_entry = manifest["artifacts"]["generator.onnx"]
    assert onnx_entry["opset"] == manifest["options"]["opset"]
    assert onnx_entry["inputs"][0]["shape"][0] is None  # dynamic batch
    static = manifest["artifacts"][f"generator-b{TFLITE_BATCH}.tflite"]
    assert static["inputs"][0]["shape"] == [TFLITE_BATCH, model.latent_dim]
    if family == "vae":
        roles = {entry["role"] for entry in manifest["artifacts"].values()}
        assert roles == {"generator", "encoder"}


@pytest.mark.parametrize("family", families())
def test_tflite_uses_builtin_ops_only(exports, family):
    from ai_edge_litert.interpreter import Interpreter

    exported = exports(family)
    for name, entry in exported.report["artifacts"].items():
        if entry["format"] != "tflite":
            continue
        assert entry["ops"] and not [op for op in entry["ops"] if op.startswith("Flex")]
        assert b"Flex" not in exported.path(name).read_bytes()
        Interpreter(model_path=str(exported.path(name))).allocate_tensors()  # no Flex delegate


@pytest.mark.slow  # exports the vae
def test_vae_encoder_artifacts_match_keras(exports):
    exported = exports("vae")
    images = np.random.default_rng(0).uniform(-1, 1, (3, 28, 28, 1)).astype(np.float32)
    mean, log_var = (np.asarray(t) for t in exported.model.encoder(images, training=False))
    for name in ("encoder.onnx", "encoder-b1.tflite"):
        got_mean, got_log_var = runtime.load(exported.path(name)).encode(images)
        assert np.abs(got_mean - mean).max() <= FLOAT32_TOLERANCE
        assert np.abs(got_log_var - log_var).max() <= FLOAT32_TOLERANCE


# ---- the ONNX Runtime rewrite -------------------------------------------------------------------
@pytest.mark.parametrize("family,expected", [
    ("gan", {"up0": "phase_convs"}),  # the 1-channel to-image ConvTranspose stays
    ("vae", {"up0": "phase_convs", "up1": "phase_convs", "image_1": "conv_as_transpose"}),
])
def test_onnx_rewrites_for_onnxruntime_are_exact(tmp_path, family, expected):
    import onnx

    from exporters.converters.onnx import (
        _max_graph_diff,
        export_onnx,
        optimize_for_onnxruntime,
        rewrite_candidates,
        tune_for_onnxruntime,
    )

    model = build_tiny(family)
    export_onnx(model.generator, tmp_path / "plain.onnx", optimize=False)
    plain = onnx.load(tmp_path / "plain.onnx")
    candidates = rewrite_candidates(plain)
    named = {key: kind for key in expected for name, kind in candidates.items() if key in name}
    assert named == expected and len(candidates) == len(expected)
    rewritten, count = optimize_for_onnxruntime(plain)
    assert count == len(expected)
    assert _max_graph_diff(plain, rewritten, batch=5) <= 1e-5
    folds = {n: k for n, k in rewrite_candidates(rewritten).items() if k == "fold_interleave"}
    folded, count = optimize_for_onnxruntime(rewritten, only=folds)
    assert count == len(folds) == 1  # the last interleave into the to-image layer
    assert _max_graph_diff(plain, folded, batch=5) <= 1e-5
    tuned, report = tune_for_onnxruntime(plain, batch=8)
    assert set(candidates) <= set(report["tried"])
    assert set(report["rewritten"]) <= set(candidates) and report["cpu_ms"] > 0
    assert _max_graph_diff(plain, tuned, batch=5) <= 1e-5


def test_exported_onnx_records_its_rewrites(exports):
    entry = exports("gan").report["artifacts"]["generator.onnx"]
    rewrite = entry["graph_rewrite"]
    assert set(rewrite) >= {"applied", "rewritten", "tried", "baseline_cpu_ms", "cpu_ms"}
    assert rewrite["applied"] == bool(rewrite["rewritten"])


@pytest.mark.parametrize("block,stride,kernel,pads,out_channels",
                         [(2, 2, 4, (1, 1, 1, 1), 1), (2, 2, 3, (0, 0, 1, 1), 3),
                          (3, 2, 5, (2, 1, 2, 2), 2)])
def test_interleave_folded_into_the_next_transposed_conv_is_exact(block, stride, kernel, pads,
                                                                   out_channels):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from exporters.converters.onnx import optimize_for_onnxruntime

    rng = np.random.default_rng(block * 10 + kernel)
    channels = 4
    constants = [
        numpy_helper.from_array(rng.standard_normal(
            (channels, out_channels, kernel, kernel)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.standard_normal(out_channels).astype(np.float32), "B"),
    ]
    nodes = [
        helper.make_node("DepthToSpace", ["x"], ["d"], blocksize=block, mode="DCR"),
        helper.make_node("ConvTranspose", ["d", "W", "B"], ["y"], strides=[stride, stride],
                         kernel_shape=[kernel, kernel], pads=list(pads)),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, block * block * channels, 5, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rewritten, count = optimize_for_onnxruntime(model)
    assert count == 1 and [n.op_type for n in rewritten.graph.node] == ["ConvTranspose"]
    x = rng.standard_normal((2, block * block * channels, 5, 6)).astype(np.float32)
    a, b = (ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
            for m in (model, rewritten))
    assert a.shape == b.shape and np.abs(a - b).max() <= 1e-4


@pytest.mark.parametrize("out_channels,kernel,pads", [(1, 3, (1, 1, 1, 1)), (3, 5, (2, 1, 2, 3))])
def test_few_channel_conv_as_transpose_is_exact(out_channels, kernel, pads):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from exporters.converters.onnx import optimize_for_onnxruntime

    rng = np.random.default_rng(out_channels)
    constants = [
        numpy_helper.from_array(
            rng.standard_normal((out_channels, 16, kernel, kernel)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.standard_normal(out_channels).astype(np.float32), "B"),
    ]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "W", "B"], ["y"], kernel_shape=[kernel, kernel],
                          pads=list(pads), name="conv")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16, 9, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rewritten, count = optimize_for_onnxruntime(model)
    assert count == 1 and rewritten.graph.node[0].op_type == "ConvTranspose"
    x = rng.standard_normal((2, 16, 9, 7)).astype(np.float32)
    a, b = (ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
            for m in (model, rewritten))
    assert a.shape == b.shape and np.abs(a - b).max() <= 1e-4


@pytest.mark.parametrize(
    "kernel,stride,pads,channels",
    [(4, 2, (1, 1, 1, 1), 8), (3, 2, (0, 0, 1, 1), 16), (5, 2, (2, 2, 1, 1), 8),
     (3, 3, (0, 0, 0, 0), 8), (6, 3, (1, 2, 2, 1), 12)],
)
def test_phase_rewrite_equals_convtranspose(kernel, stride, pads, channels):
    """The sub-pixel rewrite against ORT's own ConvTranspose, with a folded Mul/Add and ReLU."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from exporters.converters.onnx import optimize_for_onnxruntime

    rng = np.random.default_rng(kernel * 10 + stride)
    weight = rng.standard_normal((6, channels, kernel, kernel)).astype(np.float32)
    constants = [
        numpy_helper.from_array(weight, "W"),
        numpy_helper.from_array(rng.standard_normal(channels).astype(np.float32), "B"),
        numpy_helper.from_array(rng.standard_normal((1, channels, 1, 1)).astype(np.float32), "s"),
        numpy_helper.from_array(rng.standard_normal((1, channels, 1, 1)).astype(np.float32), "t"),
    ]
    nodes = [
        helper.make_node("ConvTranspose", ["x", "W", "B"], ["y"], strides=[stride, stride],
                         kernel_shape=[kernel, kernel], pads=list(pads)),
        helper.make_node("Mul", ["y", "s"], ["ys"]),
        helper.make_node("Add", ["ys", "t"], ["yst"]),
        helper.make_node("Relu", ["yst"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 6, 5, 5])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rewritten, count = optimize_for_onnxruntime(model)
    onnx.checker.check_model(rewritten)
    x = rng.standard_normal((3, 6, 5, 5)).astype(np.float32)
    run = [ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
           for m in (model, rewritten)]
    out_size = stride * 4 + kernel - pads[0] - pads[2]
    if out_size % stride:
        assert count == 0  # not whole DepthToSpace blocks: left as it was
    else:
        assert count == 1
        assert [n.op_type for n in rewritten.graph.node].count("ConvTranspose") == 0
    assert np.abs(run[0] - run[1]).max() <= 1e-4


# ---- options, inputs and folders ----------------------------------------------------------------
@pytest.mark.slow  # two more TFLite conversions
def test_dynamic_batch_tflite_and_the_resize_limitation(tmp_path):
    from exporters.converters import tflite

    model = build_tiny("gan")
    info = tflite.export_tflite(model.generator, tmp_path / "g.tflite", batch_size=None)
    assert info["inputs"][0]["shape"] == [None, model.latent_dim]
    generator_images = runtime.LiteRTBackend(tmp_path / "g.tflite").run(
        {"z": sampling.latents(5, model.latent_dim, seed=0)}
    )["images"]
    assert np.abs(generator_images - model.sample(5, seed=0)).max() <= FLOAT32_TOLERANCE
    resize = build_tiny("gan", upsampling="resize")
    tflite.export_tflite(resize.generator, tmp_path / "r1.tflite", batch_size=1)  # static: fine
    with pytest.raises(ValueError, match="batch_size=None"):
        tflite.export_tflite(resize.generator, tmp_path / "r.tflite", batch_size=None)


def test_export_from_a_keras_file_and_a_mixed_precision_model(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_tiny("cgan")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.generator.layers[-2].dtype_policy.name == "mixed_float16"
    model.compile()  # saving an uncompiled zoo model fails in get_compile_config
    model.save(tmp_path / "model.keras")
    report = exporters.export(tmp_path / "model.keras", tmp_path / "out", formats="onnx")
    entry = report["artifacts"]["generator.onnx"]
    assert entry["inputs"][0]["dtype"] == "float32"
    assert entry["verification"]["max_abs_diff"] <= FLOAT32_TOLERANCE  # against a float32 copy
    images = runtime.load(tmp_path / "out" / "generator.onnx").generate_float(
        4, labels=[0, 1, 2, 3], seed=0
    )
    assert np.abs(images - model.sample(4, labels=[0, 1, 2, 3], seed=0)).max() < 1e-2


def test_refuses_a_non_empty_folder_and_overwrite_keeps_the_old_export_on_failure(tmp_path):
    model = build_tiny("gan")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        exporters.export(model, out, formats="onnx")
    with pytest.raises(verify.VerificationError, match="max abs diff"):
        exporters.export(model, out, formats="onnx", overwrite=True, tolerances={"none": -1.0})
    assert (out / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging left behind
    exporters.export(model, out, formats="onnx", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["generator.onnx", "manifest.json"]


@pytest.mark.parametrize(
    "kwargs,fragment",
    [({"formats": ("pdf",)}, "pdf"), ({"formats": "onnx,tflit"}, "tflit"),
     ({"quantize": "int4"}, "int4"), ({"tflite_batch_sizes": (0,)}, "(0,)"),
     ({"opset": 7, "formats": "onnx"}, "7")],
)
def test_bad_options_echo_the_value(tmp_path, kwargs, fragment):
    with pytest.raises(ValueError) as error:
        exporters.export(build_tiny("gan"), tmp_path / "out", **kwargs)
    assert fragment in str(error.value)
    assert not (tmp_path / "out").exists()


def test_bad_sources(tmp_path):
    with pytest.raises(TypeError, match="zoo model"):
        exporters.export(object(), tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no .keras model"):
        exporters.export(tmp_path / "missing.keras", tmp_path / "out")
    (tmp_path / "bad.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="could not load"):
        exporters.export(tmp_path / "bad.keras", tmp_path / "out")


def test_cli_list_export_and_sample_in_process(tmp_path, capsys):
    """`zoo list`, `zoo export` and `zoo sample` through zoo.cli.main in this process (no
    subprocess: TensorFlow is loaded already); the subprocess runs are in the slow tier."""
    from zoo import cli

    assert cli.main(["list"]) == 0
    listed = capsys.readouterr().out
    for name in (*exporters.FORMATS, "gan", "cgan", "vae", "ddpm", "mnist5k"):
        assert name in listed, name
    model = build_tiny("cgan")
    model.compile()
    model.save(tmp_path / "model.keras")
    out = tmp_path / "export"
    assert cli.main(["export", str(tmp_path / "model.keras"), "--out", str(out),
                     "--formats", "onnx"]) == 0
    printed = capsys.readouterr().out
    assert "generator.onnx" in printed and "max abs diff" in printed
    assert cli.main(["sample", str(out), "--n", "3", "--labels", "0,1,2", "--seed", "4",
                     "--out", str(tmp_path / "s.npy")]) == 0
    expected = to_uint8(model.sample(3, labels=[0, 1, 2], seed=4))
    assert np.abs(np.load(tmp_path / "s.npy").astype(int) - expected).max() <= 1
    # bad input: one line on stderr, exit 2, nothing written
    assert cli.main(["sample", str(out), "--n", "3", "--out", str(tmp_path / "t.npy")]) == 2
    assert "conditional" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "t.npy").exists()


def test_importing_exporters_loads_no_tensorflow():
    code = ("import sys, exporters, exporters.runtime, exporters.server; "
            "assert 'tensorflow' not in sys.modules and 'zoo' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
