"""Mixed precision (float16 with loss scaling, bfloat16) and the XLA default, on tiny 8x8 digits."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo import distribute

MIXED = ("mixed_float16", "mixed_bfloat16")
# family -> tiny constructor arguments (8x8 images)
FAMILIES = {
    "gan": {"latent_dim": 8, "base_filters": 8},
    "cgan": {"latent_dim": 8, "base_filters": 8},
    "vae": {"latent_dim": 4, "base_filters": 8},
}
ZOO = [str(Path(sys.executable).with_name("zoo"))]
if not Path(ZOO[0]).exists():
    ZOO = [sys.executable, "-m", "zoo.cli"]


def build(name, **kwargs):
    extra = {"num_classes": 10} if zoo.registry.get_model_class(name).conditional else {}
    return zoo.build(name, image_shape=(8, 8, 1), seed=3, **FAMILIES[name], **extra, **kwargs)


def digits(n=64, batch_size=32):
    images, labels = zoo.data.load_arrays("digits")
    return zoo.data.from_arrays(images[:n], labels[:n], batch_size=batch_size, shuffle=False)


def labels_for(model, n):
    return list(range(n)) if model.num_classes else None


@pytest.mark.slow
@pytest.mark.parametrize("precision", MIXED)
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_mixed_fit_gives_finite_float32_losses_and_float32_images(name, precision):
    model = build(name, dtype=precision)
    assert keras.config.dtype_policy().name == "float32", "building must not change the global policy"
    compute = {layer.dtype_policy.compute_dtype for layer in model.generator.layers}
    assert precision.removeprefix("mixed_") in compute  # the networks really compute in it
    model.compile()
    history = model.fit(digits(), epochs=1, verbose=0).history
    assert set(history) == set(model.tracker_names)
    assert all(np.isfinite(v[0]) for v in history.values()), history

    z = np.zeros((2, model.latent_dim), np.float32)
    images = model.generator(model.with_labels(z, np.array([1, 2], np.int32)), training=False)
    assert images.dtype == "float32"  # exporters and samplers get float32
    samples = model.sample(4, labels=labels_for(model, 4), seed=0)
    assert samples.dtype == np.float32 and samples.shape == (4, 8, 8, 1)
    assert np.all(np.isfinite(samples)) and np.abs(samples).max() <= 1.0


def test_float16_scales_the_loss_of_both_gan_optimizers():
    model = build("gan", dtype="mixed_float16")
    model.compile()
    for role in ("g_optimizer", "d_optimizer"):
        optimizer = getattr(model, role)
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer), role
        assert float(optimizer.scale_loss(tf.constant(1.0))) > 1.0  # a loss scale is applied
    before = [w.copy() for w in model.generator.get_weights()]
    data = digits(256)
    steps = 2 * len(data)
    model.fit(data, epochs=2, verbose=0)
    for role in ("g_optimizer", "d_optimizer"):
        optimizer = getattr(model, role)
        # dynamic loss scaling skips each step whose scaled gradients overflow and halves the
        # scale; the steps it applies count as iterations (no growth within 2000 steps)
        applied = int(optimizer.iterations)
        assert steps // 2 <= applied <= steps, (role, applied, steps)
        assert float(optimizer.dynamic_scale) == optimizer.initial_scale * 0.5 ** (steps - applied)
    after = model.generator.get_weights()
    assert all(np.all(np.isfinite(w)) for w in after)
    # the applied steps moved the generator (Adam: ~ learning rate per step and weight)
    moved = max(float(np.abs(a - b).max()) for a, b in zip(before, after))
    assert moved > 0.1 * float(model.g_optimizer.learning_rate), moved


def test_bfloat16_needs_no_loss_scaling():
    model = build("gan", dtype="mixed_bfloat16")
    model.compile()
    assert not isinstance(model.g_optimizer, keras.optimizers.LossScaleOptimizer)
    assert not isinstance(model.d_optimizer, keras.optimizers.LossScaleOptimizer)


@pytest.mark.slow
@pytest.mark.parametrize("precision", MIXED)
def test_keras_round_trip_keeps_the_policy(precision, tmp_path):
    model = build("cgan", dtype=precision)
    model.compile()
    model.fit(digits(), epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.dtype_policy.name == precision
    assert {layer.dtype_policy.name for layer in loaded.discriminator.layers} == {
        layer.dtype_policy.name for layer in model.discriminator.layers
    }
    scaled = precision == "mixed_float16"
    for role in ("g_optimizer", "d_optimizer"):
        assert isinstance(getattr(loaded, role), keras.optimizers.LossScaleOptimizer) == scaled
    np.testing.assert_array_equal(
        model.sample(3, labels=[0, 1, 2], seed=5), loaded.sample(3, labels=[0, 1, 2], seed=5)
    )
    assert keras.config.dtype_policy().name == "float32"


def test_a_global_policy_works_too():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = build("vae")
    finally:
        keras.config.set_dtype_policy("float32")
    assert model.dtype_policy.name == "mixed_bfloat16"
    assert model.get_config()["dtype"]["config"]["name"] == "mixed_bfloat16"
    assert model.sample(2, seed=0).dtype == np.float32


def test_xla_default_is_off_on_cpu_and_with_several_replicas_and_says_why():
    choice = distribute.choose_jit_compile("auto")
    assert choice == distribute.JitChoice(False, choice.reason) and "CPU" in choice.reason
    with distribute.get_strategy("mirrored").scope():  # 2 logical CPUs (conftest)
        several = distribute.choose_jit_compile("auto")
    assert not several.enabled and "2 replicas" in several.reason
    assert distribute.choose_jit_compile("on").enabled
    assert not distribute.choose_jit_compile("off").enabled
    with pytest.raises(ValueError, match="auto, on, off"):
        distribute.choose_jit_compile("sometimes")

    model = build("gan")
    model.compile()
    assert model.jit_compile is False and model.jit_choice.reason == choice.reason
    assert model.get_compile_config()["jit_compile"] == "auto"  # decided again where loaded


@pytest.mark.slow  # XLA compiles the train step: ~45 s on 2 cores
def test_xla_on_one_device_trains(tmp_path):
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        model = build("vae")
        model.compile(jit_compile=True)
    assert model.jit_compile is True
    history = model.fit(digits(), epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])


@pytest.mark.slow  # two `zoo` processes, one trains
def test_cli_precision_and_jit_flags(tmp_path):
    run = tmp_path / "run"
    args = ["train", "gan", "--dataset", "digits", "--batch-size", "100", "--seed", "1",
            "--epochs", "1", "--steps-per-epoch", "2", "--verbose", "0",
            "--model-arg", "base_filters=8", "--model-arg", "latent_dim=8",
            "--precision", "mixed_bfloat16", "--jit-compile", "off", "--out", str(run)]
    result = subprocess.run(
        [*ZOO, *args], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((run / "config.json").read_text())
    assert config["precision"] == "mixed_bfloat16" and config["status"] == "finished"
    assert config["xla"] == {"enabled": False, "reason": "jit_compile='off' given"}
    assert config["model_config"]["dtype"]["config"]["name"] == "mixed_bfloat16"
    model = keras.models.load_model(run / "model.keras")
    assert model.dtype_policy.name == "mixed_bfloat16"
    assert model.sample(2, seed=0).dtype == np.float32

    bad = subprocess.run(
        [*ZOO, "train", "gan", "--precision", "float8"], capture_output=True, text=True,
        timeout=120, check=False,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "float8" in bad.stderr.strip().splitlines()[-1]
