"""The sampling-input rules every path shares: Keras `model.sample`, the runtime, the CLI, HTTP.

One set of checks (count, seed, labels, steps, numbers) and one latent draw, so the same seed and
labels give the same images everywhere and a bad value gets the same clear error everywhere.
numpy only.
"""

from __future__ import annotations

import numpy as np

MAX_IMAGES = 4096


def check_count(n, max_images: int | None = MAX_IMAGES, what: str = "n") -> int:
    """A positive int (at most `max_images` unless that is None), or a ValueError naming it."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"{what} must be a positive integer, got {n!r}")
    if max_images is not None and n > max_images:
        raise ValueError(f"{what} must be at most {max_images}, got {n!r}")
    return int(n)


def check_seed(seed):
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or null, got {seed!r}")
    return int(seed)


def check_labels(labels, n: int, num_classes: int):
    """int32 labels, one per image, or a ValueError saying what was wrong and what is expected."""
    if num_classes == 0:
        if labels is not None:
            raise ValueError("this model is unconditional (num_classes=0) and takes no labels")
        return None
    if labels is None:
        raise ValueError(
            f"this model is conditional: pass labels, {n} integers in [0, {num_classes})"
        )
    if isinstance(labels, (str, bytes)):
        raise ValueError(f"labels must be integers, got {labels!r}")  # noqa: TRY004
    try:
        array = np.asarray(labels)
    except (ValueError, TypeError):
        raise ValueError(f"labels must be a flat list of integers, got {labels!r}") from None
    if array.ndim != 1 or array.shape[0] != n:
        raise ValueError(f"expected {n} labels (one per image), got shape {array.shape}")
    if array.dtype == bool or not (
        np.issubdtype(array.dtype, np.integer)
        or (np.issubdtype(array.dtype, np.floating) and np.all(array == np.round(array)))
    ):
        raise ValueError(f"labels must be integers, got {short_repr(labels)}")
    bad = array[(array < 0) | (array >= num_classes)]
    if bad.size:
        raise ValueError(
            f"labels must be in [0, {num_classes}), got {bad.tolist()[:5]} out of range"
        )
    return array.astype(np.int32)


def expand_labels(labels, n: int):
    """One label for every image (`--labels 3`, `?labels=3`) -> n copies; anything else as is."""
    if isinstance(labels, (int, np.integer)) and not isinstance(labels, bool):
        return [int(labels)] * n
    if isinstance(labels, (list, tuple)) and len(labels) == 1 and n > 1:
        return list(labels) * n
    return labels


def parse_labels(text: str) -> list[int]:
    """"3" or "0,1,2" (the CLI's --labels, the PNG endpoint's ?labels=) -> a list of ints."""
    try:
        return [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise ValueError(f"labels must be comma-separated integers, got {text!r}") from None


def short_repr(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def latents(n: int, latent_dim: int, seed=None) -> np.ndarray:
    """Standard-normal latents (n, latent_dim) float32: the one draw `model.sample` and the runtime
    both make, so the same seed gives the same images."""
    return np.random.default_rng(seed).standard_normal((n, latent_dim), dtype=np.float32)


def check_steps(steps, timesteps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps <= 0:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if steps > timesteps:
        raise ValueError(
            f"steps must be at most {timesteps} (the schedule's timesteps), got {steps!r}"
        )
    return int(steps)


def check_number(value, what: str, low=None, high=None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or (
        not np.isfinite(value)
    ):
        raise ValueError(f"{what} must be a finite number, got {short_repr(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{what} must be in [{low}, {high}], got {value!r}")
    return float(value)


