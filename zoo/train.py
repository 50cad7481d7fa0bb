"""`zoo train`: build, fit and save one run folder, resumable after a crash or an interrupt.

The run folder's layout, config.json, status and atomic writes belong to
`exporters.run_folder.RunFolder`. config.json's "status" is "running" while training,
"interrupted" (with "epochs_done") after Ctrl-C or SIGTERM, and "finished" once the final
model.keras is written: rerunning an unfinished run with the same settings resumes it (one line
says from which epoch; other settings are an error naming each value and the run's); a finished
run is never overwritten. Resuming is exact: the backup (RunBackup, written at each epoch's end)
holds every variable training touches and the data order is a pure function of (seed, epoch)
(data.load_epochs), so a run resumed at an epoch boundary ends bit for bit like an uninterrupted
one. A run stopped within an epoch resumes from the start of that epoch, which runs again. Without --out a run goes to
runs/MODEL-DATASET, or runs/MODEL-DATASET-2, -3, ... when that folder holds another run.

Several workers (`--strategy multi_worker`, TF_CONFIG set by the cluster or by
tools/launch_local_cluster.py) all run this same function. The chief writes the run folder; the
others write their backups, logs and grids into temporary folders of their own and remove them
at the end. On a restart every worker restores the chief's backup (so the run folder must be on
storage every worker can read), and they check that they resume at the same epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import os
import platform
import secrets
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from exporters import compat
from exporters.run_folder import (
    DEFAULT_ROOT,
    RunFolder,
    save_atomically,
    write_json_atomically,
    write_text_atomically,
)
from zoo import data, distribute, registry
from zoo.callbacks import HistoryCSV, SampleGrid

# What runs written before a field existed used, so that they resume under the same settings.
FIELD_DEFAULTS = {"precision": "float32"}
# Shuffle seed of multi-worker runs without a seed: every worker must shuffle alike, since each
# keeps its own part of every global batch (distribute.shard).
MULTI_WORKER_DATA_SEED = 0
# What a collective raises when another worker dies mid-step (connection reset): the job
# stops like an interrupt. A worker that is gone before a collective starts makes it wait
# instead, until the launcher's SIGTERM (an interrupt too).
LOST_WORKER_ERRORS = (tf.errors.UnavailableError, tf.errors.AbortedError)
# Keras layer arguments every family also accepts (they reach keras.Model through **kwargs).
KERAS_MODEL_ARGUMENTS = ("name", "dtype", "trainable")


class Terminated(KeyboardInterrupt):
    """SIGTERM during training: handled like Ctrl-C (status "interrupted", resumable)."""


def check_positive(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return value


def model_arguments(model_class) -> list[str]:
    """The constructor arguments a family takes: its own and those it forwards by keyword."""
    names = []
    for cls in model_class.__mro__:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        if cls.__module__.startswith("keras"):
            break
        parameters = inspect.signature(init).parameters.values()
        names += [
            p.name for p in parameters
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            and p.name not in names
        ]
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return names


def check_model_kwargs(model_name: str, model_class, model_kwargs: dict) -> None:
    """Unknown constructor arguments are a ValueError that lists the family's valid ones."""
    valid = model_arguments(model_class)
    unknown = sorted(set(model_kwargs) - set(valid) - set(KERAS_MODEL_ARGUMENTS))
    if unknown:
        raise ValueError(
            f"unknown argument(s) {', '.join(unknown)} for model {model_name!r}; "
            f"valid: {', '.join(valid)}"
        )


def progress_verbosity(verbose, stream=None) -> int:
    """Keras' fit verbosity: "auto" and 1 give progress bars on a terminal and one line per
    epoch (2) elsewhere, so redirected logs hold no progress-bar escape codes; 0 and 2 stay."""
    if verbose in (0, 2):
        return verbose
    if verbose not in ("auto", None, 1):
        raise ValueError(f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}")
    stream = sys.stdout if stream is None else stream
    try:
        return 1 if stream.isatty() else 2
    except (AttributeError, ValueError):
        return 2


@contextlib.contextmanager
def sigterm_as_interrupt(on_signal=None):
    """Within the block, SIGTERM raises `Terminated` (a KeyboardInterrupt) like Ctrl-C does.

    Python runs signal handlers in the main thread between bytecodes, so a process blocked in
    a TensorFlow op (a collective waiting for a dead worker) would never get there before a
    SIGKILL. `on_signal()` therefore also runs at once, from a watcher thread fed by
    `signal.set_wakeup_fd`, on SIGTERM or SIGINT: what must be recorded is recorded even then.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def handler(signum, frame):
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    watcher = _SignalWatcher(on_signal) if on_signal is not None else None
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if watcher is not None:
            watcher.close()


class _SignalWatcher:
    """Calls `callback()` from a thread when SIGTERM or SIGINT arrives (via the wakeup fd)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, callback):
        self.callback = callback
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)
        self.previous_fd = signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        self.thread = threading.Thread(target=self._watch, name="zoo-signal-watcher", daemon=True)
        self.thread.start()

    def _watch(self):
        called = False
        while True:
            try:
                data = os.read(self.read_fd, 64)
            except OSError:
                return
            if not data:
                return  # closed
            if not called and any(number in self.SIGNALS for number in data):
                called = True
                # a failure here is left to the main thread, which records the interrupt again
                with contextlib.suppress(Exception):
                    self.callback()

    def close(self):
        signal.set_wakeup_fd(self.previous_fd)
        os.close(self.write_fd)  # the watcher reads end-of-file and returns
        self.thread.join(timeout=5)
        os.close(self.read_fd)


def _versions() -> dict:
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


@dataclasses.dataclass(frozen=True)
class Backup:
    """What a run's backup holds: the epochs done, the data seed, and the training state (or,
    from runs written before the state file existed, only Keras weights)."""

    directory: Path
    epoch: int
    data_seed: int | None = None
    state: dict | None = None  # "<group>/<index>" -> array, "<group>.paths" -> names
    weights: Path | None = None  # a Keras weights file (older runs): not an exact resume


def training_variables(model) -> dict[str, list]:
    """Every variable training reads or changes, by owner: "model" (model.variables: trainable
    and non-trainable weights of every network, EMA copies, SeedGenerator states) and each
    optimizer role (iterations, moments, loss-scale state). Metrics are left out: fit resets
    them at every epoch's start."""
    roles = getattr(model, "optimizer_roles", {"optimizer": None})
    groups = {"model": list(model.variables)}
    for role in roles:
        groups[role] = list(getattr(model, role).variables)
    return groups


def capture_state(model) -> dict:
    """The values of `training_variables(model)` as numpy arrays, in order, with their paths."""
    state = {}
    for group, variables in training_variables(model).items():
        state[f"{group}.paths"] = np.array([v.path for v in variables], dtype=str)
        for index, variable in enumerate(variables):
            state[f"{group}/{index:05d}"] = np.asarray(keras.ops.convert_to_numpy(variable))
    return state


def restore_state(model, state: dict, source) -> None:
    """Assign `state` (from capture_state) to the model's variables; a ValueError naming the
    first one that does not fit, before any is changed, when it is another model's state."""
    groups = training_variables(model)
    saved_groups = sorted(key[: -len(".paths")] for key in state if key.endswith(".paths"))
    if saved_groups != sorted(groups):
        raise ValueError(
            f"{source} holds the state of {', '.join(saved_groups)} but this model trains "
            f"{', '.join(sorted(groups))}: it is another model's backup"
        )
    pairs = []
    for group, variables in groups.items():
        paths = state[f"{group}.paths"]
        if len(paths) != len(variables):
            raise ValueError(
                f"{source} holds {len(paths)} {group} variables but this model has "
                f"{len(variables)}: it is another model's (or another version's) backup"
            )
        for index, (variable, path) in enumerate(zip(variables, paths)):
            value = state[f"{group}/{index:05d}"]
            if value.shape != tuple(variable.shape) or value.dtype != np.dtype(variable.dtype):
                raise ValueError(
                    f"{source}: {group} variable {index} ({path}) is {value.dtype}"
                    f"{list(value.shape)} in the backup but {variable.path} is "
                    f"{variable.dtype}{list(variable.shape)} in this model"
                )
            pairs.append((variable, value))
    for variable, value in pairs:
        variable.assign(value)


class RunBackup(keras.callbacks.BackupAndRestore):
    """Keras BackupAndRestore made exact, and safe for run folders and for several workers.

    - saves at each epoch's end, in one file, every variable training touches
      (`training_variables`: all model variables including SeedGenerator states and EMA
      copies, every optimizer's variables), the epochs done and the data seed; with
      `load_epochs`' order a pure function of (seed, epoch), a run resumed from it ends bit for
      bit where the uninterrupted run ends;
    - restores `backup` (read by `read` before the data was built for its epoch), on every
      worker the chief's, so all resume from the same state; writes to `backup_dir` (a
      non-chief's own temporary one);
    - writes atomically, the state (epoch included) and then the metadata, each by rename;
    - with several workers, checks that all restored the same epoch and data seed (a worker
      that cannot read the chief's backup would run other epochs and wait forever);
    - goes after the callbacks that write an epoch's outputs (history.csv, grids), so that a
      crash in between runs the epoch again instead of leaving its row out (train trims the
      rows of epochs past the backup before fit).

    Like Keras' own, it needs every optimizer built before `fit`; GenerativeModel.compile does.
    """

    STATE = "latest.state.npz"
    WEIGHTS = "latest.weights.h5"  # what backups written before STATE held (restored, inexactly)
    METADATA = "training_metadata.json"

    def __init__(self, backup_dir, backup=None, data_seed=None):
        super().__init__(str(backup_dir))
        self.backup = backup
        self.data_seed = data_seed
        self.restored_epoch = 0

    @classmethod
    def read(cls, directory) -> Backup | None:
        """The backup in `directory`, or None when there is none."""
        directory = Path(directory)
        state_path = directory / cls.STATE
        if state_path.exists():
            with np.load(state_path, allow_pickle=False) as saved:
                state = {key: saved[key] for key in saved.files}
            seed = int(state.pop("data_seed"))
            return Backup(directory, int(state.pop("epoch")), None if seed < 0 else seed, state)
        weights, metadata = directory / cls.WEIGHTS, directory / cls.METADATA
        if weights.exists() and metadata.exists():
            return Backup(directory, int(json.loads(metadata.read_text())["epoch"]), None,
                          weights=weights)
        return None

    @classmethod
    def epochs_in(cls, directory) -> int:
        """The epochs the backup in `directory` holds, as a resume reads them (the state file's,
        which is written before the metadata: an interrupt between the two leaves the metadata
        one epoch behind); 0 without a backup."""
        state_path = Path(directory) / cls.STATE
        if state_path.exists():
            with np.load(state_path, allow_pickle=False) as saved:
                return int(saved["epoch"])
        backup = cls.read(directory)
        return backup.epoch if backup is not None else 0

    def on_train_begin(self, logs=None):
        self.restored_epoch = self._restore()
        self._check_workers_agree(self.restored_epoch)

    def _restore(self) -> int:
        backup = self.backup
        if backup is None:
            return 0
        if backup.state is not None:
            restore_state(self.model, backup.state, backup.directory / self.STATE)
        else:
            self.model.load_weights(str(backup.weights))
            print(
                f"zoo: {backup.directory} predates exact resume: weights and optimizers "
                "restored, random state and data order start afresh",
                file=sys.stderr, flush=True,
            )
        compat.set_initial_epoch(self.model, backup.epoch)  # as BackupAndRestore: fit starts there
        return backup.epoch

    def _check_workers_agree(self, epoch: int) -> None:
        strategy = self.model.distribute_strategy
        if not distribute.is_multi_worker(strategy):
            return
        mine = [epoch, -1 if self.data_seed is None else self.data_seed]
        values = strategy.experimental_distribute_values_from_function(
            lambda _: tf.constant([mine], tf.int64)
        )
        seen = sorted({tuple(row) for row in strategy.gather(values, axis=0).numpy().tolist()})
        if len(seen) > 1:
            raise ValueError(
                f"workers restored different (epoch, data seed) {seen} from "
                f"{None if self.backup is None else self.backup.directory}: every worker must "
                "read the chief's backup; put --out on storage all workers share"
            )

    def on_epoch_end(self, epoch, logs=None):
        # Replaces Keras' own (which calls its private _save_model) with an atomic write.
        directory = Path(self.backup_dir)
        state = capture_state(self.model)
        state["epoch"] = np.int64(epoch + 1)
        state["data_seed"] = np.int64(-1 if self.data_seed is None else self.data_seed)

        def write(path):
            with open(path, "wb") as handle:
                np.savez(handle, **state)

        save_atomically(directory / self.STATE, write)
        (directory / self.WEIGHTS).unlink(missing_ok=True)  # an older run's, now superseded
        write_json_atomically(directory / self.METADATA, {"epoch": epoch + 1, "batch": 0})


def trim_history(path: Path, epochs: int) -> None:
    """Keep history.csv's header and its rows of epochs 0 .. epochs - 1 (CSVLogger's format)."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:] if _epoch_of(line) < epochs]
    if kept != lines:
        write_text_atomically(path, "".join(kept))


def _epoch_of(csv_line: str) -> float:
    first = csv_line.split(",", 1)[0].strip()
    return int(first) if first.isdigit() else float("inf")


def train(
    model_name: str,
    dataset: str = "mnist5k",
    epochs: int = 5,
    batch_size: int = 128,
    strategy: str = "auto",
    out=None,
    seed: int | None = None,
    model_kwargs: dict | None = None,
    steps_per_epoch: int | None = None,
    export: tuple[str, ...] = (),
    quantize: str = "none",
    verbose="auto",
    callbacks=(),
    precision: str = "float32",
    jit_compile="auto",
    runs_root=DEFAULT_ROOT,
) -> Path:
    """Train `model_name` on `dataset` and write (or resume) its run folder. Returns the folder.

    `out`: the run folder; default `runs_root`/MODEL-DATASET, or MODEL-DATASET-2, -3, ... when
    that holds another run (RunFolder.for_training). `callbacks` are extra Keras callbacks, run
    before the run folder's own ones. `verbose`: Keras' fit verbosity; "auto" and 1 show progress
    bars only on a terminal. `precision` is "float32", "mixed_float16" or "mixed_bfloat16";
    `jit_compile` is "auto" (the fastest choice known to work on the device:
    zoo.distribute.choose_jit_compile), "on" or "off".

    Ctrl-C or SIGTERM stop training with config.json's status "interrupted" and the epochs done
    (then the KeyboardInterrupt goes on); the same call again resumes from there.
    """
    model_class = registry.get_model_class(model_name)
    check_positive(epochs, "epochs")
    check_positive(batch_size, "batch_size")
    if steps_per_epoch is not None:
        check_positive(steps_per_epoch, "steps_per_epoch")
    check_model_kwargs(model_name, model_class, dict(model_kwargs or {}))
    policy = distribute.check_precision(precision)
    distribute.check_jit_setting(jit_compile)
    fit_verbose = progress_verbosity(verbose)
    dataset_info = data.info(dataset)
    settings = {
        "model": model_name,
        "dataset": dataset,
        "batch_size": batch_size,
        "seed": seed,
        "model_kwargs": dict(model_kwargs or {}),
        "steps_per_epoch": steps_per_epoch,
        "precision": precision,
    }
    # The strategy first: MultiWorkerMirroredStrategy must exist before TensorFlow runs an op.
    tf_strategy = distribute.get_strategy(strategy)
    chief = distribute.is_chief(tf_strategy)
    multi_worker = distribute.is_multi_worker(tf_strategy)
    # Only the chief writes the run folder (another worker would race with its writes); every
    # worker picks the same default folder, since each restores the chief's backup from it.
    if out is not None:
        run = RunFolder(out)
        resuming = run.check_resumable(settings, FIELD_DEFAULTS) if chief else False
    else:
        run, resuming = RunFolder.for_training(
            model_name, dataset, settings, runs_root, FIELD_DEFAULTS
        )
        resuming = resuming and chief

    if seed is not None:
        keras.utils.set_random_seed(seed)
    kwargs = dict(settings["model_kwargs"])
    kwargs.setdefault("image_shape", dataset_info.image_shape)
    kwargs.setdefault("dtype", policy)
    if model_class.conditional:
        kwargs.setdefault("num_classes", dataset_info.num_classes)
    if seed is not None:
        kwargs.setdefault("seed", seed)
    with tf_strategy.scope():
        try:
            model = registry.build(model_name, **kwargs)
        except TypeError as error:  # e.g. an argument the family fixes for its base class
            raise ValueError(
                f"model {model_name!r} does not take these arguments: {error}"
            ) from None
        model.compile(jit_compile=jit_compile)
    # Every worker reads the chief's backup before building the data: the data starts at the
    # epoch the backup holds, in that epoch's order (data.load_epochs), with the run's data seed.
    backup = RunBackup.read(run.backup_dir)
    start = backup.epoch if backup is not None else 0
    data_seed = backup.data_seed if backup is not None else None
    if data_seed is None:
        data_seed = seed if seed is not None else (
            MULTI_WORKER_DATA_SEED if multi_worker else secrets.randbelow(2**31)
        )
    # An empty range when all epochs are done: fit then trains nothing and the model is saved.
    train_data, steps = data.load_epochs(
        dataset, batch_size=batch_size, seed=data_seed, epochs=max(epochs, start + 1),
        initial_epoch=start, steps_per_epoch=steps_per_epoch,
    )
    model.check_data(train_data)
    train_data = distribute.shard(train_data)
    if verbose:
        kind, index = distribute.task()
        where = f"{kind} {index} of {distribute.cluster_workers()}: " if multi_worker else ""
        print(
            f"zoo: {where}{tf_strategy.num_replicas_in_sync} replica(s), precision {precision}, "
            f"{model.jit_choice}",
            flush=True,
        )
    if resuming:
        done = start
        was = run.describe_status()
        if done >= epochs:
            print(f"zoo: {run}: all {epochs} epochs done ({was}); saving the model", flush=True)
        else:
            print(
                f"zoo: resuming {run} from epoch {done + 1} of {epochs} (it was {was})",
                flush=True,
            )

    details = {
        "epochs": epochs,
        "strategy": strategy,
        "replicas": tf_strategy.num_replicas_in_sync,
        "workers": max(1, distribute.cluster_workers()) if multi_worker else 1,
        "xla": {"enabled": model.jit_choice.enabled, "reason": model.jit_choice.reason},
        "data_seed": data_seed,
    }
    # The chief writes the run folder; each other worker writes the same files into a temporary
    # folder of its own (saving runs on every worker), removed when it is done.
    work = RunFolder(distribute.worker_dir(run.path, tf_strategy))

    def record_interrupt():  # also from the signal watcher thread while fit is blocked
        config = run.read_config() if chief else None
        if config and config.get("status") == "running":
            _mark_interrupted(run, config)

    try:
        with sigterm_as_interrupt(record_interrupt):
            _fit(
                model, (train_data, steps), run, work, chief, resuming, backup,
                {**settings, **details}, callbacks, fit_verbose,
            )
    finally:
        if not chief:
            shutil.rmtree(work.path, ignore_errors=True)
    if chief and export:
        import exporters

        # Several workers: export the saved file, away from the strategy's distributed variables.
        source = str(run.model_path) if multi_worker else model
        # a quantized export is scored against the float32 one on the run's data set
        gate = None
        if quantize != "none":
            from zoo import evaluate

            gate = evaluate.quantization_gate(dataset)
        exporters.export(source, run.export_dir, formats=tuple(export), quantize=quantize,
                         quality_check=gate)
    return run.path


def _fit(model, train_data, run, work, chief, resuming, backup, config, callbacks, verbose):
    """fit with the run folder's callbacks, then save model.keras; config.json on the chief.

    `train_data` is (dataset, steps per epoch) from data.load_epochs; `run` is the run folder,
    `work` where this process writes (the run folder on the chief); `backup` what every
    worker restores (RunBackup.read of the chief's backup; None when the run starts).
    """
    train_data, steps = train_data
    done_before = backup.epoch if resuming else 0
    config = {
        **config,
        "family": model.family,
        "image_shape": list(model.image_shape),
        "latent_dim": model.latent_dim,
        "num_classes": model.num_classes,
        "model_config": model.get_config(),
        "versions": _versions(),
        "status": "running",
        "started": (work.read_config() or {}).get("started", time.time()),
    }
    if resuming:
        config["resumed_from_epoch"] = done_before
    n = 64 if not model.num_classes else 10 * model.num_classes
    # The backup last: an epoch counts as done once its row, logs and grid are written, so a
    # crash in between runs it again rather than leaving its row out of history.csv.
    callbacks = [
        *callbacks,
        HistoryCSV(str(work.history_path), append=resuming),
        keras.callbacks.TensorBoard(str(work.logs_dir)),
        SampleGrid(work.grids_dir, n=n),
        RunBackup(work.backup_dir, backup=backup, data_seed=config["data_seed"]),
    ]
    try:
        work.path.mkdir(parents=True, exist_ok=True)
        if chief:
            run.write_config(config)
        if resuming:  # epochs past the backup run again: their rows go (before HistoryCSV opens)
            trim_history(work.history_path, done_before)
        # shuffle=False: the dataset shuffles itself (Keras would warn that it ignores shuffle)
        history = model.fit(
            train_data, epochs=config["epochs"], steps_per_epoch=steps, callbacks=callbacks,
            verbose=verbose, shuffle=False,
        )
    except (KeyboardInterrupt, *LOST_WORKER_ERRORS) as error:
        if not isinstance(error, KeyboardInterrupt) and config["workers"] < 2:
            raise
        if chief:
            done = _mark_interrupted(run, config)
            lost = "" if isinstance(error, KeyboardInterrupt) else "a worker was lost: "
            print(
                f"zoo: {run} {lost}interrupted after {done} of {config['epochs']} epoch(s); run "
                "the same command again to resume",
                file=sys.stderr, flush=True,
            )
        raise

    save_atomically(work.model_path, model.save)
    if chief:
        config.update(
            status="finished",
            finished=time.time(),
            final_metrics={k: float(v[-1]) for k, v in history.history.items() if v},
        )
        run.write_config(config)
    return history


def _mark_interrupted(run: RunFolder, config: dict) -> int:
    """config.json says "interrupted" with the epochs the backup holds; returns that number."""
    done = RunBackup.epochs_in(run.backup_dir)
    run.write_config({**config, "status": "interrupted", "epochs_done": done,
                      "interrupted": time.time()})
    return done
