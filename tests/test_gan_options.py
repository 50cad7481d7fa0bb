"""The GAN training options: generator EMA, DiffAugment, hinge loss, spectral norm, R1, and the
auxiliary class loss (AC-GAN).

Closed forms for the pure functions (zoo.augment, zoo.losses), the EMA against a numpy average
of the raw weights recorded after each step, what sampling/export/saving see, 1-vs-2-replica
parity with the options on, and the errors for bad values.
"""

import harness
import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo import augment, losses
from zoo.gan import CGAN, GAN
from zoo.wgan_gp import WGANGP

TINY = {"latent_dim": 8, "base_filters": 8, "seed": 3}
# Every option off, whatever the family defaults are: each test turns on what it checks.
OFF = {"ema_decay": 0.0, "augment": "", "gan_loss": "nonsaturating", "spectral_norm": False,
       "r1_weight": 0.0, "class_loss_weight": 0.0}


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def digits(n=32):
    images, labels = zoo.data.load_arrays("mnist5k", "train")
    return images[:n], labels[:n].astype(np.int32)


def tiny_cgan(**options):
    return zoo.build("cgan", image_shape=(28, 28, 1), num_classes=10, **TINY, **{**OFF, **options})


def fit(model, n=32, batch_size=16, epochs=1, callbacks=()):
    images, labels = digits(n)
    data = zoo.data.from_arrays(images, labels, batch_size=batch_size, shuffle=False)
    return model.fit(data, epochs=epochs, verbose=0, callbacks=list(callbacks)).history


class RecordRawWeights(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.after_step = []

    def on_train_begin(self, logs=None):
        self.before = [w.numpy().copy() for w in self.model.raw_generator.weights]

    def on_train_batch_end(self, batch, logs=None):
        self.after_step.append([w.numpy().copy() for w in self.model.raw_generator.weights])


# ---- EMA ------------------------------------------------------------------------------------
def test_ema_is_the_closed_form_average_of_the_raw_weights_and_leaves_training_alone():
    decay = 0.9
    keras.utils.set_random_seed(0)
    model = tiny_cgan(ema_decay=decay)
    model.compile()
    assert model.raw_generator is not model.generator
    assert model.variables_for("g_optimizer") == model.raw_generator.trainable_variables
    recorder = RecordRawWeights()
    fit(model, n=48, callbacks=[recorder])  # 3 steps
    assert len(recorder.after_step) == 3

    trainable = [any(w is v for v in model.raw_generator.trainable_weights)
                 for w in model.raw_generator.weights]
    assert any(trainable) and not all(trainable)  # batch-norm statistics are copied
    average = [w.astype(np.float64) for w in recorder.before]  # the EMA starts at the raw init
    for t, raw in enumerate(recorder.after_step):
        d = min(decay, (1 + t) / (10 + t))
        average = [d * a + (1 - d) * r if is_trainable else r.astype(np.float64)
                   for a, r, is_trainable in zip(average, raw, trainable)]
    for expected, actual, raw in zip(average, model.generator.weights, recorder.after_step[-1]):
        np.testing.assert_allclose(actual.numpy(), expected, rtol=0, atol=2e-6)
    moved = [np.abs(e - r).max() for e, r in zip(average, recorder.after_step[-1])]
    assert max(moved) > 3e-5, "the average equals the raw weights: the check proves nothing"

    # The trained networks are exactly those of the same run without the average.
    keras.utils.set_random_seed(0)
    plain = tiny_cgan()
    plain.compile()
    fit(plain, n=48)
    assert plain.raw_generator is plain.generator
    for a, b in zip(plain.generator.weights, model.raw_generator.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(plain.discriminator.weights, model.discriminator.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_sampling_call_and_keras_export_use_the_ema_generator(tmp_path):
    keras.utils.set_random_seed(0)
    model = tiny_cgan(ema_decay=0.5)
    model.compile(g_optimizer=keras.optimizers.Adam(0.02))  # big steps: the average lags
    fit(model)
    inputs = model.example_generator_inputs(4, seed=1)
    ema = numpy(model.generator(inputs, training=False))
    raw = numpy(model.raw_generator(inputs, training=False))
    assert np.abs(ema - raw).max() > 1e-3
    np.testing.assert_allclose(numpy(model(inputs)), ema, atol=1e-6, rtol=0)
    np.testing.assert_allclose(model.generate(inputs[0], inputs[1]), ema, atol=1e-6, rtol=0)
    model.export(tmp_path / "sm", verbose=False)
    saved_model = tf.saved_model.load(str(tmp_path / "sm"))
    served = numpy(saved_model.serve(inputs))
    np.testing.assert_allclose(served, ema, atol=1e-5, rtol=0)
    assert not any("raw" in v.path for v in model.generator.weights)


def test_keras_file_and_backup_weights_keep_raw_and_ema(tmp_path):
    keras.utils.set_random_seed(0)
    model = tiny_cgan(ema_decay=0.5)
    model.compile(g_optimizer=keras.optimizers.Adam(0.02))  # big steps: the average lags
    fit(model)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.ema_decay == 0.5
    for network in ("generator", "raw_generator", "discriminator"):
        for a, b in zip(getattr(model, network).weights, getattr(loaded, network).weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=f"{network}: {a.path}")
    assert int(loaded.g_optimizer.iterations) == 2  # the warm-up goes on where it was
    differ = [np.abs(a.numpy() - b.numpy()).max()
              for a, b in zip(model.generator.weights, model.raw_generator.weights)]
    assert max(differ) > 1e-3

    # What zoo.train's backup writes and a resume reads (RunBackup: save/load_weights).
    model.save_weights(tmp_path / "backup.weights.h5")
    fresh = tiny_cgan(ema_decay=0.5)
    fresh.compile()
    fresh.load_weights(tmp_path / "backup.weights.h5")
    for a, b in zip(model.weights, fresh.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    history = fit(loaded)  # and the loaded model keeps training and averaging
    assert all(np.isfinite(v[0]) for v in history.values())
    assert int(loaded.g_optimizer.iterations) == 4


def test_a_config_saved_before_the_options_existed_loads_with_them_off():
    config = tiny_cgan().get_config()
    for name in CGAN.options_before_they_existed:
        del config[name]
    model = CGAN.from_config(config)
    assert (model.ema_decay, model.augment, model.gan_loss, model.spectral_norm,
            model.r1_weight) == (0.0, "", "nonsaturating", False, 0.0)
    assert model.raw_generator is model.generator


# ---- 1 vs 2 replicas, every option on ---------------------------------------------------------
PARITY_CASES = [
    harness.ModelCase("cgan-all-options", "cgan", {
        "latent_dim": 16, "base_filters": 8, "ema_decay": 0.9,
        "augment": "color,translation,cutout", "gan_loss": "hinge", "spectral_norm": True,
        "r1_weight": 1.0,
    }),
    harness.ModelCase("wgan_gp-ema-augment", "wgan_gp", {
        "latent_dim": 16, "base_filters": 8, "n_critic": 2, "ema_decay": 0.9,
        "augment": "translation,cutout",
    }),
]


@pytest.mark.slow  # two strategies, nested gradients (~15 s each)
@pytest.mark.parametrize("case", PARITY_CASES, ids=[c.id for c in PARITY_CASES])
def test_two_replicas_train_like_one_with_the_options_on(case):
    harness.check_replica_parity(case)


# ---- DiffAugment ------------------------------------------------------------------------------
def test_augmentations_keep_shape_and_dtype_and_are_seeded():
    images = digits(6)[0]
    for policy in ("color", "translation", "cutout", "color,translation,cutout"):
        for dtype in ("float32", "float16"):
            x = tf.constant(images, dtype)
            out = augment.augment(x, policy, seed=1)
            assert out.shape == x.shape and out.dtype == x.dtype, (policy, dtype)
        first = numpy(augment.augment(images, policy, seed=1))
        np.testing.assert_array_equal(first, numpy(augment.augment(images, policy, seed=1)))
        assert np.abs(first - numpy(augment.augment(images, policy, seed=2))).max() > 0.1
        assert np.abs(first - images).max() > 0.1, policy
    assert augment.augment(images, "", seed=1) is images
    assert augment.random_count("color,translation,cutout") == 7


def test_translation_shifts_whole_pixels_with_zero_fill():
    images = np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 1)).astype(np.float32)
    # 8 px, ratio 1/8: shifts in [-1, 1], u in [0, 1) picks -1, 0, 1 in thirds.
    u = np.array([[0.9, 0.1], [0.5, 0.5]], np.float32)  # (+1 down, -1 left), (0, 0)
    out = numpy(augment.translation(images, u))
    expected = np.zeros_like(images[0])
    expected[1:, :-1] = images[0, :-1, 1:]
    np.testing.assert_array_equal(out[0], expected)
    np.testing.assert_array_equal(out[1], images[1])


def test_cutout_zeroes_one_square_of_half_the_side():
    images = np.ones((3, 8, 8, 2), np.float32)
    out = numpy(augment.cutout(images, np.array([[0.5, 0.5], [0.0, 0.0], [0.99, 0.99]])))
    np.testing.assert_array_equal(out[0, 2:6, 2:6], 0.0)  # centre 4: rows/cols 2..5
    assert out[0].sum() == 2 * (64 - 16)
    np.testing.assert_array_equal(out[1, :2, :2], 0.0)  # centre 0: hangs over the corner
    assert out[1].sum() == 2 * (64 - 4)
    np.testing.assert_array_equal(out[2, 6:, 6:], 0.0)
    assert out[2].sum() == 2 * (64 - 4)


def test_color_is_brightness_saturation_contrast_in_closed_form():
    images = np.random.default_rng(1).uniform(-1, 1, (2, 4, 4, 3)).astype(np.float32)
    u = np.array([[0.75, 0.5, 0.5], [0.5, 0.0, 1.0]], np.float32)
    out = numpy(augment.color(images, u))
    # first: +0.25 brightness, saturation x1, contrast x1
    np.testing.assert_allclose(out[0], images[0] + 0.25, atol=1e-6)
    # second: no brightness, saturation 0 (grey), contrast x1.5 around the image mean
    grey = images[1].mean(axis=2, keepdims=True) * np.ones((1, 1, 3))
    np.testing.assert_allclose(out[1], (grey - grey.mean()) * 1.5 + grey.mean(), atol=1e-6)


def test_augmentation_is_differentiable():
    x = tf.constant(digits(4)[0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(tf.square(augment.augment(x, "color,translation,cutout", seed=0)))
    gradient = tape.gradient(total, x).numpy()
    assert np.all(np.isfinite(gradient)) and np.abs(gradient).max() > 0


def test_unknown_policy_names_it_and_the_known_ones():
    with pytest.raises(ValueError, match=r"'flip'.*known: color, translation, cutout"):
        augment.parse_policy("translation,flip")
    with pytest.raises(ValueError, match=r"augment=.*'flip'"):
        tiny_cgan(augment="flip")
    with pytest.raises(ValueError, match="comma-separated string"):
        tiny_cgan(augment=["translation"])


def test_augmentation_is_training_only():
    """Same weights with and without `augment`: inference agrees, a training step does not."""
    plain, augmented = tiny_cgan(), tiny_cgan(augment="translation,cutout")
    augmented.set_weights(plain.get_weights())
    inputs = plain.example_generator_inputs(3, seed=2)
    np.testing.assert_array_equal(numpy(plain(inputs)), numpy(augmented(inputs)))
    np.testing.assert_array_equal(plain.sample(3, labels=[1, 2, 3], seed=0),
                                  augmented.sample(3, labels=[1, 2, 3], seed=0))
    images, labels = digits(16)
    data = zoo.data.from_arrays(images, labels, batch_size=16, shuffle=False)
    for model in (plain, augmented):
        model.compile()
    assert plain.evaluate(data, verbose=0, return_dict=True) == augmented.evaluate(
        data, verbose=0, return_dict=True
    )
    seen = numpy(augmented.augmented(tf.constant(images)))
    assert seen.shape == images.shape and np.abs(seen - images).max() > 0.5
    plain.fit(data, epochs=1, verbose=0)
    augmented.fit(data, epochs=1, verbose=0)
    d_moved = [np.abs(a.numpy() - b.numpy()).max()
               for a, b in zip(plain.discriminator.weights, augmented.discriminator.weights)]
    assert max(d_moved) > 1e-6


# ---- losses: closed forms ------------------------------------------------------------------------
REAL = np.array([2.0, 0.5, -1.0, 0.0], np.float32)
FAKE = np.array([-2.0, 0.5, 1.5, -0.25], np.float32)


def test_hinge_losses_on_fixed_logits():
    np.testing.assert_allclose(numpy(losses.hinge_generator_loss(FAKE)), [2.0, -0.5, -1.5, 0.25])
    # max(0, 1 - real) + max(0, 1 + fake)
    np.testing.assert_allclose(
        numpy(losses.hinge_discriminator_loss(REAL, FAKE)), [0.0, 2.0, 4.5, 1.75]
    )


def test_nonsaturating_losses_on_fixed_logits():
    np.testing.assert_allclose(
        numpy(losses.nonsaturating_generator_loss(FAKE)), np.log1p(np.exp(-FAKE)), rtol=1e-6
    )
    np.testing.assert_allclose(
        numpy(losses.nonsaturating_discriminator_loss(REAL, FAKE)),
        np.log1p(np.exp(-REAL)) + np.log1p(np.exp(FAKE)), rtol=1e-6,
    )
    assert set(losses.GAN_LOSSES) == {"nonsaturating", "hinge"}


def test_r1_penalty_of_a_linear_and_a_quadratic_critic():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(1, 3, 3, 2)).astype(np.float32)
    real = tf.constant(rng.normal(size=(5, 3, 3, 2)).astype(np.float32))
    linear = losses.r1_penalty(lambda x: tf.reduce_sum(w * x, axis=(1, 2, 3)), real)
    np.testing.assert_allclose(numpy(linear), np.full(5, np.sum(w**2)), rtol=1e-5)
    # D(x) = 0.5 |x|^2: grad = x, penalty = |x|^2 per example
    quadratic = losses.r1_penalty(lambda x: 0.5 * tf.reduce_sum(x**2, axis=(1, 2, 3)), real)
    np.testing.assert_allclose(
        numpy(quadratic), np.sum(real.numpy().reshape(5, -1) ** 2, axis=1), rtol=1e-5
    )


def test_r1_penalty_is_differentiable_in_the_critics_weights():
    # D(x) = s * sum(x): penalty = s^2 * pixels, d/ds = 2 s * pixels
    scale = tf.Variable(1.5)
    real = tf.ones((2, 2, 2, 1))
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(losses.r1_penalty(lambda x: scale * tf.reduce_sum(x, (1, 2, 3)), real))
    np.testing.assert_allclose(total.numpy(), 2 * 1.5**2 * 4, rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(total, scale).numpy(), 2 * 2 * 1.5 * 4, rtol=1e-6)


def test_the_model_adds_half_gamma_times_r1_to_the_discriminator_loss():
    gamma = 4.0
    model = tiny_cgan(r1_weight=gamma)
    images, labels = digits(4)
    real, labels = tf.constant(images), tf.constant(labels)
    base = tf.constant([1.0, 2.0, 3.0, 4.0])
    with tf.GradientTape() as tape:
        tape.watch(real)
        total = tf.reduce_sum(model.discriminate(real, labels, True))
    gradient = tape.gradient(total, real).numpy()
    expected = base.numpy() + gamma / 2 * np.sum(gradient.reshape(4, -1) ** 2, axis=1)
    np.testing.assert_allclose(numpy(model.with_r1(base, real, labels)), expected, rtol=1e-5)
    assert tiny_cgan().with_r1(base, real, labels) is base


# ---- auxiliary class loss (AC-GAN) --------------------------------------------------------------
def test_auxiliary_class_loss_is_the_cross_entropy_of_the_class_head():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]], np.float32)
    labels = np.array([0, 1], np.int32)
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(numpy(losses.auxiliary_class_loss(labels, logits)),
                               -log_softmax[[0, 1], labels], rtol=1e-6)


def test_the_class_head_adds_weighted_cross_entropy_to_both_losses():
    weight = 0.5
    model = tiny_cgan(class_loss_weight=weight)
    images, labels = digits(4)
    real, labels = tf.constant(images), tf.constant(labels)
    scores, class_logits = model.discriminate_and_classify(real, labels, False)
    assert tuple(scores.shape) == (4,) and tuple(class_logits.shape) == (4, 10)
    np.testing.assert_allclose(numpy(model.discriminate(real, labels, False)), numpy(scores))
    base = tf.constant([1.0, 2.0, 3.0, 4.0])
    expected = base.numpy() + weight * numpy(losses.auxiliary_class_loss(labels, class_logits))
    np.testing.assert_allclose(numpy(model.with_class_loss(base, labels, class_logits)),
                               expected, rtol=1e-6)
    plain = tiny_cgan()
    assert plain.discriminate_and_classify(real, labels, False)[1] is None
    assert plain.with_class_loss(base, labels, None) is base


def test_the_class_head_teaches_d_the_classes_and_g_never_exports_it(tmp_path):
    keras.utils.set_random_seed(0)
    model = tiny_cgan(class_loss_weight=1.0)
    model.compile()
    images, labels = digits(256)

    def class_loss():
        _, logits = model.discriminate_and_classify(images, labels, False)
        return float(np.mean(numpy(losses.auxiliary_class_loss(labels, logits))))

    before = class_loss()
    fit(model, n=256, batch_size=32, epochs=8)
    assert class_loss() < 0.9 * before  # D learns to read the digits (untrained: ln 10 = 2.3)
    path = tmp_path / "ac.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.class_loss_weight == 1.0
    inputs = model.example_generator_inputs(2, seed=0)
    np.testing.assert_allclose(numpy(loaded.generator(inputs)), numpy(model.generator(inputs)),
                               atol=1e-6)
    assert [o.shape for o in model.generator.outputs] == [(None, 28, 28, 1)]


# ---- class-conditional batch norm in G --------------------------------------------------------
def test_class_norm_scales_and_shifts_each_class_by_its_own_table_row():
    model = tiny_cgan(class_norm=True)
    generator = model.generator
    scale = generator.get_layer("project_bn_class_scale")
    shift = generator.get_layer("project_bn_class_shift")
    assert not np.any(numpy(scale.embeddings)) and not np.any(numpy(shift.embeddings))
    normalized = keras.Model(generator.inputs, generator.get_layer("project_bn").output)
    conditioned = keras.Model(generator.inputs, generator.get_layer("project_bn_shifted").output)
    z = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    labels = np.array([3, 5, 3, 5], np.int32)
    np.testing.assert_allclose(numpy(conditioned([z, labels])), numpy(normalized([z, labels])))
    gamma = np.zeros(scale.embeddings.shape, np.float32)
    beta = np.zeros(shift.embeddings.shape, np.float32)
    gamma[3], beta[3] = 0.5, -0.25
    scale.embeddings.assign(gamma)
    shift.embeddings.assign(beta)
    h = numpy(normalized([z, labels]))
    expected = np.where((labels == 3)[:, None], 1.5 * h - 0.25, h)
    np.testing.assert_allclose(numpy(conditioned([z, labels])), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family, kwargs", [("gan", {}), ("cgan", {"architecture": "mlp"})])
def test_class_norm_needs_a_conditional_dcgan(family, kwargs):
    with pytest.raises(ValueError, match=r"class_norm=True needs a conditional dcgan.*num_classes"):
        zoo.build(family, class_norm=True, **kwargs)


# ---- spectral normalization ------------------------------------------------------------------
def test_spectral_norm_wraps_only_the_discriminator_and_bounds_its_kernels(tmp_path):
    keras.utils.set_random_seed(0)
    model = tiny_cgan(spectral_norm=True, gan_loss="hinge")
    wrapped = [l for l in model.discriminator.layers
               if isinstance(l, keras.layers.SpectralNormalization)]
    assert [l.layer.name for l in wrapped] == ["down0", "down1", "logit"]
    assert not any(isinstance(l, keras.layers.SpectralNormalization)
                   for l in model.generator.layers)
    model.compile()
    fit(model, n=64)  # 4 steps: the kernels are divided by their power-iteration sigma
    for layer in wrapped:
        kernel = layer.kernel.numpy().reshape(-1, layer.kernel.shape[-1])
        assert np.linalg.norm(kernel, 2) == pytest.approx(1.0, abs=0.1), layer.name
    model.export(tmp_path / "sm", verbose=False)
    served = tf.saved_model.load(str(tmp_path / "sm"))
    inputs = model.example_generator_inputs(2, seed=0)
    np.testing.assert_allclose(
        numpy(served.serve(inputs)), numpy(model.generator(inputs)), atol=1e-5, rtol=0
    )


# ---- construction: errors, config, CLI ---------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    ({"ema_decay": -0.1}, r"ema_decay must be a number in \[0, 1\).*got -0.1"),
    ({"ema_decay": 1.0}, r"ema_decay must be .*got 1.0"),
    ({"ema_decay": "0.9"}, r"ema_decay .*got '0.9'"),
    ({"ema_decay": True}, r"ema_decay .*got True"),
    ({"augment": "translation,flip"}, r"'flip'.*known: color, translation, cutout"),
    ({"r1_weight": -1.0}, r"r1_weight must be a number >= 0, got -1.0"),
    ({"r1_weight": float("nan")}, r"r1_weight .*got nan"),
    ({"gan_loss": "wasserstein"}, r"gan_loss='wasserstein' is not one of \['hinge', 'nons"),
    ({"spectral_norm": "yes"}, r"spectral_norm must be True or False, got 'yes'"),
    ({"class_loss_weight": -0.5}, r"class_loss_weight must be a number >= 0, got -0.5"),
    ({"class_norm": "yes"}, r"class_norm must be True or False, got 'yes'"),
])
@pytest.mark.parametrize("family", ["gan", "cgan", "wgan_gp"])
def test_bad_options_are_one_clear_error(family, kwargs, message):
    if family == "wgan_gp" and "gan_loss" in kwargs:
        message = r"wgan_gp always trains with the Wasserstein loss: gan_loss='wasserstein'"
    with pytest.raises(ValueError, match=message):
        zoo.build(family, **kwargs)


@pytest.mark.parametrize("family, kwargs", [
    ("gan", {}), ("wgan_gp", {}), ("cgan", {"architecture": "mlp"}),
])
def test_a_class_head_needs_a_conditional_dcgan(family, kwargs):
    with pytest.raises(ValueError, match=r"class_loss_weight=1.0 needs a conditional dcgan.*"
                                         r"num_classes="):
        zoo.build(family, class_loss_weight=1.0, **kwargs)


@pytest.mark.parametrize("cls", [GAN, CGAN, WGANGP])
def test_options_reach_the_config_and_round_trip(cls):
    options = {"ema_decay": 0.99, "augment": "translation", "spectral_norm": True,
               "r1_weight": 0.5}
    if cls is not WGANGP:
        options["gan_loss"] = "hinge"
    kwargs = {"num_classes": 3} if cls.conditional else {}
    model = cls(image_shape=(16, 16, 1), latent_dim=4, base_filters=4, **kwargs, **options)
    config = model.get_config()
    assert {k: config[k] for k in options} == options
    assert ("gan_loss" in config) == (cls is not WGANGP)
    assert cls.from_config(config).get_config() == config


def test_zoo_train_takes_the_options_as_model_arguments():
    from zoo import cli, train

    for name in ("ema_decay", "augment", "gan_loss", "spectral_norm", "r1_weight"):
        assert name in train.model_arguments(CGAN)
    args = cli.build_parser().parse_args([
        "train", "cgan", "--model-arg", "ema_decay=0.999", "--model-arg",
        "augment=translation,cutout", "--model-arg", "spectral_norm=true",
        "--model-arg", "gan_loss=hinge", "--model-arg", "r1_weight=0.1",
    ])
    kwargs = dict(args.model_arg)
    train.check_model_kwargs("cgan", CGAN, kwargs)
    model = tiny_cgan(**kwargs)
    assert (model.ema_decay, model.augment, model.spectral_norm, model.gan_loss,
            model.r1_weight) == (0.999, "translation,cutout", True, "hinge", 0.1)


def test_defaults_are_the_measured_ones():
    """CGAN's from tools/bench_gan_options.py; GAN and WGAN-GP were not measured: all off."""
    cgan = zoo.build("cgan", latent_dim=8, base_filters=8)
    assert (cgan.ema_decay, cgan.augment, cgan.gan_loss, cgan.spectral_norm, cgan.r1_weight,
            cgan.class_loss_weight, cgan.class_norm, cgan.upsampling) == (
        0.999, "", "hinge", True, 0.0, 1.0, True, "transpose"
    )
    mlp = zoo.build("cgan", architecture="mlp", latent_dim=8)  # no class head/norm layers there
    assert (mlp.class_loss_weight, mlp.class_norm) == (0.0, False)
    for name in ("gan", "wgan_gp"):
        model = zoo.build(name, latent_dim=8, base_filters=8)
        assert (model.ema_decay, model.augment, model.spectral_norm, model.r1_weight) == (
            0.0, "", False, 0.0
        ), name
    assert zoo.build("gan").gan_loss == "nonsaturating"
