"""Losses as pure functions of tensors.

Each returns ONE VALUE PER EXAMPLE (shape (batch,)); the model families reduce them with
`zoo.base.GenerativeModel.average_over_global_batch`, so gradients summed across replicas equal
the gradient of the mean over the global batch. Names follow TF-GAN: `<kind>_generator_loss`,
`<kind>_discriminator_loss`.
"""

from __future__ import annotations

import math

import tensorflow as tf
from keras import ops

LOG_2PI = math.log(2.0 * math.pi)


def _per_example_sum(x):
    return ops.sum(ops.reshape(x, (ops.shape(x)[0], -1)), axis=-1)


def nonsaturating_generator_loss(fake_logits):
    """-log D(G(z)) (Goodfellow et al. 2014, the non-saturating form)."""
    return ops.softplus(-fake_logits)


def nonsaturating_discriminator_loss(real_logits, fake_logits):
    """-log D(x) - log(1 - D(G(z))), on logits for numerical stability."""
    return ops.softplus(-real_logits) + ops.softplus(fake_logits)


def auxiliary_class_loss(labels, class_logits):
    """Cross-entropy of the discriminator's class head against the labels (AC-GAN, Odena et
    al. 2017): D learns it on real images, G on its own, which pushes G towards images that
    read as the class they were asked for."""
    return ops.sparse_categorical_crossentropy(
        ops.cast(labels, "int32"), ops.cast(class_logits, "float32"), from_logits=True
    )


def bernoulli_reconstruction_loss(images, logits):
    """-log p(x | z) summed over pixels, pixel intensities in [0, 1] as Bernoulli targets.

    `images` are in [-1, 1] (the zoo's convention) and are mapped to [0, 1] here.
    """
    targets = (images + 1.0) * 0.5
    # Sigmoid cross entropy with logits, written out: max(l, 0) - l * t + log(1 + exp(-|l|)).
    per_pixel = ops.relu(logits) - logits * targets + ops.softplus(-ops.abs(logits))
    return _per_example_sum(per_pixel)


def gaussian_reconstruction_loss(images, means, log_scale=0.0):
    """-log N(x; mean, sigma^2) summed over pixels, with a fixed log sigma (`log_scale`)."""
    log_scale = ops.cast(log_scale, means.dtype)
    per_pixel = 0.5 * ops.square((images - means) / ops.exp(log_scale)) + log_scale + 0.5 * LOG_2PI
    return _per_example_sum(per_pixel)


def gaussian_kl_divergence(z_mean, z_log_var):
    """KL(N(mean, exp(log_var)) || N(0, I)) summed over latent dimensions."""
    return -0.5 * ops.sum(1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=-1)


# ---- Wasserstein GAN with gradient penalty (Arjovsky et al. 2017; Gulrajani et al. 2017) ----


def wasserstein_generator_loss(fake_scores):
    """-D(G(z)): the generator raises the critic's score of its samples."""
    return -fake_scores


def wasserstein_discriminator_loss(real_scores, fake_scores):
    """D(G(z)) - D(x): the critic's estimate of -W(real, fake), per example."""
    return fake_scores - real_scores


def interpolate(real, fake, alpha):
    """Points on the lines between real and fake examples: real + alpha * (fake - real).

    `alpha` has one value per example, shape (batch,), drawn from Uniform(0, 1).
    """
    alpha = ops.reshape(ops.cast(alpha, real.dtype), (-1,) + (1,) * (len(real.shape) - 1))
    return real + alpha * (fake - real)


def gradient_penalty(critic_fn, real, fake, alpha, target: float = 1.0, epsilon: float = 1e-10):
    """(||grad_x D(x_hat)||_2 - target)^2 per example, x_hat = `interpolate(real, fake, alpha)`.

    `critic_fn` maps a batch of images to one score per image and must treat examples
    independently (no batch statistics), so the gradient of the summed scores with respect to
    x_hat holds each example's own gradient. `epsilon` sits inside the square root, so the
    norm is differentiable at a zero gradient. Differentiable in the critic's weights (the
    caller's tape sees through this function's inner tape).
    """
    x_hat = interpolate(real, fake, alpha)
    with tf.GradientTape() as tape:
        tape.watch(x_hat)
        total_score = ops.sum(critic_fn(x_hat))
    gradients = ops.cast(tape.gradient(total_score, x_hat), "float32")
    norm = ops.sqrt(_per_example_sum(ops.square(gradients)) + epsilon)
    return ops.square(norm - target)


# ---- hinge loss (Lim & Ye 2017; Miyato et al. 2018) and the R1 penalty (Mescheder et al. 2018) --


def hinge_generator_loss(fake_logits):
    """-D(G(z)): as the Wasserstein generator loss, on the hinge discriminator's logits."""
    return -fake_logits


def hinge_discriminator_loss(real_logits, fake_logits):
    """max(0, 1 - D(x)) + max(0, 1 + D(G(z))): no gradient once a logit is past its margin."""
    return ops.relu(1.0 - real_logits) + ops.relu(1.0 + fake_logits)


def r1_penalty(critic_fn, real):
    """||grad_x D(x)||^2 per example, on the real images D sees (unweighted; the family
    multiplies by gamma / 2). Same rules as `gradient_penalty`: D must treat examples
    independently, and the result is differentiable in D's weights."""
    with tf.GradientTape() as tape:
        tape.watch(real)
        total_score = ops.sum(critic_fn(real))
    gradients = ops.cast(tape.gradient(total_score, real), "float32")
    return _per_example_sum(ops.square(gradients))


# name -> (generator loss, discriminator loss) of a logit-based GAN (zoo.gan's `gan_loss`).
GAN_LOSSES = {
    "nonsaturating": (nonsaturating_generator_loss, nonsaturating_discriminator_loss),
    "hinge": (hinge_generator_loss, hinge_discriminator_loss),
}
