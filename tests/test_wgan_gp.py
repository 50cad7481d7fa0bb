"""WGAN-GP: the Wasserstein losses and gradient penalty against closed forms, and the model's
training schedule (n_critic critic steps per generator step, Adam(0, 0.9) defaults).
The shared checks (config, fit, save/load, 1-vs-2-replica parity) run in test_models.py."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo import losses


def test_wasserstein_losses_are_per_example_score_differences():
    real = np.array([1.0, -2.0, 0.5], np.float32)
    fake = np.array([0.25, 3.0, -1.0], np.float32)
    np.testing.assert_allclose(losses.wasserstein_generator_loss(fake), -fake)
    np.testing.assert_allclose(losses.wasserstein_discriminator_loss(real, fake), fake - real)


def test_interpolate_goes_from_real_to_fake_per_example():
    real = np.zeros((3, 2, 2, 1), np.float32)
    fake = np.ones((3, 2, 2, 1), np.float32)
    mixed = keras.ops.convert_to_numpy(
        losses.interpolate(real, fake, np.array([0.0, 0.25, 1.0], np.float32))
    )
    np.testing.assert_allclose(mixed[:, 0, 0, 0], [0.0, 0.25, 1.0])


def test_gradient_penalty_of_a_linear_critic_is_closed_form():
    # D(x) = <w, x>: grad = w everywhere, penalty = (sqrt(|w|^2 + eps) - 1)^2 for every alpha.
    w = tf.constant(np.random.default_rng(0).normal(size=(1, 4, 4, 1)), tf.float32)
    real = tf.random.normal((5, 4, 4, 1), seed=1)
    fake = tf.random.normal((5, 4, 4, 1), seed=2)
    alpha = tf.random.uniform((5,), seed=3)
    penalty = losses.gradient_penalty(
        lambda x: tf.reduce_sum(w * x, axis=(1, 2, 3)), real, fake, alpha, epsilon=1e-10
    )
    expected = (np.sqrt(np.sum(np.square(w.numpy())) + 1e-10) - 1.0) ** 2
    np.testing.assert_allclose(penalty.numpy(), np.full(5, expected), rtol=1e-5)


def test_gradient_penalty_is_per_example_at_the_interpolate():
    # D(x) = 0.5 |x|^2: grad = x_hat = real + alpha (fake - real), one norm per example.
    rng = np.random.default_rng(4)
    real = rng.normal(size=(4, 3, 3, 2)).astype(np.float32)
    fake = rng.normal(size=(4, 3, 3, 2)).astype(np.float32)
    alpha = np.array([0.0, 0.3, 0.7, 1.0], np.float32)
    penalty = losses.gradient_penalty(
        lambda x: 0.5 * tf.reduce_sum(tf.square(x), axis=(1, 2, 3)),
        tf.constant(real), tf.constant(fake), tf.constant(alpha), epsilon=1e-10,
    ).numpy()
    x_hat = real + alpha[:, None, None, None] * (fake - real)
    norms = np.sqrt(np.sum(x_hat.reshape(4, -1) ** 2, axis=1) + 1e-10)
    np.testing.assert_allclose(penalty, (norms - 1.0) ** 2, rtol=1e-5)


def test_gradient_penalty_is_differentiable_at_a_zero_gradient():
    # epsilon inside the sqrt: a critic with zero input gradient still gives finite gradients.
    scale = tf.Variable(0.0)
    real = tf.ones((2, 2, 2, 1))
    fake = -tf.ones((2, 2, 2, 1))
    with tf.GradientTape() as tape:
        penalty = losses.gradient_penalty(
            lambda x: scale * tf.reduce_sum(x, axis=(1, 2, 3)), real, fake, tf.constant([0.5, 0.5])
        )
        total = tf.reduce_sum(penalty)
    gradient = tape.gradient(total, scale)
    np.testing.assert_allclose(penalty.numpy(), (np.sqrt(1e-10) - 1.0) ** 2, rtol=1e-6)
    assert np.isfinite(gradient.numpy())


def test_defaults_and_bad_arguments():
    model = zoo.build("wgan_gp", latent_dim=8, base_filters=8)
    assert (model.n_critic, model.gp_weight, model.num_classes) == (5, 10.0, 0)
    model.compile()
    for role in ("g_optimizer", "d_optimizer"):
        optimizer = getattr(model, role)
        assert isinstance(optimizer, keras.optimizers.Adam)
        assert optimizer.beta_1 == 0.0 and optimizer.beta_2 == 0.9
        assert np.isclose(float(optimizer.learning_rate), 1e-4)
    assert not any(
        isinstance(layer, keras.layers.BatchNormalization) for layer in model.discriminator.layers
    ), "the critic must have no batch statistics"
    with pytest.raises(ValueError, match="n_critic"):
        zoo.build("wgan_gp", n_critic=0)
    with pytest.raises(ValueError, match="gp_weight"):
        zoo.build("wgan_gp", gp_weight=-1.0)
    with pytest.raises(ValueError, match="unconditional"):
        zoo.build("wgan_gp", num_classes=10)


@pytest.mark.slow  # traces the critic's nested gradient penalty (~11 s)
def test_each_step_makes_n_critic_critic_steps_and_one_generator_step():
    keras.utils.set_random_seed(0)
    model = zoo.build("wgan_gp", latent_dim=8, base_filters=8, n_critic=3, seed=0)
    model.compile()
    images = np.random.default_rng(0).uniform(-1, 1, (32, 28, 28, 1)).astype(np.float32)
    dataset = zoo.data.from_arrays(images, np.zeros(32, np.int32), batch_size=16)
    history = model.fit(dataset, epochs=1, verbose=0).history
    assert int(model.d_optimizer.iterations) == 2 * 3
    assert int(model.g_optimizer.iterations) == 2
    assert set(history) == {"d_loss", "g_loss", "gradient_penalty"}
    assert history["gradient_penalty"][0] >= 0


def test_alpha_draws_are_uniform_per_example():
    model = zoo.build("wgan_gp", latent_dim=8, base_filters=8, seed=3)
    alpha = keras.ops.convert_to_numpy(model.replica_uniform(1000))
    assert alpha.shape == (1000,)
    assert alpha.min() >= 0.0 and alpha.max() < 1.0
    assert abs(alpha.mean() - 0.5) < 0.05 and len(np.unique(alpha)) == 1000
