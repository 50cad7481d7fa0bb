"""`zoo train`: build, fit and save one run folder, resumable after a crash or an interrupt.

The run folder's layout, config.json, status and atomic writes belong to
`exporters.run_folder.RunFolder`. config.json's "status" is "running" while training,
"interrupted" (with "epochs_done") after Ctrl-C or SIGTERM, and "finished" once the final
model.keras is written: rerunning an unfinished run with the same settings resumes it (one line
says from which epoch); a finished run is never overwritten. Without --out a run goes to
runs/MODEL-DATASET, or runs/MODEL-DATASET-2, -3, ... when that folder holds another run.

Several workers (`--strategy multi_worker`, TF_CONFIG set by the cluster or by
tools/launch_local_cluster.py) all run this same function. The chief writes the run folder; the
others write their backups, logs and grids into temporary folders of their own and remove them
at the end. On a restart every worker restores the chief's backup (so the run folder must be on
storage every worker can read), and they check that they resume at the same epoch.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import platform
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import keras
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


class RunBackup(keras.callbacks.BackupAndRestore):
    """Keras BackupAndRestore made safe for run folders and for several workers.

    - restores from `restore_dir` (default: `backup_dir`), on every worker the chief's backup, so
      all resume from the same state; writes to `backup_dir` (a non-chief's own temporary one);
    - writes atomically, weights and then the epoch, each by rename: a crash mid-write leaves a
      whole backup (at worst the epoch it names is one behind the weights, and that epoch runs
      again);
    - with several workers, checks that all restored the same epoch (a worker that cannot read
      the chief's backup would run other epochs and wait forever in a collective);
    - trims `history_csv` to the epochs the backup holds, so epochs that run again are not
      logged twice.

    Like Keras' own, it needs every optimizer built before `fit`; GenerativeModel.compile does.
    """

    WEIGHTS = "latest.weights.h5"
    METADATA = "training_metadata.json"

    def __init__(self, backup_dir, restore_dir=None, history_csv=None):
        super().__init__(str(backup_dir))
        self.restore_dir = Path(restore_dir if restore_dir is not None else backup_dir)
        self.history_csv = None if history_csv is None else Path(history_csv)
        self.restored_epoch = 0

    def on_train_begin(self, logs=None):
        self.restored_epoch = self._restore()
        self._check_workers_agree(self.restored_epoch)
        if self.history_csv is not None:
            trim_history(self.history_csv, self.restored_epoch)

    def _restore(self) -> int:
        weights, metadata = self.restore_dir / self.WEIGHTS, self.restore_dir / self.METADATA
        if not (weights.exists() and metadata.exists()):
            return 0
        self.model.load_weights(str(weights))
        epoch = int(json.loads(metadata.read_text())["epoch"])
        compat.set_initial_epoch(self.model, epoch)  # as Keras' BackupAndRestore: fit starts there
        return epoch

    def _check_workers_agree(self, epoch: int) -> None:
        strategy = self.model.distribute_strategy
        if not distribute.is_multi_worker(strategy):
            return
        values = strategy.experimental_distribute_values_from_function(
            lambda _: tf.constant([epoch], tf.int64)
        )
        epochs = sorted(set(strategy.gather(values, axis=0).numpy().tolist()))
        if len(epochs) > 1:
            raise ValueError(
                f"workers restored different epochs {epochs} from {self.restore_dir}: every "
                "worker must read the chief's backup; put --out on storage all workers share"
            )

    def on_epoch_end(self, epoch, logs=None):
        # Replaces Keras' own (which calls its private _save_model) with an atomic write.
        directory = Path(self.backup_dir)
        save_atomically(
            directory / self.WEIGHTS, lambda p: self.model.save_weights(str(p), overwrite=True)
        )
        write_json_atomically(
            directory / self.METADATA,
            {"epoch": epoch + 1, "batch": 0},
        )


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
    data_seed = MULTI_WORKER_DATA_SEED if seed is None and multi_worker else seed
    train_data = data.load(dataset, split="train", batch_size=batch_size, seed=data_seed)
    model.check_data(train_data)
    if steps_per_epoch is not None:
        train_data = train_data.take(steps_per_epoch)
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
        done = run.epochs_done()
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
                model, train_data, run, work, chief, resuming, {**settings, **details},
                callbacks, fit_verbose,
            )
    finally:
        if not chief:
            shutil.rmtree(work.path, ignore_errors=True)
    if chief and export:
        import exporters

        # Several workers: export the saved file, away from the strategy's distributed variables.
        source = str(run.model_path) if multi_worker else model
        exporters.export(source, run.export_dir, formats=tuple(export), quantize=quantize)
    return run.path


def _fit(model, train_data, run, work, chief, resuming, config, callbacks, verbose):
    """fit with the run folder's callbacks, then save model.keras; config.json on the chief.

    `run` is the run folder, `work` where this process writes (the run folder on the chief).
    """
    done_before = run.epochs_done() if resuming else 0
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
    callbacks = [
        *callbacks,
        RunBackup(
            work.backup_dir,
            restore_dir=run.backup_dir,
            history_csv=work.history_path if resuming else None,
        ),
        HistoryCSV(str(work.history_path), append=resuming),
        keras.callbacks.TensorBoard(str(work.logs_dir)),
        SampleGrid(work.grids_dir, n=n),
    ]
    try:
        work.path.mkdir(parents=True, exist_ok=True)
        if chief:
            run.write_config(config)
        # shuffle=False: the dataset shuffles itself (Keras would warn that it ignores shuffle)
        history = model.fit(
            train_data, epochs=config["epochs"], callbacks=callbacks, verbose=verbose,
            shuffle=False,
        )
    except KeyboardInterrupt:
        if chief:
            done = _mark_interrupted(run, config)
            print(
                f"zoo: {run} interrupted after {done} of {config['epochs']} epoch(s); run the "
                "same command again to resume",
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
    done = run.epochs_done()
    run.write_config({**config, "status": "interrupted", "epochs_done": done,
                      "interrupted": time.time()})
    return done
