"""The fast diffusion recipe: GroupNorm groups that keep the time/label embedding, the lean
U-Net layout, min-SNR-gamma loss weights against their closed form, and configs saved before
these options existed loading and sampling as they did."""

import json
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from exporters.diffusion_schedules import NoiseSchedule
from zoo import networks

TINY = {"base_filters": 8, "channel_multipliers": (1, 2), "sampling_steps": 4, "seed": 0}
# what the model meant before unet / min_group_channels / loss_weighting existed
LEGACY = {"unet": "classic", "min_group_channels": 1, "loss_weighting": "none",
          "prediction": "epsilon"}


# ---- GroupNorm groups ---------------------------------------------------------------------------
def test_groups_keep_at_least_min_channels():
    assert networks._groups(8) == 8  # the old rule: one channel per group
    assert networks._groups(8, min_channels=4) == 2
    assert networks._groups(16, min_channels=4) == 4
    assert networks._groups(32, min_channels=4) == 8  # the default U-Net's 32/64: unchanged
    assert networks._groups(64, min_channels=4) == 8
    assert networks._groups(6, min_channels=4) == 1  # too few channels: one group


def _embedding_gradient(min_group_channels):
    keras.utils.set_random_seed(0)
    unet = networks.unet_denoiser(
        (8, 8, 1), num_classes=3, base_filters=8, channel_multipliers=(1, 2),
        unet="lean", min_group_channels=min_group_channels,
    )
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(4, 8, 8, 1)).astype("float32"),
              np.array([1.0, 10.0, 100.0, 500.0], "float32"), np.array([0, 1, 2, 3], "int32")]
    weights = tf.constant(rng.normal(size=(4, 8, 8, 1)).astype("float32"))
    kernel = unet.get_layer("down0_0_embedding").kernel
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(unet(inputs) * weights)
    return float(tf.reduce_max(tf.abs(tape.gradient(loss, kernel.value))))


def test_the_embedding_reaches_the_output_at_8_channels():
    # one channel per group normalises the embedding added per channel away: no gradient
    # beyond float32 round-off; groups of 4 channels keep its per-channel differences
    kept, erased = _embedding_gradient(4), _embedding_gradient(1)
    assert kept > 1e-3
    assert erased < 1e-4 * kept


def test_bad_unet_options_name_the_value():
    with pytest.raises(ValueError, match="'wide'"):
        zoo.build("ddpm", unet="wide", **TINY)
    with pytest.raises(ValueError, match="min_group_channels.*0"):
        zoo.build("ddpm", min_group_channels=0, **TINY)


# ---- min-SNR-gamma ---------------------------------------------------------------------------------
@pytest.mark.parametrize("prediction", ["epsilon", "v", "sample"])
def test_min_snr_weights_are_the_closed_form(prediction):
    schedule = NoiseSchedule("cosine", 100)
    t = np.array([0, 10, 50, 90, 99])
    a = schedule.alphas_cumprod[t]
    snr = a / (1 - a)
    clipped = np.minimum(snr, 5.0)
    expected = {"epsilon": clipped / snr, "v": clipped / (snr + 1), "sample": clipped}[prediction]
    weights = schedule.loss_weights("min_snr", prediction, t, gamma=5.0)
    np.testing.assert_allclose(weights, expected, rtol=1e-12)
    assert weights.min() < 0.5 * weights.max()  # gamma clips something at these t
    as_ops = schedule.loss_weights("min_snr", prediction, t.astype("int32"), gamma=5.0,
                                   xp=keras.ops)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(as_ops), expected, rtol=1e-6)
    np.testing.assert_array_equal(schedule.loss_weights("none", prediction, t), np.ones(5))
    np.testing.assert_allclose(schedule.snr(t), snr)


def test_min_snr_v_weights_are_the_epsilon_ones_over_snr_plus_1_times_snr():
    # Hang et al. 2023: a v error is (SNR + 1) / SNR epsilon errors' worth of x_0 error
    schedule = NoiseSchedule("linear", 200)
    t = np.arange(200)
    snr = schedule.snr(t)
    np.testing.assert_allclose(
        schedule.loss_weights("min_snr", "v", t, 3.0),
        schedule.loss_weights("min_snr", "epsilon", t, 3.0) * snr / (snr + 1), rtol=1e-12,
    )


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"loss_weighting": "p2"}, "loss_weighting='p2'"),
    ({"min_snr_gamma": -1.0}, "min_snr_gamma.*-1.0"),
    ({"min_snr_gamma": 0}, "min_snr_gamma.*0"),
    ({"prediction": "score"}, "prediction='score'"),
])
def test_bad_loss_options_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        zoo.build("cddpm", **TINY, **kwargs)
    if "prediction" not in kwargs:
        with pytest.raises(ValueError, match=match):
            NoiseSchedule("cosine", 10).loss_weights(
                kwargs.get("loss_weighting", "min_snr"), "v", [1],
                gamma=kwargs.get("min_snr_gamma", 5.0))


def _per_example_loss(**kwargs):
    keras.utils.set_random_seed(0)
    model = zoo.build("cddpm", **TINY, **kwargs)
    images, labels = zoo.data.load_arrays("mnist5k", "train")
    loss = model.diffusion_loss(tf.constant(images[:8]), tf.constant(labels[:8]), training=False)
    return model, keras.ops.convert_to_numpy(loss)


def test_the_training_loss_is_weighted_per_example_by_its_timestep():
    model, plain = _per_example_loss(prediction="v", loss_weighting="none")
    _, weighted = _per_example_loss(prediction="v", loss_weighting="min_snr", min_snr_gamma=0.5)
    _, huge_gamma = _per_example_loss(prediction="epsilon", loss_weighting="min_snr",
                                      min_snr_gamma=1e30)
    _, epsilon = _per_example_loss(prediction="epsilon", loss_weighting="none")
    # same seed: the same t, noise and weights, so the ratio is the weight of each example's t
    table = model.noise_schedule.loss_weights("min_snr", "v", np.arange(1000), gamma=0.5)
    ratios = weighted / plain
    assert np.all(ratios <= 1 + 1e-6) and ratios.min() < 0.99
    assert all(np.isclose(table, r, rtol=1e-4).any() for r in ratios)
    np.testing.assert_allclose(huge_gamma, epsilon, rtol=1e-6)  # min(SNR, inf) / SNR = 1


# ---- the lean U-Net ----------------------------------------------------------------------------------
def test_lean_unet_keeps_shapes_and_is_smaller():
    lean = networks.unet_denoiser((28, 28, 1), 10, unet="lean", min_group_channels=4)
    classic = networks.unet_denoiser((28, 28, 1), 10)
    inputs = [np.zeros((2, 28, 28, 1), "float32"), np.zeros(2, "float32"),
              np.zeros(2, "int32")]
    assert lean(inputs).shape == classic(inputs).shape == (2, 28, 28, 1)
    assert lean.count_params() < 0.8 * classic.count_params()
    assert "up0_1" not in {layer.name.rsplit("_", 1)[0] for layer in lean.layers}
    assert lean.get_layer("upsample1_conv").filters == 32  # the upper level's channels


def test_lean_cddpm_exports_to_onnx_with_parity(tmp_path):
    import exporters
    from exporters import runtime

    keras.utils.set_random_seed(0)
    model = zoo.build("cddpm", image_shape=(8, 8, 1), num_classes=3, **TINY)
    assert (model.unet, model.prediction, model.loss_weighting) == ("lean", "v", "min_snr")
    model.compile()
    images, labels = zoo.data.load_arrays("mnist5k", "train")
    model.train_step((tf.image.resize(images[:8], (8, 8)), tf.constant(labels[:8] % 3)))
    report = exporters.export(model, tmp_path / "export", formats=("onnx",))
    assert report is not None
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert manifest["schedule"]["prediction"] == "v"
    generator = runtime.load(tmp_path / "export" / "generator.onnx")
    np.testing.assert_allclose(
        generator.generate_float(4, [0, 1, 2, 1], seed=3),
        model.sample(4, [0, 1, 2, 1], seed=3), atol=1e-4,
    )


# ---- configs saved before the recipe -----------------------------------------------------------------
def test_a_config_saved_before_the_recipe_loads_and_samples_the_same(tmp_path):
    keras.utils.set_random_seed(0)
    model = zoo.build("cddpm", **TINY, **LEGACY)
    model.compile()
    path = tmp_path / "old.keras"
    model.save(path)
    old = tmp_path / "saved-before.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(old, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                saved = json.loads(data)
                for key in ("unet", "min_group_channels", "loss_weighting", "min_snr_gamma"):
                    del saved["config"][key]  # what a config written before them holds
                data = json.dumps(saved).encode()
            target.writestr(item, data)
    loaded = keras.models.load_model(old)
    assert (loaded.unet, loaded.min_group_channels, loaded.loss_weighting) == (
        "classic", 1, "none")
    assert loaded.prediction == "epsilon"
    assert [w.shape for w in loaded.generator.weights] == [
        w.shape for w in model.generator.weights]
    np.testing.assert_array_equal(loaded.sample(3, [0, 1, 2], seed=1),
                                  model.sample(3, [0, 1, 2], seed=1))
