"""Callbacks users can pass to their own `fit`."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from exporters.images import save_grid


class SampleGrid(keras.callbacks.Callback):
    """Write a PNG grid of samples at the end of each `every`-th epoch: DIR/epoch-NNN.png.

    The same latents (from `seed`) every epoch, so the grids show how training moves them.
    Conditional models get labels cycling through the classes, one column per class.
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
        columns = None
        labels = None
        if model.num_classes:
            columns = model.num_classes
            labels = np.arange(self.n) % model.num_classes
        images = model.sample(self.n, labels=labels, seed=self.seed)
        self.last_path = save_grid(images, self.directory / f"epoch-{epoch + 1:03d}.png", columns)
