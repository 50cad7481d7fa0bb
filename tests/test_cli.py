"""The `zoo` command end to end on a tiny budget, and its one-line errors."""

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

import zoo
from exporters.run_folder import RunFolder
from zoo import train as zoo_train

ZOO = [str(Path(sys.executable).with_name("zoo"))]
if not Path(ZOO[0]).exists():
    ZOO = [sys.executable, "-m", "zoo.cli"]
TINY = ["--dataset", "digits", "--batch-size", "100", "--seed", "1", "--verbose", "0",
        "--model-arg", "base_filters=8", "--model-arg", "latent_dim=8"]


def run_zoo(*args, timeout=300):
    return subprocess.run(
        [*ZOO, *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False
    )


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # the error alone: no TensorFlow start-up lines above it
    last = lines[-1]
    assert "error:" in last, result.stderr
    for fragment in fragments:
        assert fragment in last, (fragment, last)


@pytest.mark.slow  # `zoo` processes that import TensorFlow (~7 s each)
def test_list_names_models_and_datasets():
    result = run_zoo("list")
    assert result.returncode == 0, result.stderr
    for name in ("gan", "cgan", "vae", "mnist5k", "digits", "onnx", "tflite"):
        assert name in result.stdout


@pytest.mark.slow  # a `zoo` process that imports TensorFlow and trains
def test_train_writes_a_run_folder_and_never_overwrites_it(tmp_path):
    run = tmp_path / "run"
    result = run_zoo("train", "cgan", *TINY, "--epochs", "2", "--out", run)
    assert result.returncode == 0, result.stderr
    assert f"samples: {run / 'grids' / 'epoch-002.png'}" in result.stdout
    assert sorted(p.name for p in run.iterdir()) == [
        "config.json", "grids", "history.csv", "logs", "model.keras"
    ]
    assert sorted(p.name for p in (run / "grids").iterdir()) == ["epoch-001.png", "epoch-002.png"]
    assert list((run / "logs").rglob("events.out.tfevents.*"))
    rows = (run / "history.csv").read_text().strip().splitlines()
    assert rows[0].split(",")[:3] == ["epoch", "d_loss", "g_loss"] and len(rows) == 3
    assert "val_" not in rows[0] and "NA" not in rows[1]  # no validation data: no empty columns
    config = json.loads((run / "config.json").read_text())
    assert config["status"] == "finished" and config["family"] == "cgan"
    assert config["num_classes"] == 10 and config["image_shape"] == [8, 8, 1]
    model = keras.models.load_model(run / "model.keras")
    assert model.sample(3, labels=[0, 1, 2], seed=0).shape == (3, 8, 8, 1)

    before = (run / "model.keras").read_bytes()
    again = run_zoo("train", "cgan", *TINY, "--epochs", "2", "--out", run)
    assert_one_line_error(again, "finished run", "never overwritten")
    assert (run / "model.keras").read_bytes() == before


@pytest.mark.slow  # a `zoo` process that imports TensorFlow and trains
def test_same_seed_gives_the_same_model(tmp_path):
    for name in ("a", "b"):
        result = run_zoo("train", "vae", *TINY, "--epochs", "1", "--out", tmp_path / name)
        assert result.returncode == 0, result.stderr
    a = keras.models.load_model(tmp_path / "a" / "model.keras")
    b = keras.models.load_model(tmp_path / "b" / "model.keras")
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


class CrashAfterEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise RuntimeError("simulated crash")


def test_rerun_after_a_crash_resumes_from_the_last_finished_epoch(tmp_path):
    run = tmp_path / "run"
    settings = {"dataset": "digits", "epochs": 3, "batch_size": 100, "seed": 2, "out": run,
                "verbose": 0, "model_kwargs": {"base_filters": 8, "latent_dim": 8}}
    with pytest.raises(RuntimeError, match="simulated crash"):
        # the crash comes after the backup of epoch 2 is written (callbacks run in order)
        zoo_train.train("gan", **settings, callbacks=[_LastCallback(CrashAfterEpoch(2))])
    assert json.loads((run / "config.json").read_text())["status"] == "running"
    assert not (run / "model.keras").exists()
    assert len((run / "history.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs

    epochs_run = []
    recorder = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: epochs_run.append(e))
    zoo_train.train("gan", **settings, callbacks=[recorder])
    assert epochs_run == [2]
    rows = (run / "history.csv").read_text().strip().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "1", "2"]
    assert json.loads((run / "config.json").read_text())["status"] == "finished"

    with pytest.raises(ValueError, match="other settings .*batch_size: 100 -> 50"):
        other = tmp_path / "other"
        other.mkdir()
        (other / "config.json").write_text(json.dumps({**json.loads(
            (run / "config.json").read_text()), "status": "running"}))
        zoo_train.train("gan", **{**settings, "out": other, "batch_size": 50})


class _LastCallback(keras.callbacks.Callback):
    """Runs the wrapped callback after all others of the epoch (train() puts extras first)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.pending = None

    def on_epoch_end(self, epoch, logs=None):
        self.pending = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if self.pending is not None:
            self.inner.on_epoch_end(self.pending)

    def on_train_end(self, logs=None):
        if self.pending is not None:
            self.inner.on_epoch_end(self.pending)


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["train", "cgna"], ["unknown model 'cgna'; valid models:", "cgan", "vae"]),
        (["train", "gan", "--dataset", "nope"], ["unknown dataset 'nope'", "mnist5k, digits"]),
        (["train", "gan", "--epochs", "0"], ["--epochs", "positive integer, got 0"]),
        (["train", "gan", "--epochs", "-3"], ["--epochs", "positive integer, got -3"]),
        (["train", "gan", "--batch-size", "0"], ["--batch-size", "positive integer, got 0"]),
        (["train", "gan", "--dataset", "digits", "--model-arg", "image_shape=[32,32,3]"],
         ["(8, 8, 1)", "image_shape=(32, 32, 3)"]),
        (["train", "gan", "--dataset", "digits", "--model-arg", "latent_dim=-1"],
         ["latent_dim must be a positive integer, got -1"]),
        (["train", "gan", "--export", "pdf"], ["unknown export format", "pdf"]),
        (["train", "gan", "--dataset", "digits", "--model-arg", "latent_dmi=2"],
         ["unknown argument(s) latent_dmi for model 'gan'", "valid: image_shape, latent_dim,"]),
        (["train", "vae", "--dataset", "digits", "--model-arg", "archtecture=mlp"],
         ["unknown argument(s) archtecture", "likelihood", "beta"]),
    ],
)
@pytest.mark.slow  # `zoo` processes that import TensorFlow (~7 s each)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, fragments):
    out = tmp_path / "run"
    result = run_zoo(*args, "--out", out)
    assert_one_line_error(result, *fragments)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow  # `zoo` processes that import TensorFlow (~7 s each)
def test_errors_leave_existing_folders_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    result = run_zoo("train", "gan", *TINY, "--out", tmp_path)
    assert_one_line_error(result, "is not a genzoo run")
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_python_api_names_match_the_cli():
    assert set(zoo.list_models()) >= {"gan", "cgan", "vae"}


# ---- run folders: defaults, status after a signal, resume, what a run lacks ----------------
@pytest.mark.slow  # a zoo train subprocess (~20 s)
def test_default_out_skips_a_finished_run_such_as_a_pretrained_one(tmp_path):
    finished = tmp_path / "runs" / "gan-digits"
    finished.mkdir(parents=True)
    (finished / "config.json").write_text(json.dumps({"model": "gan", "status": "finished"}))
    result = subprocess.run(
        [*ZOO, "train", "gan", *TINY, "--epochs", "1", "--steps-per-epoch", "2"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"run: {Path('runs') / 'gan-digits-2'}" in result.stdout
    assert (tmp_path / "runs" / "gan-digits-2" / "model.keras").is_file()
    assert sorted(p.name for p in finished.iterdir()) == ["config.json"]  # untouched


@pytest.mark.slow  # zoo train subprocesses (~25-40 s each)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_leaves_an_interrupted_run_that_resumes(tmp_path, sig):
    run = tmp_path / "run"
    args = ["train", "gan", *TINY, "--steps-per-epoch", "2", "--out", run]
    process = subprocess.Popen(
        [*ZOO, *map(str, args), "--epochs", "1000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 240
        # the backup is an epoch's last write (its metadata after its state): wait for it
        while not (RunFolder(run).backup_dir / "training_metadata.json").exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no epoch finished in 240 s"
            time.sleep(0.05)
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    config = json.loads((run / "config.json").read_text())
    done = config["epochs_done"]
    assert config["status"] == "interrupted" and 1 <= done < 1000
    assert f"interrupted after {done} of 1000 epoch(s)" in stderr
    assert not (run / "model.keras").exists()
    if sig == signal.SIGTERM:
        return
    again = run_zoo(*args, "--epochs", done + 1)
    assert again.returncode == 0, again.stderr
    assert f"zoo: resuming {run} from epoch {done + 1} of {done + 1} (it was interrupted" in (
        again.stdout
    )
    config = json.loads((run / "config.json").read_text())
    assert config["status"] == "finished" and config["resumed_from_epoch"] == done
    rows = (run / "history.csv").read_text().strip().splitlines()
    assert [int(row.split(",")[0]) for row in rows[1:]] == list(range(done + 1))


PRETRAINED = Path(__file__).resolve().parents[1] / "saved_models"


@pytest.mark.parametrize("command", ["eval", "plot", "export"])
def test_commands_on_a_run_without_model_or_export_say_what_is_missing(command, tmp_path):
    """A finished run with neither model.keras nor export/ (the committed pretrained runs ship
    an export, which eval/plot/export use: tests/test_pretrained.py)."""
    import shutil

    folder = tmp_path / "cgan-mnist5k"
    shutil.copytree(PRETRAINED / "cgan-mnist5k", folder,
                    ignore=shutil.ignore_patterns("export", "plots"))
    before = sorted(p.name for p in folder.rglob("*"))
    result = run_zoo(command, folder, timeout=120)
    assert_one_line_error(
        result, f"{folder} is a run folder but holds no model.keras (it has config.json, "
        "eval.json, grid.png, history.csv)",
    )
    assert "no such" not in result.stderr
    assert sorted(p.name for p in folder.rglob("*")) == before  # nothing written


def test_commands_on_a_missing_or_foreign_path_name_it(tmp_path):
    assert_one_line_error(run_zoo("eval", tmp_path / "nowhere"), "no run folder at", "nowhere")
    (tmp_path / "notes.txt").write_text("x")
    assert_one_line_error(run_zoo("plot", tmp_path), "is not a run folder", "notes.txt")
    assert_one_line_error(run_zoo("export", tmp_path / "notes.txt"), "not a .keras file")


def test_export_into_a_non_empty_folder_names_the_cli_flag(tmp_path, capsys):
    from zoo import cli

    (tmp_path / "m.keras").write_text("refused before the model is read")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("keep me")
    assert cli.main(["export", str(tmp_path / "m.keras"), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "is not empty; pass --overwrite (overwrite=True in" in error[0]
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


class _Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def test_progress_bars_only_on_a_terminal():
    assert zoo_train.progress_verbosity(1, _Stream(True)) == 1
    assert zoo_train.progress_verbosity("auto", _Stream(True)) == 1
    assert zoo_train.progress_verbosity(1, _Stream(False)) == 2
    assert zoo_train.progress_verbosity("auto", _Stream(False)) == 2
    assert zoo_train.progress_verbosity(0, _Stream(True)) == 0
    assert zoo_train.progress_verbosity(2, _Stream(True)) == 2
    with pytest.raises(ValueError, match="verbose must be 'auto', 0, 1 or 2, got 3"):
        zoo_train.progress_verbosity(3)
