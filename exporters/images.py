"""Image helpers shared by training callbacks, the CLI and the TF-free runtime (numpy + Pillow)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def to_uint8(images) -> np.ndarray:
    """Float images in [-1, 1] -> uint8 in [0, 255] (values outside are clipped)."""
    images = np.asarray(images, dtype=np.float32)
    return np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def make_grid(images, columns: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile uint8 NHWC images into one HxWxC picture, `columns` wide (default: square-ish)."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = to_uint8(images)
    n, height, width, channels = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.full(
        (rows * (height + padding) + padding, columns * (width + padding) + padding, channels),
        255,
        dtype=np.uint8,
    )
    for i, image in enumerate(images):
        top = padding + (i // columns) * (height + padding)
        left = padding + (i % columns) * (width + padding)
        grid[top : top + height, left : left + width] = image
    return grid


def png_bytes(picture: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture).save(buffer, "PNG")
    return buffer.getvalue()


def save_grid(images, path, columns: int | None = None) -> Path:
    """Write images (float [-1, 1] or uint8) as one PNG grid; creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(make_grid(images, columns)))
    return path
