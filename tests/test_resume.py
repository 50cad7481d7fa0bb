"""Exact resume: a run killed after an epoch (or within one) and run again ends bit for bit where
the uninterrupted run ends: every model variable (weights, batch-norm statistics, EMA copies,
SeedGenerator states), every optimizer variable and every row of history.csv. On one device,
on 2 replicas (the 2 logical CPUs conftest sets up); 2 worker processes in test_multi_worker.

The kill is an exception raised from a callback at the start of epoch k (the backup of epoch k
is written by then) or after a step within it, which `zoo.train` does not catch, as a crash.
"""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo import train as zoo_train

FAMILIES = {  # tiny models on the 8x8 digits
    "gan": {"latent_dim": 8, "base_filters": 8},
    "cgan": {"latent_dim": 8, "base_filters": 8},
    "vae": {"latent_dim": 8, "base_filters": 8},
    "cddpm": {"base_filters": 8, "channel_multipliers": [1, 2], "sampling_steps": 2,
              "label_dropout": 0.2},
}
# The GAN options that add state or randomness: the EMA generator, DiffAugment draws, R1.
GAN_OPTIONS = {**FAMILIES["gan"], "ema_decay": 0.9, "augment": "color,translation,cutout",
               "r1_weight": 1.0}
EPOCHS = 3


class Killed(Exception):
    """The simulated crash."""


class KillAt(keras.callbacks.Callback):
    """Raise Killed at the start of epoch `epoch` (its predecessor fully written) or, with
    `step`, after that many steps of it (a crash within an epoch)."""

    def __init__(self, epoch: int, step: int | None = None):
        super().__init__()
        self.epoch, self.step, self.current = epoch, step, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch
        if epoch == self.epoch and self.step is None:
            raise Killed(f"killed before epoch {epoch}")

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch + 1 == self.step:
            raise Killed(f"killed after step {self.step} of epoch {self.epoch}")


class KeepModel(keras.callbacks.Callback):
    """Holds the trained model, whose state `train` does not return."""

    def on_train_end(self, logs=None):
        KeepModel.model_ = self.model


def training_state(model) -> list[tuple[str, np.ndarray]]:
    """Every model variable (model.variables: weights, non-trainable ones, SeedGenerator
    states) and every variable of each optimizer, in order."""
    variables = [("model", v) for v in model.variables]
    for role in model.optimizer_roles:
        variables += [(role, v) for v in getattr(model, role).variables]
    return [(f"{owner}: {v.path}", keras.ops.convert_to_numpy(v)) for owner, v in variables]


def assert_same_state(got, expected):
    assert len(got) == len(expected)
    worst = 0.0
    for (name, a), (_, b) in zip(got, expected):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        if a.size:
            worst = max(worst, float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))))
    assert worst == 0.0, f"max |difference| {worst}"
    for (name, a), (_, b) in zip(got, expected):
        np.testing.assert_array_equal(a, b, err_msg=name)


def settings(family, out, **overrides):
    return {"dataset": "digits", "epochs": EPOCHS, "batch_size": 100, "seed": 3,
            "steps_per_epoch": 4, "verbose": 0, "out": out,
            "model_kwargs": FAMILIES[family], **overrides}


def train_through(family, out, kill=None, **overrides):
    """Train to the end, first killed by `kill` (then run again) when given; returns the state
    and history.csv."""
    if kill is not None:
        with pytest.raises(Killed):
            zoo_train.train(family, **settings(family, out, **overrides), callbacks=[kill])
        assert json.loads((out / "config.json").read_text())["status"] == "running"
    zoo_train.train(family, **settings(family, out, **overrides), callbacks=[KeepModel()])
    return training_state(KeepModel.model_), (out / "history.csv").read_text()


def check_resume_is_exact(family, tmp_path, kill, **overrides):
    expected, expected_history = train_through(family, tmp_path / "whole", **overrides)
    got, history = train_through(family, tmp_path / "resumed", kill, **overrides)
    assert history == expected_history
    assert len(history.strip().splitlines()) == EPOCHS + 1
    assert_same_state(got, expected)


# ---- one device ------------------------------------------------------------------------------
def test_a_gan_killed_after_an_epoch_resumes_bit_for_bit(tmp_path):
    check_resume_is_exact("gan", tmp_path, KillAt(2))


@pytest.mark.slow  # ~10 s each, cddpm ~50 s
@pytest.mark.parametrize("family", ["cgan", "vae", "cddpm"])
def test_every_family_killed_after_an_epoch_resumes_bit_for_bit(family, tmp_path):
    check_resume_is_exact(family, tmp_path, KillAt(1))


@pytest.mark.slow  # ~10 s
def test_a_gan_with_ema_and_augmentation_resumes_bit_for_bit(tmp_path):
    check_resume_is_exact("gan", tmp_path, KillAt(2), model_kwargs=GAN_OPTIONS)


def test_a_kill_within_an_epoch_resumes_from_its_start_bit_for_bit(tmp_path):
    """The backup is written at epoch ends: epoch 1's first steps run again, on the same data."""
    check_resume_is_exact("gan", tmp_path, KillAt(1, step=2))


@pytest.mark.slow  # ~10 s (three runs of a tiny GAN)
def test_a_kill_right_after_the_backup_loses_no_history_row(tmp_path, monkeypatch):
    """The backup is the epoch's last write: once it names epoch k, history.csv has row k - 1."""
    written = zoo_train.RunBackup.on_epoch_end

    def then_killed(self, epoch, logs=None):
        written(self, epoch, logs)
        if epoch == 0:
            raise Killed("killed after the backup of epoch 1")

    expected, expected_history = train_through("gan", tmp_path / "whole")
    monkeypatch.setattr(zoo_train.RunBackup, "on_epoch_end", then_killed)
    with pytest.raises(Killed):
        zoo_train.train("gan", **settings("gan", tmp_path / "resumed"))
    monkeypatch.undo()
    got, history = train_through("gan", tmp_path / "resumed")
    assert history == expected_history
    assert_same_state(got, expected)


class KillAtTheEnd(keras.callbacks.Callback):
    def on_train_end(self, logs=None):  # before the backup is removed and model.keras written
        raise Killed("killed after the last epoch")


@pytest.mark.slow  # ~10 s (three runs of a tiny GAN)
def test_a_run_killed_after_its_last_epoch_saves_that_state_when_rerun(tmp_path):
    """The backup holds all epochs: the rerun trains nothing and saves the backed-up state."""
    check_resume_is_exact("gan", tmp_path, KillAtTheEnd())


def test_a_backup_from_before_exact_resume_still_resumes(tmp_path, monkeypatch, capfd):
    """Older runs' backups hold Keras weights (latest.weights.h5) and the epoch only."""

    def old_backup(self, epoch, logs=None):
        backup = tmp_path / "run" / "backup"
        backup.mkdir(exist_ok=True)
        self.model.save_weights(str(backup / self.WEIGHTS))
        (backup / self.METADATA).write_text(json.dumps({"epoch": epoch + 1}))

    monkeypatch.setattr(zoo_train.RunBackup, "on_epoch_end", old_backup)
    with pytest.raises(Killed):
        zoo_train.train("gan", **settings("gan", tmp_path / "run"), callbacks=[KillAt(2)])
    monkeypatch.undo()
    epochs_run = []
    recorder = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: epochs_run.append(e))
    zoo_train.train("gan", **settings("gan", tmp_path / "run"), callbacks=[recorder])
    assert epochs_run == [2]
    assert "predates exact resume: weights and optimizers restored" in capfd.readouterr().err
    rows = (tmp_path / "run" / "history.csv").read_text().strip().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "1", "2"]


@pytest.mark.slow  # ~10 s
def test_mixed_float16_resumes_bit_for_bit_with_its_loss_scale(tmp_path):
    """LossScaleOptimizer's dynamic scale and step counter are optimizer variables too."""
    check_resume_is_exact("gan", tmp_path, KillAt(2), precision="mixed_float16")


# ---- two replicas ----------------------------------------------------------------------------
@pytest.mark.slow  # ~15-25 s each
@pytest.mark.parametrize("family", ["gan", "cddpm"])
def test_two_replicas_killed_after_an_epoch_resume_bit_for_bit(family, tmp_path):
    assert len(tf.config.list_logical_devices("CPU")) == 2  # conftest's split
    check_resume_is_exact(family, tmp_path, KillAt(1), strategy="mirrored")


# ---- the data order --------------------------------------------------------------------------
def labels_of(dataset):
    return np.concatenate([labels.numpy() for _, labels in dataset])


def test_each_epochs_order_depends_on_the_seed_and_the_epoch_only():
    whole, steps = zoo.data.load_epochs("digits", batch_size=100, seed=5, epochs=4)
    assert steps == 15 and whole.cardinality() == 60
    whole = labels_of(whole).reshape(4, -1)
    tf.random.set_seed(123)  # TensorFlow's global seed plays no part
    resumed, _ = zoo.data.load_epochs("digits", batch_size=100, seed=5, epochs=4, initial_epoch=2)
    np.testing.assert_array_equal(labels_of(resumed).reshape(2, -1), whole[2:])
    assert not np.array_equal(whole[0], whole[1])  # a new order every epoch
    other, _ = zoo.data.load_epochs("digits", batch_size=100, seed=6, epochs=1)
    assert not np.array_equal(labels_of(other), whole[0])
    capped, steps = zoo.data.load_epochs(
        "digits", batch_size=100, seed=5, epochs=2, initial_epoch=1, steps_per_epoch=3
    )
    assert steps == 3
    np.testing.assert_array_equal(labels_of(capped), whole[1, :300])


def test_every_example_once_per_epoch():
    images, labels = zoo.data.load_arrays("digits")
    dataset, steps = zoo.data.shuffled_epochs(
        images, np.arange(len(images)), batch_size=len(images), seed=1, epochs=2
    )
    assert steps == 1
    orders = labels_of(dataset).reshape(2, -1)
    for order in orders:
        np.testing.assert_array_equal(np.sort(order), np.arange(len(images)))
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got -1"):
        zoo.data.shuffled_epochs(images, labels, batch_size=10, seed=-1)
    with pytest.raises(ValueError, match="batch_size=2000 is larger than the 1500"):
        zoo.data.shuffled_epochs(images, labels, batch_size=2000)


# ---- bad input writes nothing ----------------------------------------------------------------
def test_a_resume_with_other_settings_or_another_models_backup_is_a_clear_error(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(Killed):
        zoo_train.train("gan", **settings("gan", run), callbacks=[KillAt(1)])
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}

    def unchanged():
        after = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
        assert after == before

    for change, message in [({"seed": 4}, "seed: 3 -> 4"), ({"batch_size": 50},
                            "batch_size: 100 -> 50")]:
        with pytest.raises(ValueError, match=f"other settings .*{message}"):
            zoo_train.train("gan", **settings("gan", run, **change))
        unchanged()

    # the backup of a model with other variables (a wider generator) under the same settings
    other = tmp_path / "other"
    wide = {**FAMILIES["gan"], "base_filters": 16}
    with pytest.raises(Killed):
        zoo_train.train("gan", **settings("gan", other, model_kwargs=wide), callbacks=[KillAt(1)])
    shutil.copy(other / "backup" / zoo_train.RunBackup.STATE, run / "backup")
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=r"model variable \d+ \(.*\) is float32\[.*\] in the "
                       r"backup but .* is float32\[.*\] in this model"):
        zoo_train.train("gan", **settings("gan", run))
    backup = run / "backup" / zoo_train.RunBackup.STATE
    assert backup.read_bytes() == before[backup.relative_to(run)]  # the backup is kept


def test_an_interrupt_between_the_state_and_metadata_writes_reports_the_state_epochs(tmp_path):
    """The backup writes its state (epoch included) and then its metadata; a Ctrl-C between
    the two must report the epochs a resume will start from (the state's), not the metadata's
    (a clean-clone CI run once saw "interrupted after 2" and then a resume from epoch 3)."""
    from exporters.run_folder import RunFolder
    from zoo import train

    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    run.write_config({"status": "running", "epochs": 10})
    run.backup_dir.mkdir(parents=True)
    np.savez(run.backup_dir / train.RunBackup.STATE, epoch=np.int64(3), data_seed=np.int64(-1))
    (run.backup_dir / train.RunBackup.METADATA).write_text(json.dumps({"epoch": 2}))
    assert train._mark_interrupted(run, run.read_config()) == 3
    assert run.read_config()["epochs_done"] == 3 == train.RunBackup.read(run.backup_dir).epoch
