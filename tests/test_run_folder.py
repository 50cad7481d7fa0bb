"""exporters.run_folder.RunFolder: layout, config.json and status, atomic writes, errors that say
what is missing. Fast: stdlib only (no TensorFlow), plus the runtime for `resolve`."""

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from exporters import run_folder
from exporters.run_folder import RunFolder, RunFolderError

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = [ROOT / "saved_models" / f"{name}-mnist5k" for name in ("gan", "cgan", "vae")]
SETTINGS = {"model": "gan", "dataset": "digits", "batch_size": 100, "seed": 1,
            "model_kwargs": {"latent_dim": 8}, "steps_per_epoch": None, "precision": "float32"}


def make_run(path: Path, status="running", epochs_done=None, **files) -> RunFolder:
    run = RunFolder(path)
    path.mkdir(parents=True, exist_ok=True)
    run.write_config({**SETTINGS, "status": status})
    if epochs_done is not None:
        run.write_json(f"{RunFolder.BACKUP}/{RunFolder.BACKUP_METADATA}", {"epoch": epochs_done})
    for name, text in files.items():
        (path / name.replace("__", "/")).parent.mkdir(parents=True, exist_ok=True)
        (path / name.replace("__", "/")).write_text(text)
    return run


# ---- layout and atomic writes --------------------------------------------------------------
def test_layout_names_every_part_of_a_run(tmp_path):
    run = RunFolder(tmp_path / "r")
    assert run.model_path == tmp_path / "r" / "model.keras"
    assert run.config_path.name == "config.json" and run.history_path.name == "history.csv"
    assert [p.name for p in (run.grids_dir, run.logs_dir, run.backup_dir, run.export_dir,
                             run.plots_dir)] == ["grids", "logs", "backup", "export", "plots"]
    assert run.eval_path.name == "eval.json"
    assert run.grid_path(7) == tmp_path / "r" / "grids" / "epoch-007.png"
    assert os.fspath(run) == str(tmp_path / "r") and RunFolder(run) == run
    assert not (tmp_path / "r").exists()  # creating one touches nothing


def test_atomic_json_write_replaces_whole_file_readable_by_others(tmp_path):
    path = tmp_path / "sub" / "x.json"
    run_folder.write_json_atomically(path, {"b": 1, "a": Path("p")})
    assert json.loads(path.read_text()) == {"a": "p", "b": 1}
    run_folder.write_json_atomically(path, {"c": 2})
    assert json.loads(path.read_text()) == {"c": 2}
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.json"]  # no temporary left


def test_save_atomically_keeps_the_suffix_and_the_old_file_when_saving_fails(tmp_path):
    path = tmp_path / "sub" / "model.weights.h5"
    seen = []

    def save(temporary):
        seen.append(temporary.name)
        temporary.write_text("new")

    assert run_folder.save_atomically(path, save) == path and path.read_text() == "new"
    assert seen[0].endswith("-model.weights.h5") and seen[0] != path.name  # Keras checks it

    def broken(temporary):
        temporary.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        run_folder.save_atomically(path, broken)
    assert path.read_text() == "new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.weights.h5"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    path.write_text('{"old": true}')

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(run_folder.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        run_folder.write_json_atomically(path, {"new": True})
    assert path.read_text() == '{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


# ---- config.json and status ----------------------------------------------------------------
def test_status_round_trip_and_epochs_done(tmp_path):
    run = make_run(tmp_path / "r", epochs_done=3)
    assert run.status == "running" and run.epochs_done() == 3
    config = run.set_status("interrupted", epochs_done=3)
    assert config["model"] == "gan"  # the rest of config.json is kept
    assert run.read_config()["status"] == "interrupted" and run.read_config()["epochs_done"] == 3
    assert run.describe_status() == "interrupted after 3 epoch(s)"
    run.set_status("finished")
    assert run.status == "finished" and run.describe_status() == "finished"


@pytest.mark.parametrize("text, match", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must hold a JSON object, got list"),
    ('{"status": "paused"}', "status 'paused'; expected one of running, interrupted, finished"),
])
def test_broken_config_is_one_clear_error(tmp_path, text, match):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(RunFolderError, match=match) as error:
        RunFolder(tmp_path).read_config()
    assert "\n" not in str(error.value)


def test_unknown_status_is_refused_before_writing(tmp_path):
    run = make_run(tmp_path / "r")
    before = run.config_path.read_text()
    with pytest.raises(RunFolderError, match="got 'done'"):
        run.set_status("done")
    assert run.config_path.read_text() == before


def test_epochs_done_is_zero_without_a_usable_backup(tmp_path):
    run = make_run(tmp_path / "r")
    assert run.epochs_done() == 0
    (run.backup_dir).mkdir()
    (run.backup_dir / RunFolder.BACKUP_METADATA).write_text("{broken")
    assert run.epochs_done() == 0


# ---- errors that say what is missing -------------------------------------------------------
def test_open_tells_missing_from_file_from_non_run(tmp_path):
    with pytest.raises(RunFolderError, match="no run folder at .*nowhere.*no such file or folder"):
        RunFolder.open(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(RunFolderError, match="is a file, not a run folder"):
        RunFolder.open(tmp_path / "notes.txt")
    with pytest.raises(RunFolderError, match=r"is not a run folder: it holds no config.json or "
                       r"model.keras \(it has notes.txt\)"):
        RunFolder.open(tmp_path)
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(RunFolderError, match="is an export folder"):
        RunFolder.open(tmp_path)


@pytest.mark.parametrize("folder", PRETRAINED, ids=lambda p: p.name)
def test_committed_pretrained_runs_say_they_hold_exports_but_no_model(folder):
    run = RunFolder.open(folder)  # a run folder: it exists and holds config.json
    assert run.status == "finished" and run.has_export() and not run.has_model()
    with pytest.raises(RunFolderError) as error:
        run.require_model("zoo eval")
    message = str(error.value)
    assert "is a run folder but holds no model.keras" in message
    assert "export/ (generator" in message and "zoo sample" in message
    assert "zoo eval needs the Keras model" in message
    assert "no such" not in message and "\n" not in message
    assert run.require_export() == folder / "export"


def test_unfinished_run_without_model_says_how_to_resume(tmp_path):
    run = make_run(tmp_path / "r", epochs_done=2)
    run.set_status("interrupted", epochs_done=2)
    with pytest.raises(RunFolderError, match="interrupted after 2 epoch.*rerun the same `zoo tr"):
        run.require_model("zoo plot")
    with pytest.raises(RunFolderError, match="holds no export/ .its training is interrupted"):
        run.require_export()


def test_run_with_model_but_no_export_says_to_export_first(tmp_path):
    run = make_run(tmp_path / "r", status="finished", **{"model.keras": "x"})
    assert run.require_model() == run.model_path
    with pytest.raises(RunFolderError, match=r"holds no export/ \(run `zoo export .*r` first\)"):
        run.require_export()


def test_runtime_resolves_a_run_folder_to_its_export_and_explains_when_it_cannot(tmp_path):
    from exporters import runtime

    assert runtime.resolve(PRETRAINED[1]) == PRETRAINED[1] / "export" / "generator.onnx"
    run = make_run(tmp_path / "r", status="finished", **{"model.keras": "x"})
    with pytest.raises(ValueError, match="is a run folder but it holds no export/"):
        runtime.resolve(run.path)
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        runtime.resolve(tmp_path / "nowhere")
    bare = tmp_path / "bare"  # only export/ (copied out of a run): still resolved
    shutil.copytree(PRETRAINED[0] / "export", bare / "export")
    assert runtime.resolve(bare) == bare / "export" / "generator.onnx"


# ---- starting or resuming a training run ---------------------------------------------------
def test_check_resumable(tmp_path):
    assert RunFolder(tmp_path / "new").check_resumable(SETTINGS) is False
    (tmp_path / "empty").mkdir()
    assert RunFolder(tmp_path / "empty").check_resumable(SETTINGS) is False

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(RunFolderError, match="is not a genzoo run"):
        RunFolder(other).check_resumable(SETTINGS)
    assert (other / "notes.txt").read_text() == "keep me"

    run = make_run(tmp_path / "r")
    assert run.check_resumable(SETTINGS) is True
    assert run.check_resumable({**SETTINGS, "model_kwargs": {"latent_dim": 8}}) is True
    with pytest.raises(RunFolderError, match="other settings .*batch_size: 100 -> 50"):
        run.check_resumable({**SETTINGS, "batch_size": 50})
    # a setting older runs did not record is compared with the value they used
    config = run.read_config()
    del config["precision"]
    run.write_config(config)
    assert run.check_resumable(SETTINGS, defaults={"precision": "float32"}) is True
    run.set_status("finished")
    with pytest.raises(RunFolderError, match="finished run; it is never overwritten"):
        run.check_resumable(SETTINGS)


def test_default_training_folder_never_collides_and_resumes_its_own(tmp_path):
    root = tmp_path / "runs"
    first, resuming = RunFolder.for_training("gan", "idx:/data/x", SETTINGS, root)
    assert first.path == root / "gan-idx-data-x" and resuming is False

    make_run(root / "gan-digits", status="finished")  # like a committed pretrained run
    run, resuming = RunFolder.for_training("gan", "digits", SETTINGS, root)
    assert run.path == root / "gan-digits-2" and resuming is False

    make_run(root / "gan-digits-2")  # unfinished, same settings: resumed
    assert RunFolder.for_training("gan", "digits", SETTINGS, root) == (run, True)
    other = {**SETTINGS, "batch_size": 7}  # other settings: a fresh folder, the old one kept
    assert RunFolder.for_training("gan", "digits", other, root) == (
        RunFolder(root / "gan-digits-3"), False
    )
    assert RunFolder(root / "gan-digits").status == "finished"


def test_run_folder_module_is_stdlib_only():
    probe = (
        "import sys, exporters.run_folder\n"
        "heavy = [m for m in ('numpy', 'tensorflow', 'keras', 'onnxruntime') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_contents_lists_a_few_files_of_each_folder(tmp_path):
    run = make_run(tmp_path / "r", **{f"export__f{i}.onnx": "" for i in range(6)})
    text = run.contents()
    assert text.startswith("config.json, export/ (f0.onnx, f1.onnx, f2.onnx, f3.onnx, ...)")
    shutil.rmtree(run.export_dir)
    run.export_dir.mkdir()
    assert "export/ (empty)" in run.contents()
