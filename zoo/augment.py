"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) for the discriminator's inputs.

GANs on small datasets overfit their discriminator; augmenting BOTH real and generated images
before D (and back-propagating through the augmentation into G) keeps D honest without teaching
G to produce augmented images. Policies: "color", "translation", "cutout", combined with
commas ("translation,cutout"); "" is off.

Each augmentation is split into how many uniform random numbers it needs per image and a
deterministic `apply(images, uniforms)`, so a model can draw the numbers for the GLOBAL batch
(`GenerativeModel.replica_uniform`) and N replicas augment exactly as one device does.
`augment(images, policy, seed)` is the plain pure function of (images, seed).
Images are NHWC floats in [-1, 1]; every op keeps shape and dtype and is differentiable.
"""

from __future__ import annotations

import keras
from keras import ops

TRANSLATION_RATIO = 0.125  # shift by up to 1/8 of the side, zero padding (as in the paper)
CUTOUT_RATIO = 0.5  # erase a square of half the side


def _shift_matrix(size: int, shifts):
    """(batch, size, size) one-hot rows: out[i] = in[i - shift] (zero where that is outside)."""
    rows = ops.arange(size, dtype="int32")
    source = rows[None, :, None] - ops.cast(shifts, "int32")[:, None, None]
    return ops.cast(ops.equal(source, rows[None, None, :]), "float32")


def _integer(u, low: int, high: int):
    """Uniform [0, 1) -> integers in [low, high] (inclusive), each with the same chance."""
    return ops.minimum(ops.floor(u * (high - low + 1)), high - low) + low


def translation(images, u, ratio: float = TRANSLATION_RATIO):
    """Shift each image by whole pixels, up to `ratio` of its height/width, filling with 0."""
    dtype, u = images.dtype, ops.cast(u, "float32")
    height, width = int(images.shape[1]), int(images.shape[2])
    shift_y = int(height * ratio + 0.5)
    shift_x = int(width * ratio + 0.5)
    rows = _shift_matrix(height, _integer(u[:, 0], -shift_y, shift_y))
    cols = _shift_matrix(width, _integer(u[:, 1], -shift_x, shift_x))
    x = ops.cast(images, "float32")
    x = ops.einsum("bik,bkwc->biwc", rows, x)
    x = ops.einsum("bjk,bhkc->bhjc", cols, x)
    return ops.cast(x, dtype)


def cutout(images, u, ratio: float = CUTOUT_RATIO):
    """Zero a square of `ratio` of the side at a random place (it may hang over the edge)."""
    height, width, u = int(images.shape[1]), int(images.shape[2]), ops.cast(u, "float32")
    size_y, size_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    top = _integer(u[:, 0], 0, height - size_y % 2) - size_y // 2
    left = _integer(u[:, 1], 0, width - size_x % 2) - size_x // 2
    ys = ops.cast(ops.arange(height), "float32")[None, :]
    xs = ops.cast(ops.arange(width), "float32")[None, :]
    inside_y = ops.logical_and(ys >= top[:, None], ys < (top + size_y)[:, None])
    inside_x = ops.logical_and(xs >= left[:, None], xs < (left + size_x)[:, None])
    erased = ops.logical_and(inside_y[:, :, None], inside_x[:, None, :])
    keep = ops.cast(ops.logical_not(erased), images.dtype)[..., None]
    return images * keep


def color(images, u):
    """Random brightness (+-0.5), saturation (x0..2) and contrast (x0.5..1.5), per image."""
    dtype, u = images.dtype, ops.cast(u, "float32")
    x = ops.cast(images, "float32")
    per_image = (-1, 1, 1, 1)
    x = x + ops.reshape(u[:, 0] - 0.5, per_image)
    mean = ops.mean(x, axis=3, keepdims=True)
    x = (x - mean) * ops.reshape(u[:, 1] * 2.0, per_image) + mean
    mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
    x = (x - mean) * ops.reshape(u[:, 2] + 0.5, per_image) + mean
    return ops.cast(x, dtype)


# name -> (uniform numbers per image, apply). Applied in the order of the policy string.
AUGMENTATIONS = {
    "color": (3, color),
    "translation": (2, translation),
    "cutout": (2, cutout),
}


def parse_policy(policy: str) -> tuple[str, ...]:
    """"translation,cutout" -> ("translation", "cutout"); "" -> (). Unknown names: ValueError."""
    if not isinstance(policy, str):  # ValueError like every bad constructor value in the zoo
        raise ValueError(  # noqa: TRY004
            f"augment must be a comma-separated string of {sorted(AUGMENTATIONS)} or '' (off), "
            f"got {policy!r}"
        )
    names = tuple(name.strip() for name in policy.split(",") if name.strip())
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown:
        raise ValueError(
            f"augment={policy!r}: unknown augmentation {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(AUGMENTATIONS)} (comma-separated, or '' for none)"
        )
    return names


def random_count(policy: str) -> int:
    """How many uniform random numbers per image `apply(images, policy, ...)` reads."""
    return sum(AUGMENTATIONS[name][0] for name in parse_policy(policy))


def apply(images, policy: str, uniforms):
    """Augment `images` with the numbers `uniforms` (batch, random_count(policy)) in [0, 1)."""
    start = 0
    for name in parse_policy(policy):
        count, function = AUGMENTATIONS[name]
        images = function(images, uniforms[:, start : start + count])
        start += count
    return images


def augment(images, policy: str, seed=None):
    """DiffAugment `images` under `policy` with fresh numbers from `seed` (an int or a
    keras.random.SeedGenerator): the same seed gives the same augmentation."""
    count = random_count(policy)
    if not count:
        return images
    uniforms = keras.random.uniform((ops.shape(images)[0], count), seed=seed, dtype="float32")
    return apply(images, policy, uniforms)
