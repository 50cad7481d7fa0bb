"""exporters.runtime: TensorFlow-free generation that matches model.sample, and clear errors for
every bad input, corrupt file and mismatched manifest."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from export_fixtures import TFLITE_BATCH, families, labels_for, shared_exports

from exporters import runtime, sampling
from exporters.images import to_uint8


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    return shared_exports(tmp_path_factory)


# ---- no TensorFlow ------------------------------------------------------------------------------
@pytest.mark.parametrize("family", families(["cgan", "vae"]))
def test_runtime_runs_without_tensorflow_and_matches_model_sample(exports, family, tmp_path):
    exported = exports(family)
    model = exported.model
    labels = labels_for(model, 6)
    np.save(tmp_path / "expected.npy", to_uint8(model.sample(6, labels=labels, seed=5)))
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        from exporters import runtime
        expected = np.load({str(tmp_path / "expected.npy")!r})
        for name in ("generator.onnx", "generator-b1.tflite", "generator-b{TFLITE_BATCH}.tflite"):
            g = runtime.load({str(exported.out_dir)!r} + "/" + name)
            images = g.generate(6, labels={labels!r}, seed=5)
            assert images.dtype == np.uint8 and images.shape == expected.shape, images.shape
            assert np.abs(images.astype(int) - expected).max() <= 1, name
        for banned in ("tensorflow", "keras", "zoo", "tf2onnx"):
            assert banned not in sys.modules, banned
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


# ---- determinism and batching -------------------------------------------------------------------
def test_same_seed_same_images_and_batch_size_does_not_matter(exports):
    g = runtime.load(exports("gan").out_dir)  # an export folder: picks the ONNX generator
    assert g.format == "onnx" and g.path.name == "generator.onnx"
    first = g.generate(20, seed=3)
    assert np.array_equal(first, g.generate(20, seed=3))
    assert np.array_equal(first, g.generate(20, seed=3, batch_size=7))
    other = g.generate(20, seed=4)  # another seed: other latents in every slot, every chunk
    assert np.all(np.abs(first.astype(int) - other).reshape(20, -1).max(axis=1) >= 2)
    assert g.generate(2).shape == (2, 28, 28, 1)  # seed None: fresh noise


def test_static_batch_tflite_pads_the_last_chunk(exports):
    exported = exports("gan")
    onnx = runtime.load(exported.path("generator.onnx")).generate_float(TFLITE_BATCH + 1, seed=1)
    tflite = runtime.load(exported.path(f"generator-b{TFLITE_BATCH}.tflite"))
    assert tflite.backend.batch == TFLITE_BATCH
    assert np.abs(tflite.generate_float(TFLITE_BATCH + 1, seed=1) - onnx).max() <= 1e-4


def test_loads_a_run_folder_and_reports_metadata(exports, tmp_path):
    exported = exports("cgan")
    run = tmp_path / "run"
    shutil.copytree(exported.out_dir, run / "export")
    g = runtime.load(run)
    meta = g.metadata()
    assert meta["num_classes"] == 10 and meta["latent_dim"] == 16
    assert meta["image_shape"] == [28, 28, 1] and meta["format"] == "onnx"


def test_large_batches_run_as_concurrent_chunks(exports):
    g = runtime.load(exports("gan").path("generator.onnx"), threads=3)
    single = runtime.load(exports("gan").path("generator.onnx"), threads=1)
    assert np.array_equal(g.generate(50, seed=0), single.generate(50, seed=0))


# ---- bad inputs ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"n": 2}, "conditional: pass labels"),
        ({"n": 2, "labels": [1]}, "expected 2 labels"),
        ({"n": 2, "labels": [1, 2, 3]}, "expected 2 labels"),
        ({"n": 2, "labels": [[1, 2]]}, "expected 2 labels"),
        ({"n": 2, "labels": [1, 10]}, "[10] out of range"),
        ({"n": 2, "labels": [-1, 0]}, "[-1] out of range"),
        ({"n": 2, "labels": [1.5, 2]}, "must be integers"),
        ({"n": 2, "labels": ["a", "b"]}, "must be integers"),
        ({"n": 2, "labels": "12"}, "must be integers"),
        ({"n": 2, "labels": [True, False]}, "must be integers"),
        ({"n": 0, "labels": []}, "positive integer, got 0"),
        ({"n": -3, "labels": []}, "positive integer, got -3"),
        ({"n": 2.0, "labels": [1, 2]}, "positive integer, got 2.0"),
        ({"n": "4", "labels": [1, 2]}, "positive integer, got '4'"),
        ({"n": True, "labels": [1]}, "positive integer, got True"),
        ({"n": 5000, "labels": [1] * 5000}, "at most 4096"),
        ({"n": 2, "labels": [1, 2], "seed": -1}, "seed must be"),
        ({"n": 2, "labels": [1, 2], "seed": "x"}, "seed must be"),
        ({"n": 2, "labels": [1, 2], "batch_size": 0}, "batch_size must be"),
    ],
)
def test_conditional_input_errors(exports, kwargs, fragment):
    g = runtime.load(exports("cgan").path("generator.onnx"))
    with pytest.raises(ValueError) as error:
        g.generate(**kwargs)
    assert fragment in str(error.value)


def test_unconditional_model_refuses_labels(exports):
    g = runtime.load(exports("gan").path("generator-b1.tflite"))
    with pytest.raises(ValueError, match="unconditional"):
        g.generate(2, labels=[0, 1])


def test_float_labels_that_are_whole_numbers_are_accepted(exports):
    g = runtime.load(exports("cgan").path("generator.onnx"))
    assert np.array_equal(g.generate(2, labels=[1.0, 2.0], seed=0),
                          g.generate(2, labels=np.array([1, 2]), seed=0))


def test_expand_labels_broadcasts_one_label():
    assert sampling.expand_labels(3, 4) == [3, 3, 3, 3]
    assert sampling.expand_labels([3], 2) == [3, 3]
    assert sampling.expand_labels([1, 2], 3) == [1, 2]  # left for check_labels to refuse
    assert sampling.expand_labels(None, 3) is None


# ---- bad files and manifests --------------------------------------------------------------------
@pytest.fixture
def copy_of(exports, tmp_path):
    def copy(family):
        target = tmp_path / family
        shutil.copytree(exports(family).out_dir, target)
        return target

    return copy


@pytest.mark.parametrize("name", ["generator.onnx", "generator-b1.tflite"])
def test_truncated_or_corrupt_files_are_refused(copy_of, name):
    folder = copy_of("gan")
    path = folder / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(runtime.ArtifactError, match="does not match its manifest"):
        runtime.load(path)
    with pytest.raises(runtime.ArtifactError, match="not a loadable"):
        runtime.load(path, verify_hash=False)
    path.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(runtime.ArtifactError, match="not a loadable"):
        runtime.load(path, verify_hash=False)


def test_manifest_that_does_not_match_the_file(copy_of):
    folder = copy_of("gan")
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["artifacts"]["generator.onnx"]["inputs"][0]["shape"] = [None, 99]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(runtime.ArtifactError, match="do not match the manifest"):
        runtime.load(folder / "generator.onnx")
    shutil.copy(folder / "generator-b1.tflite", folder / "other.tflite")
    with pytest.raises(runtime.ArtifactError, match="not listed"):
        runtime.load(folder / "other.tflite")
    manifest_path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        runtime.load(folder / "generator.onnx")
    manifest_path.write_text(json.dumps({"family": "gan"}))
    with pytest.raises(ValueError, match="lacks the fields"):
        runtime.load(folder / "generator.onnx")
    manifest_path.unlink()
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        runtime.load(folder / "generator.onnx")


def test_unknown_or_missing_paths(copy_of, tmp_path):
    folder = copy_of("gan")
    with pytest.raises(FileNotFoundError, match="no artifact"):
        runtime.load(tmp_path / "nope.onnx")
    with pytest.raises(runtime.ArtifactError, match="SavedModel needs TensorFlow"):
        runtime.load(folder / "manifest.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        runtime.load(tmp_path / "empty")


@pytest.mark.slow  # exports the vae
def test_vae_encoder_artifact_checks_its_input(exports):
    encoder = runtime.load(exports("vae").path("encoder.onnx"))
    mean, log_var = encoder.encode(np.zeros((2, 28, 28, 1), np.float32))
    assert mean.shape == log_var.shape == (2, 8)
    with pytest.raises(ValueError, match="expected images of shape"):
        encoder.encode(np.zeros((2, 28, 28), np.float32))
