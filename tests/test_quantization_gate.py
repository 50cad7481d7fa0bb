"""Quantized exports gated on sample quality (zoo.evaluate.quantization_gate).

A tiny 8x8 cgan is exported with int8 and fp16 TFLite variants and scored on the `digits` data
set with a small cached classifier: each quantized artifact's manifest entry holds its FID, the
float32 artifact's and their ratio, computed here again independently; a ratio over the limit
fails the export and leaves what was there; the CLI needs a data set to score on.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from exporters import manifest as manifest_lib
from exporters import runtime

N = 300


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    from zoo import evaluate

    return evaluate.load_classifier("digits", cache_dir=tmp_path_factory.mktemp("classifier"),
                                    epochs=3, filters=8, announce=None)


@pytest.fixture(scope="module")
def model():
    import zoo

    return zoo.build("cgan", image_shape=(8, 8, 1), num_classes=10, latent_dim=16,
                     base_filters=8, seed=3)


@pytest.fixture(scope="module")
def gated(model, classifier, tmp_path_factory):
    import exporters
    from zoo import evaluate

    out = tmp_path_factory.mktemp("gated") / "export"
    report = exporters.export(
        model, out, formats=("onnx", "tflite"), quantize=("int8", "fp16"),
        tflite_batch_sizes=(1,),
        quality_check=evaluate.quantization_gate("digits", n=N, classifier=classifier))
    return out, report


def fid_of(path, classifier):
    from zoo import data, evaluate

    real, _ = classifier.embed(data.load_arrays("digits", "test")[0])
    labels = np.arange(N) % 10
    images = runtime.load(path, max_images=N).generate_float(N, labels, 0)
    return evaluate.frechet_distance(real, classifier.embed(images)[0])


@pytest.mark.slow  # trains the small digits classifier and exports int8 + fp16
def test_quantized_artifacts_carry_their_fid_ratio(gated, classifier):
    out, report = gated
    written = manifest_lib.read(out)["artifacts"]
    float_fid = fid_of(out / "generator.onnx", classifier)
    for name in ("generator-int8-b1.tflite", "generator-fp16-b1.tflite"):
        quality = written[name]["quality"]
        assert quality == report["artifacts"][name]["quality"]
        assert quality["reference"] == "generator.onnx" and quality["n"] == N
        assert quality["float_fid"] == pytest.approx(float_fid, rel=1e-6)
        assert quality["fid"] == pytest.approx(fid_of(out / name, classifier), rel=1e-6)
        assert quality["fid_ratio"] == pytest.approx(quality["fid"] / float_fid, rel=1e-9)
        assert 0 < quality["fid_ratio"] <= quality["max_ratio"] == 1.2
    assert "quality" not in written["generator.onnx"]  # float32 artifacts are the reference


@pytest.mark.slow  # trains the small digits classifier and exports int8 + fp16
def test_a_quantized_artifact_worse_than_allowed_fails_and_writes_nothing(gated, classifier,
                                                                           tmp_path):
    """Stand-in for a broken quantization: the 'int8' file of a copied export replaced by the
    generator with its to-image bias pushed up (every image near white). The gate names the
    artifact and the ratio."""
    import zoo
    from exporters.converters.tflite import export_tflite
    from zoo import evaluate

    out, _ = gated
    folder = tmp_path / "export"
    shutil.copytree(out, folder)
    other = zoo.build("cgan", image_shape=(8, 8, 1), num_classes=10, latent_dim=16,
                      base_filters=8, seed=3)
    to_image = other.generator.get_layer("to_image")
    kernel, bias = to_image.get_weights()
    to_image.set_weights([kernel, bias + 3.0])
    export_tflite(other.generator, folder / "generator-int8-b1.tflite", batch_size=1)
    manifest = manifest_lib.read(folder)
    entry = manifest["artifacts"]["generator-int8-b1.tflite"]
    entry.update(manifest_lib.digest(folder / "generator-int8-b1.tflite"))
    manifest_lib.write(folder, manifest)
    gate = evaluate.quantization_gate("digits", n=N, classifier=classifier)
    with pytest.raises(evaluate.QualityGateError) as failure:
        gate(folder, manifest)
    ratio = fid_of(folder / "generator-int8-b1.tflite", classifier) / fid_of(
        folder / "generator.onnx", classifier)
    assert ratio > 1.2 and str(failure.value).startswith(
        "generator-int8-b1.tflite: classifier-FID ") and f"is {ratio:.2f}x the float32 " \
        "generator.onnx's" in str(failure.value)


def test_a_failing_check_leaves_the_previous_export(model, tmp_path):
    import exporters

    out = tmp_path / "export"
    exporters.export(model, out, formats=("onnx",))
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def refuse(folder, manifest):
        raise ValueError("refused by the check")

    with pytest.raises(ValueError, match="refused by the check"):
        exporters.export(model, out, formats=("onnx", "tflite"), quantize="int8",
                         tflite_batch_sizes=(1,), overwrite=True, quality_check=refuse)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no staging folder left


@pytest.mark.slow  # trains the small digits classifier and exports int8 + fp16
def test_gate_rejects_bad_settings_and_a_mismatched_data_set(gated, classifier):
    from zoo import evaluate

    with pytest.raises(ValueError, match="max_ratio must be a number >= 1, got 0.5"):
        evaluate.quantization_gate("digits", max_ratio=0.5)
    with pytest.raises(ValueError, match="n must be"):
        evaluate.quantization_gate("digits", n=0)
    out, _ = gated
    gate = evaluate.quantization_gate("mnist5k", n=N, classifier=classifier)
    with pytest.raises(ValueError, match=r"makes \(8, 8, 1\) images and mnist5k holds \(28, 28, 1\)"):
        gate(out, manifest_lib.read(out))


def test_cli_quantize_needs_a_data_set_or_an_explicit_skip(model, tmp_path, capsys):
    from zoo import cli

    model.save(tmp_path / "m.keras")
    status = cli.main(["export", str(tmp_path / "m.keras"), "--formats", "tflite",
                       "--quantize", "int8", "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err.strip()
    assert status == 2 and error.count("\n") == 0
    assert "pass --gate-dataset NAME (or --gate-samples 0" in error
    assert not (tmp_path / "out").exists()
    status = cli.main(["export", str(tmp_path / "m.keras"), "--formats", "tflite",
                       "--quantize", "int8", "--out", str(tmp_path / "out"),
                       "--gate-samples", "0"])
    assert status == 0
    written = json.loads((tmp_path / "out" / "manifest.json").read_text())["artifacts"]
    assert written["generator-int8-b1.tflite"]["quality"] == {
        "fid_ratio": None, "not_scored": "--gate-samples 0"}


@pytest.mark.slow  # trains a tiny cgan and the digits classifier (default settings)
def test_train_with_quantized_export_scores_it_on_the_runs_data_set(tmp_path, monkeypatch):
    from zoo import train

    monkeypatch.setenv("ZOO_CLASSIFIER_DIR", str(tmp_path / "classifiers"))
    run = train.train("cgan", dataset="digits", epochs=1, batch_size=64, seed=0,
                      out=tmp_path / "run", export=("tflite",), quantize="int8", verbose=0,
                      model_kwargs={"latent_dim": 8, "base_filters": 8})
    quality = manifest_lib.read(run / "export")["artifacts"]["generator-int8-b1.tflite"]["quality"]
    assert quality["dataset"] == "digits" and quality["reference"] == "generator-b1.tflite"
    assert quality["fid_ratio"] == pytest.approx(quality["fid"] / quality["float_fid"])


def test_int8_is_not_offered_for_diffusion_and_says_why(tmp_path):
    """A family can decline a quantization (quantizations_not_offered, with measured reasons):
    the export fails before any conversion and writes nothing."""
    import exporters
    import zoo

    model = zoo.build("cddpm", image_shape=(8, 8, 1), num_classes=10, base_filters=8,
                      channel_multipliers=(1, 2), timesteps=50, seed=0)
    with pytest.raises(ValueError) as refused:
        exporters.export(model, tmp_path / "export", formats=("tflite",), quantize="int8")
    assert str(refused.value).startswith("quantize='int8' is not offered for cddpm: ")
    assert "errs by up to 2.0 on its prediction" in str(refused.value)
    assert list(tmp_path.iterdir()) == []


def test_cli_export_takes_tflite_batch_sizes(model, tmp_path, capsys):
    from zoo import cli

    model.save(tmp_path / "m.keras")
    assert cli.main(["export", str(tmp_path / "m.keras"), "--formats", "tflite",
                     "--tflite-batch-sizes", "1", "--out", str(tmp_path / "out")]) == 0
    written = json.loads((tmp_path / "out" / "manifest.json").read_text())["artifacts"]
    assert sorted(written) == ["generator-b1.tflite"]
    with pytest.raises(SystemExit):
        cli.main(["export", str(tmp_path / "m.keras"), "--tflite-batch-sizes", "0,a"])
    assert "TFLite batch sizes must be positive integers or 'dynamic', got '0,a'" in (
        capsys.readouterr().err)


def test_int8_is_not_offered_for_stylegan(tmp_path):
    import exporters
    import zoo

    model = zoo.build("stylegan", image_shape=(16, 16, 1), num_classes=0, latent_dim=8, w_dim=8,
                      base_filters=4, max_filters=8, d_base_filters=4, seed=0)
    with pytest.raises(ValueError, match="quantize='int8' is not offered for stylegan: its int8 "
                                         "synthesis network is 0.6-1.1 off"):
        exporters.export(model, tmp_path / "export", formats=("tflite",), quantize="int8")
    assert list(tmp_path.iterdir()) == []
