"""Callbacks users can pass to their own `fit`."""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np

from exporters.images import save_grid
from exporters.run_folder import grid_name


def grid_columns(n: int, num_classes: int = 0) -> int:
    """One column per class for conditional models, else a square-ish grid (64 -> 8 x 8)."""
    return int(num_classes) if num_classes else max(1, math.ceil(math.sqrt(int(n))))


class SampleGrid(keras.callbacks.Callback):
    """Write a PNG grid of samples at the end of each `every`-th epoch: DIR/epoch-NNN.png.

    The same latents (from `seed`) every epoch, so the grids show how training moves them.
    Conditional models get labels cycling through the classes, one column per class;
    unconditional ones a square-ish grid (64 samples: 8 columns).
    """

    def __init__(self, directory, n: int = 64, seed: int = 0, every: int = 1):
        super().__init__()
        self.directory = Path(directory)
        self.n = int(n)
        self.seed = seed
        self.every = int(every)
        self.last_path = None

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        model = self.model
        labels = np.arange(self.n) % model.num_classes if model.num_classes else None
        images = model.sample(self.n, labels=labels, seed=self.seed)
        self.last_path = save_grid(
            images,
            self.directory / grid_name(epoch + 1),
            grid_columns(self.n, model.num_classes),
        )


class HistoryCSV(keras.callbacks.CSVLogger):
    """Keras' CSVLogger without its empty `val_*` columns when there is no validation data.

    CSVLogger adds a `val_<name>` column for every metric when the first epoch's logs hold no
    validation metric, and fills them with NA. Here the columns are the logged ones; when
    appending to a file that has a header already, that header's columns are kept.
    """

    def on_epoch_end(self, epoch, logs=None):
        if self.keys is None:
            self.keys = self._header_keys() or sorted((logs or {}).keys())
        super().on_epoch_end(epoch, logs)

    def _header_keys(self) -> list[str] | None:
        if not self.append:
            return None
        path = Path(self.filename)
        if not path.is_file():
            return None
        with open(path, newline="") as handle:
            header = handle.readline().strip()
        columns = [c for c in header.split(self.sep) if c] if header else []
        return [c for c in columns if c != "epoch"] or None
