"""One run folder: the layout `zoo train` writes and what every command reads from it.

TF-free (stdlib only): `zoo sample`, `zoo serve` and `exporters.runtime` resolve run folders
without TensorFlow; `zoo train`, `zoo eval`, `zoo plot` and `zoo export` use the same class.

    RUN/model.keras          the trained model (written once training finishes)
    RUN/config.json          settings, model config, versions and "status"
    RUN/history.csv          one row per epoch (Keras CSVLogger)
    RUN/grids/epoch-NNN.png  samples after each epoch
    RUN/logs/                TensorBoard
    RUN/backup/              resumable state while training (Keras BackupAndRestore)
    RUN/export/              exported artifacts + manifest.json (`zoo export`, `train --export`)
    RUN/eval.json            `zoo eval`'s scores
    RUN/plots/               `zoo plot`'s pictures

config.json's "status": "running" while training, "interrupted" (with "epochs_done") after
Ctrl-C or SIGTERM, "finished" once model.keras is written. `zoo train` with the same settings
resumes a run that is not finished; a finished run is never overwritten.

Every write goes through a temporary file in the same folder and `os.replace`, so a crash or a
full disk leaves the old file or the new one, never half of either.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import tempfile
from pathlib import Path

STATUSES = ("running", "interrupted", "finished")
DEFAULT_ROOT = "runs"
FILE_MODE = 0o644


class RunFolderError(ValueError):
    """A path that is not the run folder, or lacks the part of it, that a command needs."""


# ---- atomic writes -------------------------------------------------------------------------
def write_bytes_atomically(path, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file beside it and one rename (mode 0644)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, FILE_MODE)  # mkstemp makes 0600 files: others could not read them
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def save_atomically(path, save) -> Path:
    """`save(temporary)` (e.g. a Keras model's or weights' save) into a temporary file beside
    `path`, then one rename onto it; the temporary ends in path's full name, so Keras sees the
    suffix it needs (.keras, .weights.h5), and is removed when `save` fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        save(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def write_text_atomically(path, text: str) -> Path:
    return write_bytes_atomically(path, text.encode("utf-8"))


def write_json_atomically(path, payload) -> Path:
    """Indented, key-sorted JSON (non-JSON values such as paths written as strings)."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
    return write_text_atomically(path, text)


def grid_name(epoch: int) -> str:
    """The sample grid's file name for an epoch numbered from 1 (SampleGrid writes it)."""
    return f"epoch-{int(epoch):03d}.png"


def safe_name(text: str) -> str:
    """A folder-name-safe form of a dataset name ("idx:/data/x" -> "idx-data-x")."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(text)).strip("-") or "run"


def _as_json(value):
    """Settings as they read back from config.json (tuples become lists)."""
    return json.loads(json.dumps(value, default=str))


# ---- the run folder ------------------------------------------------------------------------
class RunFolder:
    """The files of one training run. Creating one touches nothing on disk."""

    MODEL = "model.keras"
    CONFIG = "config.json"
    HISTORY = "history.csv"
    GRIDS = "grids"
    LOGS = "logs"
    BACKUP = "backup"
    EXPORT = "export"
    EVAL = "eval.json"
    PLOTS = "plots"
    BACKUP_METADATA = "training_metadata.json"  # {"epoch": epochs done}, zoo.train.RunBackup
    MANIFEST = "manifest.json"  # exporters.manifest.MANIFEST_NAME

    def __init__(self, path):
        if isinstance(path, RunFolder):
            path = path.path
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise RunFolderError(f"a run folder must be a path, got {path!r}")
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __eq__(self, other) -> bool:
        return isinstance(other, RunFolder) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    # ---- layout ------------------------------------------------------------------------
    @property
    def model_path(self) -> Path:
        return self.path / self.MODEL

    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def history_path(self) -> Path:
        return self.path / self.HISTORY

    @property
    def grids_dir(self) -> Path:
        return self.path / self.GRIDS

    @property
    def logs_dir(self) -> Path:
        return self.path / self.LOGS

    @property
    def backup_dir(self) -> Path:
        return self.path / self.BACKUP

    @property
    def export_dir(self) -> Path:
        return self.path / self.EXPORT

    @property
    def eval_path(self) -> Path:
        return self.path / self.EVAL

    @property
    def plots_dir(self) -> Path:
        return self.path / self.PLOTS

    def grid_path(self, epoch: int) -> Path:
        """grids/epoch-NNN.png for the epoch numbered from 1."""
        return self.grids_dir / grid_name(epoch)

    def latest_grid(self) -> Path | None:
        grids = sorted(self.grids_dir.glob("epoch-*.png")) if self.grids_dir.is_dir() else []
        return grids[-1] if grids else None

    # ---- what is there -----------------------------------------------------------------
    def exists(self) -> bool:
        return self.path.is_dir()

    def is_run(self) -> bool:
        """A folder that `zoo train` wrote: it holds config.json or model.keras."""
        return self.config_path.is_file() or self.model_path.is_file()

    def has_model(self) -> bool:
        return self.model_path.is_file()

    def has_export(self) -> bool:
        return (self.export_dir / self.MANIFEST).is_file()

    def is_export_only(self) -> bool:
        """A finished run that ships its export/ but no model.keras (the committed pretrained
        runs): `zoo eval`, `zoo plot` and `zoo export --formats triton` work from the export."""
        return (self.is_run() and not self.has_model() and self.has_export()
                and self.status in (None, "finished"))

    def contents(self, limit: int = 8) -> str:
        """What the folder holds, for error messages: "config.json, export/ (a.onnx, ...), ..."."""
        if not self.path.is_dir():
            return "nothing"
        entries = sorted(self.path.iterdir(), key=lambda p: p.name)
        parts = []
        for entry in entries[:limit]:
            if entry.is_dir():
                inside = sorted(p.name for p in entry.iterdir())
                shown = ", ".join(inside[:4]) + (", ..." if len(inside) > 4 else "")
                parts.append(f"{entry.name}/ ({shown})" if inside else f"{entry.name}/ (empty)")
            else:
                parts.append(entry.name)
        if len(entries) > limit:
            parts.append(f"{len(entries) - limit} more")
        return ", ".join(parts) if parts else "nothing"

    # ---- config.json and status --------------------------------------------------------
    def read_config(self) -> dict | None:
        """config.json as a dict, None when there is none; a RunFolderError when it is broken."""
        path = self.config_path
        if not path.is_file():
            return None
        try:
            config = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RunFolderError(
                f"{path} is not valid JSON ({error}); is this a genzoo run?"
            ) from None
        if not isinstance(config, dict):
            kind = type(config).__name__
            raise RunFolderError(f"{path} must hold a JSON object, got {kind}")
        status = config.get("status")
        if status is not None and status not in STATUSES:
            raise RunFolderError(
                f"{path} has status {status!r}; expected one of {', '.join(STATUSES)}"
            )
        return config

    def write_config(self, config: dict) -> Path:
        status = config.get("status")
        if status is not None and status not in STATUSES:
            raise RunFolderError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        return write_json_atomically(self.config_path, config)

    @property
    def status(self) -> str | None:
        """"running", "interrupted", "finished", or None (no config.json, or none recorded)."""
        return (self.read_config() or {}).get("status")

    def set_status(self, status: str, **fields) -> dict:
        """Record `status` (and `fields`) in config.json, keeping everything else."""
        if status not in STATUSES:
            raise RunFolderError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        config = self.read_config()
        if config is None:
            raise RunFolderError(f"{self.path} holds no {self.CONFIG} to record status {status!r}")
        config.update(fields, status=status)
        self.write_config(config)
        return config

    def epochs_done(self) -> int:
        """Epochs the backup holds (where a resumed run starts); 0 without a backup."""
        path = self.backup_dir / self.BACKUP_METADATA
        try:
            epoch = json.loads(path.read_text()).get("epoch", 0)
        except (OSError, ValueError, AttributeError):
            return 0
        return epoch if isinstance(epoch, int) and epoch > 0 else 0

    def describe_status(self) -> str:
        """"interrupted after 3 epoch(s)" and the like, for messages."""
        config = self.read_config() or {}
        status = config.get("status") or "unknown"
        if status == "finished":
            return "finished"
        done = config.get("epochs_done", self.epochs_done())
        return f"{status} after {done} epoch(s)"

    # ---- other files -------------------------------------------------------------------
    def write_json(self, name: str, payload) -> Path:
        """RUN/name as JSON, atomically (e.g. eval.json)."""
        return write_json_atomically(self.path / name, payload)

    def write_bytes(self, name: str, data: bytes) -> Path:
        return write_bytes_atomically(self.path / name, data)

    def read_json(self, name: str) -> dict | None:
        path = self.path / name
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RunFolderError(f"{path} is not valid JSON ({error})") from None

    # ---- opening a run that must exist -------------------------------------------------
    @classmethod
    def open(cls, path) -> RunFolder:
        """An existing run folder, or a RunFolderError saying what `path` is instead."""
        run = cls(path)
        where = run.path
        if not where.exists():
            raise RunFolderError(f"no run folder at {str(where)!r} (no such file or folder)")
        if not where.is_dir():
            raise RunFolderError(
                f"{str(where)!r} is a file, not a run folder (a folder holding config.json "
                "and model.keras)"
            )
        if not run.is_run():
            if (where / cls.MANIFEST).is_file():
                raise RunFolderError(
                    f"{where} is an export folder (manifest.json), not a run folder: `zoo sample` "
                    "and `zoo serve` take it, commands that need the Keras model take a run "
                    "folder or a .keras file"
                )
            raise RunFolderError(
                f"{where} is not a run folder: it holds no {cls.CONFIG} or {cls.MODEL} "
                f"(it has {run.contents()})"
            )
        return run

    def require_model(self, needed_for: str = "this command") -> Path:
        """model.keras, or a RunFolderError saying what is missing and what the run has."""
        if self.model_path.is_file():
            return self.model_path
        config = self.read_config() or {}
        status = config.get("status")
        if status in ("running", "interrupted"):
            raise RunFolderError(
                f"{self.path} holds no {self.MODEL} yet: its training is {self.describe_status()}"
                f"; rerun the same `zoo train` command to resume it ({needed_for} needs the "
                "trained Keras model)"
            )
        hint = ""
        if self.has_export():
            hint = (
                f"; its generator is exported in {self.export_dir} (`zoo sample` and `zoo serve` "
                f"take it), but {needed_for} needs the Keras model"
            )
        raise RunFolderError(
            f"{self.path} is a run folder but holds no {self.MODEL} (it has {self.contents()})"
            + hint
        )

    def require_export(self) -> Path:
        """export/ (with its manifest.json), or a RunFolderError saying what is missing."""
        if self.has_export():
            return self.export_dir
        if not self.is_run():
            raise RunFolderError(
                f"{self.path} is neither an export folder (no {self.MANIFEST}) nor a run folder "
                f"(no {self.CONFIG}); it has {self.contents()}"
            )
        if self.export_dir.is_dir():
            missing = f"its {self.EXPORT}/ holds no {self.MANIFEST}"
        else:
            missing = f"it holds no {self.EXPORT}/"
        if self.has_model():
            action = f"run `zoo export {self.path}` first"
        elif (self.status or "finished") != "finished":
            action = f"its training is {self.describe_status()}"
        else:
            action = f"and no {self.MODEL} to export from"
        raise RunFolderError(
            f"{self.path} is a run folder but {missing} ({action}); it has {self.contents()}"
        )

    # ---- starting or resuming a run ----------------------------------------------------
    def check_resumable(self, settings: dict, defaults: dict | None = None) -> bool:
        """True when the folder holds an unfinished run of the same `settings` (resume it),
        False when it is absent or empty (start one); a RunFolderError otherwise.

        `defaults`: values of settings that runs written before a setting existed used.
        """
        existing = self.read_config()
        if existing is None:
            if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
                raise RunFolderError(
                    f"{self.path} exists and is not a genzoo run (no {self.CONFIG}); "
                    "choose another --out"
                )
            return False
        if existing.get("status") == "finished":
            raise RunFolderError(
                f"{self.path} holds a finished run; it is never overwritten: choose another --out"
            )
        defaults = defaults or {}
        settings = _as_json(settings)
        changed = {}
        for key, new in settings.items():
            old = existing.get(key, defaults.get(key))
            if old != new:
                changed[key] = (old, new)
        if changed:
            details = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise RunFolderError(
                f"{self.path} holds an unfinished run with other settings ({details}); "
                "rerun it with the same settings to resume, or choose another --out"
            )
        return True

    @classmethod
    def for_training(
        cls, model: str, dataset: str, settings: dict, root=DEFAULT_ROOT,
        defaults: dict | None = None,
    ) -> tuple[RunFolder, bool]:
        """The default run folder of a training run and whether it resumes one.

        ROOT/MODEL-DATASET, or ROOT/MODEL-DATASET-2, -3, ... when that holds a finished run, a
        run of other settings or other files: the first that is free or holds an unfinished run
        of the same settings (which is resumed). Nothing is ever overwritten.
        """
        base = Path(root) / f"{safe_name(model)}-{safe_name(dataset)}"
        for index in itertools.count(1):
            run = cls(base if index == 1 else base.with_name(f"{base.name}-{index}"))
            try:
                return run, run.check_resumable(settings, defaults)
            except RunFolderError:
                continue
        raise AssertionError("unreachable")  # pragma: no cover
