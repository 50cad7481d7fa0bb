"""Losses as pure functions of tensors.

Each returns ONE VALUE PER EXAMPLE (shape (batch,)); the model families reduce them with
`zoo.base.GenerativeModel.average_over_global_batch`, so gradients summed across replicas equal
the gradient of the mean over the global batch. Names follow TF-GAN: `<kind>_generator_loss`,
`<kind>_discriminator_loss`.
"""

from __future__ import annotations

import math

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
