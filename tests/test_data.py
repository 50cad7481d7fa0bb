"""zoo.data: bundled real digits, IDX folders, arrays, TFDS (mocked), and shape errors."""

import gzip
import struct

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import zoo


def test_bundled_mnist5k_is_real_digits_in_model_range():
    info = zoo.data.info("mnist5k")
    assert info.image_shape == (28, 28, 1) and info.num_classes == 10
    assert info.splits == {"train": 4000, "test": 1000} and info.size == 4000
    images, labels = next(iter(zoo.data.load("mnist5k", batch_size=32, seed=0)))
    assert images.shape == (32, 28, 28, 1) and images.dtype == tf.float32
    assert labels.dtype == tf.int32
    assert -1.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1.0
    train_x, train_y = zoo.data.load_arrays("mnist5k", "train")
    test_x, _ = zoo.data.load_arrays("mnist5k", "test")
    assert sorted(set(train_y.tolist())) == list(range(10))
    # real handwritten digits: mostly background (-1) with bright strokes
    assert 0.1 < np.mean(train_x > 0) < 0.3
    # the held-apart test split shares no image with train
    train_rows = {row.tobytes() for row in train_x[:500]}
    assert not any(row.tobytes() in train_rows for row in test_x)


def test_digits_and_batches():
    info = zoo.data.info("digits")
    assert info.image_shape == (8, 8, 1) and info.splits["train"] == 1500
    batches = list(zoo.data.load("digits", batch_size=100))
    assert len(batches) == 15 and all(b[0].shape[0] == 100 for b in batches)
    test_batches = list(zoo.data.load("digits", split="test", batch_size=100))
    assert sum(int(b[0].shape[0]) for b in test_batches) == 297  # nothing dropped


def test_shuffling_is_seeded():
    first = next(iter(zoo.data.load("digits", batch_size=16, seed=3)))[1].numpy()
    again = next(iter(zoo.data.load("digits", batch_size=16, seed=3)))[1].numpy()
    np.testing.assert_array_equal(first, again)


def _write_idx(path, array, compress):
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    payload = header + array.tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


@pytest.mark.parametrize("compress", [True, False])
def test_idx_folder(tmp_path, compress):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 10)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte",
                   rng.integers(0, 256, (n, 12, 12), dtype=np.uint8), compress)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte",
                   rng.integers(0, 3, (n,), dtype=np.uint8), compress)
    info = zoo.data.info(f"idx:{tmp_path}")
    assert info.image_shape == (12, 12, 1) and info.splits == {"train": 40, "test": 10}
    images, labels = next(iter(zoo.data.load(f"idx:{tmp_path}", batch_size=8)))
    assert images.shape == (8, 12, 12, 1) and labels.dtype == tf.int32


def test_truncated_idx_file_is_a_clear_error(tmp_path):
    path = _write_idx(tmp_path / "x-idx3-ubyte", np.zeros((4, 5, 5), np.uint8), False)
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        zoo.data.read_idx(path)
    with pytest.raises(ValueError, match="no train images IDX file"):
        zoo.data.info(f"idx:{tmp_path}")


def test_from_arrays_scales_and_checks():
    x = np.full((10, 4, 4), 255, np.uint8)
    images, labels = next(iter(zoo.data.from_arrays(x, np.arange(10), batch_size=5)))
    assert images.shape == (5, 4, 4, 1) and float(tf.reduce_min(images)) == 1.0
    assert labels.shape == (5,) and labels.dtype == tf.int32
    with pytest.raises(ValueError, match=r"must be in \[-1, 1\], got values in \[0, 2\]"):
        zoo.data.from_arrays(np.full((4, 4, 4, 1), 2.0), batch_size=2)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\), got \[3, 7\]"):
        zoo.data.from_arrays(x, [0, 1, 2, 3, 7, 0, 0, 0, 0, 0], batch_size=5, num_classes=3)
    with pytest.raises(ValueError, match="one per image"):
        zoo.data.from_arrays(x, [0, 1], batch_size=5)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        zoo.data.from_arrays(x, batch_size=0)
    with pytest.raises(ValueError, match="batch_size=64 is larger than the 10 images"):
        zoo.data.from_arrays(x, batch_size=64)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="unknown dataset 'nope'; valid: mnist5k, digits"):
        zoo.data.info("nope")
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        zoo.data.load("digits", split="validation")


def test_tfds_names_load_through_tensorflow_datasets():
    with tfds.testing.mock_data(num_examples=48):
        dataset = zoo.data.load("mnist", batch_size=16)
        images, labels = next(iter(dataset))
        assert images.shape == (16, 28, 28, 1) and labels.dtype == tf.int32
        assert float(tf.reduce_min(images)) >= -1.0 and float(tf.reduce_max(images)) <= 1.0
        assert next(iter(zoo.data.load("tfds:mnist", batch_size=16)))[0].shape[0] == 16


def test_fit_rejects_images_of_the_wrong_shape():
    model = zoo.build("gan", image_shape=(28, 28, 1), base_filters=8, latent_dim=8)
    model.compile()
    with pytest.raises(ValueError, match=r"shape \(8, 8, 1\) but this gan was built for "
                                         r"image_shape=\(28, 28, 1\)"):
        model.fit(zoo.data.load("digits", batch_size=32), epochs=1, verbose=0)
    cgan = zoo.build("cgan", image_shape=(8, 8, 1), num_classes=10, base_filters=8)
    cgan.compile()
    images_only = zoo.data.from_arrays(zoo.data.load_arrays("digits")[0], batch_size=32)
    with pytest.raises(ValueError, match="conditional"):
        cgan.fit(images_only, epochs=1, verbose=0)


def test_build_errors_name_the_value():
    with pytest.raises(ValueError, match="unknown model 'foo'; valid models: .*cgan.*gan.*vae"):
        zoo.build("foo")
    with pytest.raises(ValueError, match="gan is unconditional"):
        zoo.build("gan", num_classes=10)
    with pytest.raises(ValueError, match=r"image_shape must be .* got \(28, 28\)"):
        zoo.build("gan", image_shape=(28, 28))
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2, got 1"):
        zoo.build("cgan", num_classes=1)
    with pytest.raises(ValueError, match="height and width must be even"):
        zoo.build("gan", image_shape=(7, 7, 1))
