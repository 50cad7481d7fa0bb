"""Model repositories for the engines users scale out on, and exports others can read:

- `formats=("triton",)`: config.pbtxt parsed into Triton's own ModelConfig protobuf (shipped in
  tritonclient) and compared with the ONNX graph it ships; the ONNX model runs as the Keras one;
- `formats=("tf_serving",)`: a SavedModel under generator/1/ with `serve` and `serving_default`;
- every ONNX input and output names its batch dimension `batch`;
- export folders 0755 and files 0644 (a serving engine under another user can read them);
- every manifest, the committed ones included, lists exactly the files shipped beside it.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest

from exporters import runtime
from exporters.sampling import latents

ROOT = Path(__file__).resolve().parents[1]
TRITON_TYPES = {1: "float32", 6: "int32", 7: "int64"}  # onnx TensorProto -> numpy names


@pytest.fixture(scope="module")
def repositories(tmp_path_factory):
    import exporters
    import zoo

    model = zoo.build("cgan", image_shape=(28, 28, 1), num_classes=10, latent_dim=16,
                      base_filters=8, seed=3)
    out_dir = tmp_path_factory.mktemp("repos") / "export"
    report = exporters.export(model, out_dir, formats=("onnx", "triton", "tf_serving"))
    return model, out_dir, report


def parse_config(path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_triton_config_matches_the_onnx_graph(repositories):
    import onnx
    from tritonclient.grpc import model_config_pb2

    _, out_dir, report = repositories
    entry = report["artifacts"]["triton"]
    assert entry["format"] == "triton" and entry["verification"]["passed"]
    config = parse_config(out_dir / "triton" / "generator" / "config.pbtxt")
    assert config.name == "generator" and config.backend == "onnxruntime"
    assert config.max_batch_size == 256
    assert config.dynamic_batching.max_queue_delay_microseconds == 5000
    graph = onnx.load(out_dir / "triton" / "generator" / "1" / "model.onnx").graph
    data_types = model_config_pb2.DataType
    for declared, values in ((config.input, graph.input), (config.output, graph.output)):
        assert [t.name for t in declared] == [v.name for v in values]
        for tensor, value in zip(declared, values):
            dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
            assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
            if len(dims) == 1:  # [batch]: dims [1] reshaped to []
                assert list(tensor.dims) == [1] and tensor.HasField("reshape")
                assert list(tensor.reshape.shape) == []
            else:
                assert list(tensor.dims) == dims[1:]
            numpy_type = TRITON_TYPES[value.type.tensor_type.elem_type]
            assert data_types.Name(tensor.data_type) == "TYPE_" + {
                "float32": "FP32", "int32": "INT32", "int64": "INT64"}[numpy_type]
    assert [t.name for t in config.input] == ["z", "label"]
    assert [t.name for t in config.output] == ["images"]


def test_triton_model_runs_like_the_onnx_artifact(repositories):
    from exporters.runtime import OnnxBackend

    _, out_dir, _ = repositories
    feeds = {"z": latents(5, 16, 1), "label": np.arange(5, dtype=np.int32)}
    inside = OnnxBackend(out_dir / "triton" / "generator" / "1" / "model.onnx").run(feeds)
    beside = runtime.load(out_dir / "generator.onnx").backend.run(feeds)
    np.testing.assert_allclose(inside["images"], beside["images"], atol=1e-6)


def test_tf_serving_layout(repositories):
    import tensorflow as tf

    model, out_dir, report = repositories
    version = out_dir / "tf_serving" / "generator" / "1"
    assert (version / "saved_model.pb").is_file() and (version / "variables").is_dir()
    assert report["artifacts"]["tf_serving"]["verification"]["passed"]
    loaded = tf.saved_model.load(str(version))
    assert {"serve", "serving_default"} <= set(loaded.signatures)
    z, labels = latents(3, 16, 2), np.array([1, 2, 3], np.int32)
    expected = model.generator([z, labels], training=False).numpy()
    for name in ("serve", "serving_default"):
        got = loaded.signatures[name](z=tf.constant(z), label=tf.constant(labels))["images"]
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)


def test_onnx_batch_dimension_is_named_batch(repositories):
    import onnx

    _, out_dir, report = repositories
    graph = onnx.load(out_dir / "generator.onnx").graph
    names = {v.name: v.type.tensor_type.shape.dim[0].dim_param
             for v in [*graph.input, *graph.output]}
    assert names == {"z": "batch", "label": "batch", "images": "batch"}
    assert report["artifacts"]["generator.onnx"]["inputs"][0]["shape"] == [None, 16]


def test_export_is_readable_by_others(repositories):
    _, out_dir, _ = repositories
    paths = [out_dir, *out_dir.rglob("*")]
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))


def shipped_vs_listed(folder: Path):
    manifest = json.loads((folder / "manifest.json").read_text())
    listed = sorted(entry["file"] for entry in manifest["artifacts"].values())
    shipped = sorted(p.name for p in folder.iterdir() if p.name != "manifest.json")
    return listed, shipped


def test_manifest_lists_exactly_the_files_shipped(repositories):
    _, out_dir, _ = repositories
    listed, shipped = shipped_vs_listed(out_dir)
    assert listed == shipped == ["generator.onnx", "tf_serving", "triton"]


@pytest.mark.parametrize("folder", sorted(ROOT.glob("saved_models/*/export")),
                         ids=lambda p: p.parent.name)
def test_committed_manifests_list_exactly_the_files_shipped(folder):
    listed, shipped = shipped_vs_listed(folder)
    assert listed == shipped
    for name in listed:
        runtime.check_matches(folder / name, json.loads((folder / "manifest.json").read_text())[
            "artifacts"][name])


@pytest.mark.parametrize("name", ["", "a/b", None, 3])
def test_bad_model_names_are_refused_naming_the_value(name, tmp_path):
    from exporters import manifest as manifest_lib
    from exporters.converters import tf_serving, triton

    for check in (manifest_lib.check_model_name,
                  lambda n: triton.export_triton(None, tmp_path / "t", model_name=n),
                  lambda n: tf_serving.export_tf_serving(None, tmp_path / "s", model_name=n)):
        with pytest.raises(ValueError, match=f"got {name!r}"):
            check(name)
    assert list(tmp_path.iterdir()) == []
