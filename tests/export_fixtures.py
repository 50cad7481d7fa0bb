"""Shared fixtures for the export, runtime and serve tests: each tiny family exported once.

`shared_exports` gives test_export.py, test_runtime.py and test_serve.py one export per family
per session. Each family also gets one quantized TFLite variant, so between them the
three cover every quantization mode.

Exporting costs seconds per family: the fast tier exports FAST_FAMILIES (every format, fp16 and
int8 TFLite); `families()` marks the tests of the others slow (the full tier adds vae: its
encoder artifacts and dynamic-range quantization).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

IMAGE_SHAPE = (28, 28, 1)
TFLITE_BATCH = 4
FAMILIES = {
    "gan": {"latent_dim": 16, "base_filters": 8},
    "cgan": {"num_classes": 10, "latent_dim": 16, "base_filters": 8},
    "vae": {"latent_dim": 8, "base_filters": 8},
}
QUANTIZE = {"gan": "fp16", "cgan": "int8", "vae": "dynamic"}
FAST_FAMILIES = ("gan", "cgan")


def families(names=None):
    """pytest params of `names` (default: every family), each outside FAST_FAMILIES marked slow."""
    import pytest

    return [
        pytest.param(name, id=name, marks=() if name in FAST_FAMILIES else pytest.mark.slow)
        for name in (sorted(FAMILIES) if names is None else names)
    ]


def build_tiny(family, **overrides):
    import zoo

    return zoo.build(family, image_shape=IMAGE_SHAPE, seed=3, **{**FAMILIES[family], **overrides})


def labels_for(model, n):
    return (np.arange(n) % model.num_classes).tolist() if model.num_classes else None


@dataclasses.dataclass
class Exported:
    family: str
    model: object
    out_dir: Path
    report: dict

    def path(self, name) -> Path:
        return self.out_dir / name

    def artifacts(self, fmt=None, role="generator"):
        return {
            name: entry for name, entry in self.report["artifacts"].items()
            if (fmt is None or entry["format"] == fmt) and entry["role"] == role
        }


class ExportCache:
    def __init__(self, root: Path):
        self.root = root
        self.done = {}

    def __call__(self, family) -> Exported:
        if family not in self.done:
            import exporters

            model = build_tiny(family)
            out_dir = self.root / family
            report = exporters.export(
                model, out_dir, quantize=QUANTIZE[family], tflite_batch_sizes=(1, TFLITE_BATCH)
            )
            self.done[family] = Exported(family, model, out_dir, report)
        return self.done[family]


_SHARED: list[ExportCache] = []


def shared_exports(tmp_path_factory) -> ExportCache:
    """One ExportCache per test session, whichever test module asks first.

    Each module declares its own `exports` fixture calling this (importing a fixture into a
    test module shadows names); the cache itself is shared, so each family is exported once.
    """
    if not _SHARED:
        _SHARED.append(ExportCache(tmp_path_factory.mktemp("exports")))
    return _SHARED[0]
