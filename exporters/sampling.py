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


def check_seed(seed, what: str = "seed", required: bool = False):
    """None (a fresh random draw) unless `required`, or a non-negative int; else a ValueError."""
    if seed is None and not required:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        allowed = "a non-negative integer" if required else "a non-negative integer or null"
        raise ValueError(f"{what} must be {allowed}, got {short_repr(seed)}")
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


def slerp(z0, z1, t) -> np.ndarray:
    """Spherical interpolation between latents z0 and z1 at fractions t (shape (len(t), d)).

    Gaussian latents live near a sphere; a straight line between two of them passes through
    atypically short vectors, slerp keeps the norm typical. Near-parallel ends fall back to lerp.
    Computed in float64, so t = 0 and t = 1 give z0 and z1 exactly (as float32).
    """
    z0, z1 = np.asarray(z0, np.float64), np.asarray(z1, np.float64)
    t = np.asarray(t, np.float64)[:, None]
    cosine = np.dot(z0, z1) / (np.linalg.norm(z0) * np.linalg.norm(z1) + 1e-12)
    omega = np.arccos(np.clip(cosine, -1.0, 1.0))
    if np.sin(omega) < 1e-6:
        return ((1.0 - t) * z0 + t * z1).astype(np.float32)
    return ((np.sin((1.0 - t) * omega) * z0 + np.sin(t * omega) * z1) / np.sin(omega)).astype(
        np.float32
    )


def check_interpolation_count(n, max_images: int | None = MAX_IMAGES) -> int:
    """At least 2 images (the two ends), at most max_images."""
    n = check_count(n, max_images)
    if n < 2:
        raise ValueError(f"n must be at least 2 (the two ends of the path), got {n!r}")
    return n


def check_label(label, num_classes: int):
    """One class for a whole interpolation: an int in [0, num_classes), None if unconditional."""
    if num_classes == 0:
        if label is not None:
            raise ValueError(
                f"this model is unconditional (num_classes=0) and takes no label, got "
                f"{short_repr(label)}"
            )
        return None
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not (
        0 <= label < num_classes
    ):
        raise ValueError(
            f"label must be an integer in [0, {num_classes}) (this model is conditional), "
            f"got {short_repr(label)}"
        )
    return int(label)


def interpolation_latents(seed_a, seed_b, n: int, latent_dim: int) -> np.ndarray:
    """(n, latent_dim) float32: slerp from the latent `latents(1, latent_dim, seed_a)` to
    seed_b's, so the path's ends are exactly what generate(1, seed=seed_a / seed_b) draws."""
    seed_a = check_seed(seed_a, "seed_a", required=True)
    seed_b = check_seed(seed_b, "seed_b", required=True)
    ends = [latents(1, latent_dim, seed)[0] for seed in (seed_a, seed_b)]
    return slerp(*ends, np.linspace(0.0, 1.0, n))


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


