"""`zoo train`: build, fit and save one run folder, resumable after a crash.

A run folder holds model.keras, config.json, history.csv, grids/epoch-NNN.png, logs/ (TensorBoard),
backup/ (Keras BackupAndRestore, while training) and, after export, export/.
config.json's "status" is "running" until the final model.keras is written, then "finished":
rerunning a running run resumes it; a finished run is never overwritten.

Several workers (`--strategy multi_worker`, TF_CONFIG set by the cluster or by
tools/launch_local_cluster.py) all run this same function. The chief writes the run folder; the
others write their backups, logs and grids into temporary folders of their own and remove them
at the end. On a restart every worker restores the chief's backup (so the run folder must be on
storage every worker can read), and they check that they resume at the same epoch.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path

import keras
import tensorflow as tf

from exporters import compat
from zoo import data, distribute, registry
from zoo.callbacks import SampleGrid

RUN_FIELDS = (
    "model", "dataset", "batch_size", "seed", "model_kwargs", "steps_per_epoch", "precision",
)
# What runs written before a field existed used, so that they resume under the same settings.
FIELD_DEFAULTS = {"precision": "float32"}
# Shuffle seed of multi-worker runs without a seed: every worker must shuffle alike, since each
# keeps its own part of every global batch (distribute.shard).
MULTI_WORKER_DATA_SEED = 0
def default_run_dir(model_name: str, dataset: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in dataset).strip("-")
    return Path("saved_models") / f"{model_name}-{safe}"


def check_positive(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return value


def read_run_config(run_dir) -> dict | None:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); is this a genzoo run?") from None


def write_json_atomically(path: Path, payload: dict) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(temporary, path)


def _check_run_dir(run_dir: Path, settings: dict) -> bool:
    """True when `run_dir` holds an unfinished run of the same settings (resume it)."""
    existing = read_run_config(run_dir)
    if existing is None:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise ValueError(
                f"{run_dir} exists and is not a genzoo run (no config.json); choose another --out"
            )
        return False
    if existing.get("status") == "finished":
        raise ValueError(
            f"{run_dir} holds a finished run; it is never overwritten: choose another --out"
        )
    changed = {
        key: (existing.get(key, FIELD_DEFAULTS.get(key)), settings[key])
        for key in RUN_FIELDS
        if existing.get(key, FIELD_DEFAULTS.get(key)) != settings[key]
    }
    if changed:
        details = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise ValueError(
            f"{run_dir} holds an unfinished run with other settings ({details}); "
            "rerun it with the same settings to resume, or choose another --out"
        )
    return True


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
        directory.mkdir(parents=True, exist_ok=True)
        partial = directory / f"partial-{self.WEIGHTS}"
        self.model.save_weights(str(partial), overwrite=True)
        os.replace(partial, directory / self.WEIGHTS)
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
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text("".join(kept))
        os.replace(temporary, path)


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
) -> Path:
    """Train `model_name` on `dataset` and write (or resume) its run folder. Returns the folder.

    `callbacks` are extra Keras callbacks, run before the run folder's own ones. `precision` is
    "float32", "mixed_float16" or "mixed_bfloat16"; `jit_compile` is "auto" (the fastest choice
    known to work on the device: zoo.distribute.choose_jit_compile), "on" or "off".
    """
    model_class = registry.get_model_class(model_name)
    check_positive(epochs, "epochs")
    check_positive(batch_size, "batch_size")
    if steps_per_epoch is not None:
        check_positive(steps_per_epoch, "steps_per_epoch")
    policy = distribute.check_precision(precision)
    distribute.check_jit_setting(jit_compile)
    dataset_info = data.info(dataset)
    run_dir = Path(out) if out is not None else default_run_dir(model_name, dataset)
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
    # Only the chief reads and writes the run folder (another worker would race with its writes).
    resuming = _check_run_dir(run_dir, settings) if chief else False

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
        model = registry.build(model_name, **kwargs)
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

    details = {
        "epochs": epochs,
        "strategy": strategy,
        "replicas": tf_strategy.num_replicas_in_sync,
        "workers": max(1, distribute.cluster_workers()) if multi_worker else 1,
        "xla": {"enabled": model.jit_choice.enabled, "reason": model.jit_choice.reason},
    }
    # The chief writes the run folder; each other worker writes the same files into a temporary
    # folder of its own (saving runs on every worker), removed when it is done.
    work_dir = distribute.worker_dir(run_dir, tf_strategy)
    try:
        _fit(
            model, train_data, run_dir, work_dir, chief, resuming, {**settings, **details},
            callbacks, verbose,
        )
    finally:
        if not chief:
            shutil.rmtree(work_dir, ignore_errors=True)
    if chief and export:
        import exporters

        # Several workers: export the saved file, away from the strategy's distributed variables.
        source = str(run_dir / "model.keras") if multi_worker else model
        exporters.export(source, run_dir / "export", formats=tuple(export), quantize=quantize)
    return run_dir


def _fit(model, train_data, run_dir, work_dir, chief, resuming, config, callbacks, verbose):
    """fit with the run folder's callbacks, then save model.keras; config.json on the chief."""
    config = {
        **config,
        "family": model.family,
        "image_shape": list(model.image_shape),
        "latent_dim": model.latent_dim,
        "num_classes": model.num_classes,
        "model_config": model.get_config(),
        "versions": _versions(),
        "status": "running",
        "started": (read_run_config(work_dir) or {}).get("started", time.time()),
    }
    work_dir.mkdir(parents=True, exist_ok=True)
    if chief:
        write_json_atomically(run_dir / "config.json", config)
    callbacks = [
        *callbacks,
        RunBackup(
            work_dir / "backup",
            restore_dir=run_dir / "backup",
            history_csv=work_dir / "history.csv" if resuming else None,
        ),
        keras.callbacks.CSVLogger(str(work_dir / "history.csv"), append=resuming),
        keras.callbacks.TensorBoard(str(work_dir / "logs")),
        SampleGrid(work_dir / "grids", n=64 if not model.num_classes else 10 * model.num_classes),
    ]
    # shuffle=False: the dataset shuffles itself (Keras would warn that it ignores shuffle=True)
    history = model.fit(
        train_data, epochs=config["epochs"], callbacks=callbacks, verbose=verbose, shuffle=False
    )

    temporary = work_dir / "model.tmp.keras"
    model.save(temporary)
    os.replace(temporary, work_dir / "model.keras")
    if chief:
        config.update(
            status="finished",
            finished=time.time(),
            final_metrics={k: float(v[-1]) for k, v in history.history.items() if v},
        )
        write_json_atomically(run_dir / "config.json", config)
    return history
