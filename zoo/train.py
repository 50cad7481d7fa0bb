"""`zoo train`: build, fit and save one run folder, resumable after a crash.

A run folder holds model.keras, config.json, history.csv, grids/epoch-NNN.png, logs/ (TensorBoard),
backup/ (Keras BackupAndRestore, while training) and, after export, export/.
config.json's "status" is "running" until the final model.keras is written, then "finished":
rerunning a running run resumes it; a finished run is never overwritten.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import keras
import tensorflow as tf

from zoo import data, distribute, registry
from zoo.callbacks import SampleGrid

RUN_FIELDS = ("model", "dataset", "batch_size", "seed", "model_kwargs", "steps_per_epoch")


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
        key: (existing.get(key), settings[key])
        for key in RUN_FIELDS
        if existing.get(key) != settings[key]
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
) -> Path:
    """Train `model_name` on `dataset` and write (or resume) its run folder. Returns the folder.

    `callbacks` are extra Keras callbacks, run before the run folder's own ones.
    """
    model_class = registry.get_model_class(model_name)
    check_positive(epochs, "epochs")
    check_positive(batch_size, "batch_size")
    if steps_per_epoch is not None:
        check_positive(steps_per_epoch, "steps_per_epoch")
    dataset_info = data.info(dataset)
    run_dir = Path(out) if out is not None else default_run_dir(model_name, dataset)
    settings = {
        "model": model_name,
        "dataset": dataset,
        "batch_size": batch_size,
        "seed": seed,
        "model_kwargs": dict(model_kwargs or {}),
        "steps_per_epoch": steps_per_epoch,
    }
    resuming = _check_run_dir(run_dir, settings)

    if seed is not None:
        keras.utils.set_random_seed(seed)
    kwargs = dict(settings["model_kwargs"])
    kwargs.setdefault("image_shape", dataset_info.image_shape)
    if model_class.conditional:
        kwargs.setdefault("num_classes", dataset_info.num_classes)
    if seed is not None:
        kwargs.setdefault("seed", seed)
    tf_strategy = distribute.get_strategy(strategy)
    with tf_strategy.scope():
        model = registry.build(model_name, **kwargs)
        model.compile()
    train_data = data.load(dataset, split="train", batch_size=batch_size, seed=seed)
    model.check_data(train_data)
    if steps_per_epoch is not None:
        train_data = train_data.take(steps_per_epoch)

    run_dir.mkdir(parents=True, exist_ok=True)
    config = {
        **settings,
        "epochs": epochs,
        "strategy": strategy,
        "replicas": tf_strategy.num_replicas_in_sync,
        "family": model.family,
        "image_shape": list(model.image_shape),
        "latent_dim": model.latent_dim,
        "num_classes": model.num_classes,
        "model_config": model.get_config(),
        "versions": _versions(),
        "status": "running",
        "started": (read_run_config(run_dir) or {}).get("started", time.time()),
    }
    write_json_atomically(run_dir / "config.json", config)
    callbacks = [
        *callbacks,
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=resuming),
        keras.callbacks.TensorBoard(str(run_dir / "logs")),
        SampleGrid(run_dir / "grids", n=64 if not model.num_classes else 10 * model.num_classes),
    ]
    history = model.fit(train_data, epochs=epochs, callbacks=callbacks, verbose=verbose)

    temporary = run_dir / "model.tmp.keras"
    model.save(temporary)
    os.replace(temporary, run_dir / "model.keras")
    config.update(
        status="finished",
        finished=time.time(),
        final_metrics={k: float(v[-1]) for k, v in history.history.items() if v},
    )
    write_json_atomically(run_dir / "config.json", config)
    if export:
        import exporters

        exporters.export(model, run_dir / "export", formats=tuple(export), quantize=quantize)
    return run_dir
