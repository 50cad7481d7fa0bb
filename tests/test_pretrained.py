"""The committed pretrained runs in saved_models/ work as the README says, right after install."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from exporters import runtime

SAVED = Path(__file__).resolve().parents[1] / "saved_models"
RUNS = {"gan-mnist5k": 0, "cgan-mnist5k": 10, "vae-mnist5k": 0}


@pytest.mark.parametrize("run, num_classes", RUNS.items())
def test_pretrained_artifacts_generate_digits(run, num_classes):
    folder = SAVED / run
    scores = json.loads((folder / "eval.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    assert config["status"] == "finished" and config["dataset"] == "mnist5k"
    assert scores  # written by `zoo eval` in tools/train_pretrained.sh
    labels = [7] * 8 if num_classes else None
    found = {}
    for artifact in ("generator.onnx", "generator-b1.tflite"):
        generator = runtime.load(folder / "export" / artifact)  # checks sha256 against manifest
        images = generator.generate(8, labels=labels, seed=0)
        assert images.dtype == np.uint8 and images.shape == (8, 28, 28, 1)
        # trained digits: dark background with bright strokes
        assert 0.05 < np.mean(images > 127) < 0.4
        # another seed gives another digit in every slot (measured: 17-56 grey levels apart)
        other = generator.generate(8, labels=labels, seed=1)
        apart = np.abs(images.astype(int) - other).reshape(8, -1).mean(axis=1)
        assert np.all(apart > 8), apart
        found[artifact] = images.astype(int)
    # the two runtimes agree on the same seed (rounding to uint8 aside)
    assert np.abs(found["generator.onnx"] - found["generator-b1.tflite"]).max() <= 1


# The gallery's other runs: the diffusion model on mnist5k, and both conditional recipes on
# Fashion-MNIST (which the tests never need: only the shipped artifacts are used here).
GALLERY = {"cddpm-mnist5k": "mnist5k", "cgan-fashion": "idx:", "cddpm-fashion": "idx:"}


@pytest.mark.parametrize("run", [*RUNS, *GALLERY])
def test_every_pretrained_run_records_how_it_was_made_and_scored(run):
    folder = SAVED / run
    config = json.loads((folder / "config.json").read_text())
    assert config["status"] == "finished"
    train, export, score = config["commands"]  # written by tools/train_pretrained.sh
    assert train.startswith(f"zoo train {run.split('-')[0]} ") and "--seed 0" in train
    assert export.startswith(f"zoo export saved_models/{run} ") and score.startswith("zoo eval")
    scores = json.loads((folder / "eval.json").read_text())
    assert scores["model"]["fid"] > scores["real_floor"]["fid"] > 0
    assert (folder / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert config["dataset"].startswith(GALLERY.get(run, "mnist5k"))


@pytest.mark.slow  # 10 DDIM steps of the shipped denoisers
@pytest.mark.parametrize("run", GALLERY)
def test_gallery_artifacts_generate_the_class_asked_for_differently_per_seed(run):
    folder = SAVED / run
    labels = [3] * 4
    options = {"steps": 10} if run.startswith("cddpm") else {}
    found = {}
    for artifact in ("generator.onnx", "generator-b1.tflite"):
        path = folder / "export" / artifact
        if not path.exists():
            continue
        generator = runtime.load(path)  # checks sha256 against the manifest
        images = generator.generate(4, labels=labels, seed=0, **options)
        assert images.dtype == np.uint8 and images.shape == (4, 28, 28, 1)
        assert 0.02 < np.mean(images > 127) < 0.6  # dark background, bright object
        other = generator.generate(4, labels=labels, seed=1, **options)
        apart = np.abs(images.astype(int) - other).reshape(4, -1).mean(axis=1)
        assert np.all(apart > 5), apart
        found[artifact] = images.astype(int)
    assert "generator.onnx" in found
    if len(found) == 2:  # the two runtimes agree on the same seed (rounding to uint8 aside)
        assert np.abs(found["generator.onnx"] - found["generator-b1.tflite"]).max() <= 2


def test_zoo_sample_on_a_pretrained_run(tmp_path):
    zoo_script = Path(sys.executable).with_name("zoo")
    out = tmp_path / "sevens.png"
    result = subprocess.run(
        [str(zoo_script), "sample", str(SAVED / "cgan-mnist5k"), "--n", "16", "--labels", "7",
         "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- every command that takes a run accepts the committed runs (export only, no model.keras) --
# Each test works on a copy in tmp_path: the committed folders are never written.

ZOO = Path(sys.executable).with_name("zoo")


def run_zoo(*args, env=None, timeout=300):
    """`zoo ARGS` as a user runs it (conftest's TF_CPP_MIN_LOG_LEVEL=2 left out: zoo chooses)."""
    import os

    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [str(ZOO), *map(str, args)], capture_output=True, text=True, timeout=timeout,
        env={**environment, **(env or {})}, check=False,
    )


def tree(folder: Path) -> dict:
    """{relative path: bytes} of every file under folder."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def copy_of(tmp_path):
    import shutil

    def copy(run):
        target = tmp_path / run
        shutil.copytree(SAVED / run, target)
        return target

    return copy


def cached_classifier(root: Path, trained: bool) -> Path:
    """A small classifier stored where `zoo eval` looks for the default one (ROOT is what
    ZOO_CLASSIFIER_DIR names), so eval runs without the 4-5 min training: trained for 4 epochs
    with 16 filters (~20 s, accuracy > 0.9) or untrained (scores are then only mechanics)."""
    from exporters.run_folder import write_json_atomically
    from zoo import evaluate

    if trained:
        classifier = evaluate.train_classifier("mnist5k", epochs=4, filters=16)
    else:
        model = evaluate.build_classifier((28, 28, 1), 10, filters=4, blocks=1, feature_dim=16)
        classifier = evaluate.DomainClassifier(model, {"dataset": "mnist5k", "untrained": True})
    folder = evaluate.classifier_dir("mnist5k", root)  # the default settings' key
    folder.mkdir(parents=True)
    classifier.model.save(folder / evaluate.CLASSIFIER_FILE)
    write_json_atomically(folder / evaluate.CLASSIFIER_INFO, classifier.info)
    return root


@pytest.fixture(scope="module")
def untrained_root(tmp_path_factory):
    return cached_classifier(tmp_path_factory.mktemp("untrained-classifier"), trained=False)


@pytest.fixture(scope="module")
def classifier_root(tmp_path_factory):
    return cached_classifier(tmp_path_factory.mktemp("classifier"), trained=True)


@pytest.mark.parametrize("run", RUNS)
def test_exported_generator_samples_with_model_sample_latents(run):
    """eval/plot sample an export-only run through the runtime's float output, from the latents
    model.sample draws for the same seed (the manifest's latent_recipe)."""
    from zoo.evaluate import ExportedGenerator

    model = ExportedGenerator.load(SAVED / run)
    labels = np.arange(12) % 10 if RUNS[run] else None
    images = model.sample(12, labels=labels, seed=3, batch_size=5)
    assert images.dtype == np.float32 and images.shape == (12, 28, 28, 1)
    assert -1.0 - 1e-5 <= images.min() < images.max() <= 1.0 + 1e-5  # tanh, float32
    z = np.random.default_rng(3).standard_normal((12, model.latent_dim), dtype=np.float32)
    assert np.allclose(model.generate(z, labels), images, atol=1e-6)
    assert model.source == SAVED / run / "export" / "generator.onnx"
    assert model.keras_class is not None and model.keras_class.family == run.split("-")[0]


def test_exported_generator_passes_controls_to_the_runtime():
    """A loaded export takes the family's sampling controls, checked by the runtime."""
    from zoo.evaluate import ExportedGenerator

    model = ExportedGenerator.load(SAVED / "cddpm-fashion")
    two = model.sample(2, labels=[0, 7], seed=1, steps=2, guidance_scale=1.0)
    assert np.array_equal(two, model.runtime.generate_float(2, [0, 7], 1, steps=2,
                                                            guidance_scale=1.0))
    assert np.abs(model.sample(2, labels=[0, 7], seed=1, steps=3, guidance_scale=1.0)
                  - two).max() > 1e-3
    with pytest.raises(ValueError, match="truncation=0.5 needs a style-based generator"):
        model.sample(2, labels=[0, 7], seed=1, truncation=0.5)


@pytest.mark.parametrize("run", RUNS)
def test_eval_scores_an_export_only_run(run, copy_of, untrained_root):
    from zoo import evaluate

    folder = copy_of(run)
    committed = json.loads((folder / "eval.json").read_text())
    result = evaluate.evaluate_run(folder, n=64, cache_dir=untrained_root,
                                   kid_subsets=10, kid_subset_size=64)
    written = json.loads((folder / "eval.json").read_text())  # a fresh eval.json, whole
    assert written == json.loads(json.dumps(result)) and written != committed
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []  # no temp files
    assert result["family"] == run.split("-")[0] and result["model"]["n"] == 64
    assert result["generator"]["source"] == str(folder / "export" / "generator.onnx")
    assert np.isfinite(result["model"]["fid"]) and result["model"]["fid"] > 0
    if run == "vae-mnist5k":  # ELBO needs the encoder, which the run does not ship
        assert "likelihood" not in result and list(result["left_out"]) == ["likelihood"]
        assert "encoder" in result["left_out"]["likelihood"]
    else:
        assert "left_out" not in result
    assert ("class_consistency" in result) == bool(RUNS[run])


@pytest.mark.slow  # trains a small classifier (~20 s)
def test_eval_through_the_export_scores_like_the_committed_eval(copy_of, classifier_root):
    """The exported cgan, scored with its own samples: it makes the digits it is asked for
    (the committed eval.json, Keras model and the full classifier: 0.75)."""
    from zoo import evaluate

    result = evaluate.evaluate_run(copy_of("cgan-mnist5k"), n=500, cache_dir=classifier_root)
    floor = result["class_consistency"]["real_floor"]
    assert floor > 0.9 and result["class_consistency"]["overall"] > 0.6
    assert result["model"]["fid"] > result["real_floor"]["fid"]


@pytest.mark.slow  # a `zoo` process that imports TensorFlow (~8 s)
def test_zoo_eval_on_an_export_only_vae_says_what_it_leaves_out(copy_of, untrained_root):
    folder = copy_of("vae-mnist5k")
    result = run_zoo("eval", folder, "--n", "64", env={"ZOO_CLASSIFIER_DIR": str(untrained_root)})
    assert result.returncode == 0, result.stderr
    left_out = [line for line in result.stdout.splitlines() if line.startswith("left out")]
    assert len(left_out) == 1 and "ELBO" in left_out[0] and "encoder" in left_out[0]
    assert f"sampled from the exported generator {folder}/export/generator.onnx" in result.stdout
    assert f"scores: {folder}/eval.json" in result.stdout
    assert result.stderr.strip() == ""  # no TensorFlow lines, no classifier training
    assert json.loads((folder / "eval.json").read_text())["n"] == 64


@pytest.mark.slow  # a `zoo` process that imports TensorFlow (~6 s)
def test_failed_eval_keeps_the_committed_scores(copy_of, untrained_root):
    folder = copy_of("cgan-mnist5k")
    before = tree(folder)
    result = run_zoo("eval", folder, "--n", "64", "--dataset", "digits",
                     env={"ZOO_CLASSIFIER_DIR": str(untrained_root)})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "shape (28, 28, 1) but dataset 'digits' has (8, 8, 1)" in last
    assert tree(folder) == before


@pytest.mark.parametrize("run", RUNS)
def test_plot_draws_what_the_export_can_and_notes_the_rest(run, copy_of):
    from zoo import plots

    folder = copy_of(run)
    notes = []
    paths = plots.plot_run(folder, note=notes.append)
    expected = {"samples", "interpolation", "loss_curves"} | ({"classes"} if RUNS[run] else set())
    assert {p.stem for p in paths} == expected
    for path in paths:
        assert path.parent == folder / "plots" and path.read_bytes()[:4] == b"\x89PNG"
    if run == "vae-mnist5k":
        assert len(notes) == 1 and notes[0].startswith("skipped reconstructions.png")
        assert "encoder" in notes[0] and "\n" not in notes[0]
    else:
        assert notes == []


def test_plot_interpolation_of_an_export_runs_the_network_on_slerped_latents(copy_of):
    from PIL import Image

    from zoo import plots

    folder = copy_of("gan-mnist5k")
    plots.plot_run(folder, note=None)
    grid = np.asarray(Image.open(folder / "plots" / "interpolation.png"))
    # 8 rows x 10 steps of 28x28 cells: neighbours along a row are close, rows differ
    cells = [[grid[2 + r * 30 : 30 + r * 30, 2 + c * 30 : 30 + c * 30].astype(int)
              for c in range(10)] for r in range(8)]
    step = np.mean([np.abs(row[c] - row[c + 1]).mean() for row in cells for c in range(9)])
    ends = np.mean([np.abs(row[0] - row[9]).mean() for row in cells])
    assert step < ends / 2, (step, ends)


@pytest.mark.slow  # a `zoo` process that imports TensorFlow (~6 s)
def test_zoo_plot_on_a_pretrained_vae_notes_the_skipped_pictures(copy_of):
    folder = copy_of("vae-mnist5k")
    result = run_zoo("plot", folder)
    assert result.returncode == 0, result.stderr
    written = sorted(Path(line).name for line in result.stdout.split())
    assert written == ["interpolation.png", "loss_curves.png", "samples.png"]
    note = ("zoo: skipped reconstructions.png: it needs the VAE's encoder, which this run does "
            "not ship (drawn from generator.onnx)")
    assert result.stderr.strip().splitlines() == [note]


@pytest.mark.parametrize("run", RUNS)
def test_zoo_export_triton_from_the_shipped_onnx(run, copy_of):
    from exporters import manifest as manifest_lib

    folder = copy_of(run)
    shipped = tree(folder / "export")
    result = run_zoo("export", folder, "--formats", "triton")
    assert result.returncode == 0, result.stderr
    assert f"export: {folder}/export" in result.stdout and "triton" in result.stdout
    export = folder / "export"
    repository = export / "triton" / "generator"
    assert (repository / "1" / "model.onnx").read_bytes() == shipped["generator.onnx"]
    manifest = manifest_lib.read(export)
    entry = manifest["artifacts"]["triton"]
    assert entry["verification"]["passed"] and entry["verification"]["max_abs_diff"] == 0.0
    assert entry["derived_from"] == "generator.onnx"
    assert manifest_lib.digest(export / "triton")["sha256"] == entry["sha256"]
    # everything shipped is still there, byte for byte; only manifest.json lists one more
    after = tree(export)
    assert {k: v for k, v in after.items() if k in shipped and k != "manifest.json"} == {
        k: v for k, v in shipped.items() if k != "manifest.json"
    }
    old = json.loads(shipped["manifest.json"])
    assert {k: v for k, v in manifest["artifacts"].items() if k != "triton"} == old["artifacts"]
    # the shipped artifacts still load (sha256 checked) and the config is Triton's own
    assert runtime.load(folder).generate(2, labels=[1, 2] if RUNS[run] else None).shape[0] == 2
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from google.protobuf import text_format

    config = text_format.Parse((repository / "config.pbtxt").read_text(),
                               model_config_pb2.ModelConfig())
    assert config.max_batch_size == 256 and config.backend == "onnxruntime"
    assert [i.name for i in config.input] == (["z", "label"] if RUNS[run] else ["z"])
    assert list(config.output[0].dims) == [28, 28, 1]
    # a second time: refused without --overwrite, nothing touched; with it, rebuilt
    again = run_zoo("export", folder, "--formats", "triton")
    assert again.returncode == 2 and "already holds triton/; pass --overwrite" in again.stderr
    assert tree(export) == after
    assert run_zoo("export", folder, "--formats", "triton", "--overwrite").returncode == 0
    assert (repository / "1" / "model.onnx").read_bytes() == shipped["generator.onnx"]


def test_zoo_export_triton_into_another_folder(copy_of, tmp_path):
    folder = copy_of("cgan-mnist5k")
    shipped = tree(folder)
    out = tmp_path / "repository"
    result = run_zoo("export", folder, "--formats", "triton", "--out", out)
    assert result.returncode == 0, result.stderr
    assert tree(folder) == shipped
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["artifacts"]) == ["triton"] and manifest["num_classes"] == 10
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "triton"]
    assert oct((out / "triton" / "generator" / "config.pbtxt").stat().st_mode & 0o777) == "0o644"


@pytest.mark.parametrize("formats", ["saved_model,tflite,onnx", "onnx", "tflite,triton"])
def test_zoo_export_of_keras_formats_says_what_is_missing_and_what_works(formats, copy_of):
    folder = copy_of("cgan-mnist5k")
    shipped = tree(folder)
    args = ("export", folder) if formats.startswith("saved_model") else (
        "export", folder, "--formats", formats)
    result = run_zoo(*args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    keras_only = ",".join(f for f in formats.split(",") if f != "triton")
    assert f"{folder} holds no model.keras, which --formats {keras_only} needs" in lines[0]
    assert "generator-b1.tflite, generator.onnx" in lines[0]
    assert f"`zoo export {folder} --formats triton`" in lines[0]
    assert tree(folder) == shipped


def test_only_finished_runs_without_model_are_export_only(copy_of):
    from exporters.run_folder import RunFolder

    assert all(RunFolder(SAVED / run).is_export_only() for run in RUNS)
    run = RunFolder(copy_of("gan-mnist5k"))
    run.set_status("interrupted", epochs_done=3)
    assert not run.is_export_only()  # eval/plot say to resume it instead
    run.set_status("finished")
    (run.path / "model.keras").write_bytes(b"")
    assert not run.is_export_only()  # the Keras model is used


def test_gallery_table_prints_each_runs_committed_scores():
    """tools/gallery_table.py (the README's gallery table): one row per run, its eval.json's
    classifier-FID beside the real floor."""
    result = subprocess.run([sys.executable, str(SAVED.parent / "tools" / "gallery_table.py"),
                             "--runs", ",".join([*RUNS, *GALLERY])],
                            capture_output=True, text=True, timeout=60, check=True)
    rows = [line for line in result.stdout.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == [*RUNS, *GALLERY]
    for row, run in zip(rows, [*RUNS, *GALLERY]):
        scores = json.loads((SAVED / run / "eval.json").read_text())
        assert (f"{scores['model']['fid']:.2f} ({scores['real_floor']['fid']:.2f})"
                in row), row
    missing = subprocess.run([sys.executable, str(SAVED.parent / "tools" / "gallery_table.py"),
                              "--runs", "no-such-run"], capture_output=True, text=True,
                             timeout=60, check=False)
    assert missing.returncode == 2 and "no eval.json in" in missing.stderr


def test_gallery_table_adds_training_minutes_for_any_folder_of_runs(tmp_path):
    for name, minutes in (("a-run", 12.5), ("b-run", 3.0)):
        (tmp_path / name).mkdir()
        shutil.copy(SAVED / "cgan-mnist5k" / "eval.json", tmp_path / name)
        config = json.loads((SAVED / "cgan-mnist5k" / "config.json").read_text())
        config.update(started=1000.0, finished=1000.0 + 60 * minutes)
        (tmp_path / name / "config.json").write_text(json.dumps(config))
    script = str(SAVED.parent / "tools" / "gallery_table.py")
    result = subprocess.run([sys.executable, script, "--root", str(tmp_path), "--train-minutes"],
                            capture_output=True, text=True, timeout=60, check=True)
    rows = [line for line in result.stdout.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == ["a-run", "b-run"]
    assert rows[0].endswith("| 12.5 |") and rows[1].endswith("| 3.0 |")
    assert "train minutes" in result.stdout.splitlines()[0]
    written = tmp_path / "table.json"
    subprocess.run([sys.executable, script, "--runs", f"{tmp_path / 'b-run'}", "--json",
                    str(written)], capture_output=True, text=True, timeout=60, check=True)
    [numbers] = json.loads(written.read_text())
    committed = json.loads((SAVED / "cgan-mnist5k" / "eval.json").read_text())
    assert numbers["run"] == "b-run" and numbers["train_minutes"] == pytest.approx(3.0)
    assert numbers["model"]["fid"] == committed["model"]["fid"] and numbers["family"] == "cgan"
    bad = subprocess.run([sys.executable, script, "--root", str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "is not a folder" in bad.stderr


def test_readme_gallery_table_is_what_gallery_table_prints():
    """README.md's gallery table is tools/gallery_table.py's output for the committed runs, so
    a re-trained run's new scores cannot leave the README behind."""
    readme = (SAVED.parent / "README.md").read_text()
    quoted = readme.split("<!-- gallery-table -->\n")[1].split("\n\n")[0].strip()
    names = [line.split("`")[1] for line in quoted.splitlines() if line.startswith("| `")]
    assert set(names) == {*RUNS, *GALLERY}
    printed = subprocess.run([sys.executable, str(SAVED.parent / "tools" / "gallery_table.py"),
                              "--runs", ",".join(names)], capture_output=True, text=True,
                             timeout=60, check=True).stdout.strip()
    assert quoted == printed
