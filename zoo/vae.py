"""VAE: a convolutional encoder and decoder trained on the ELBO; its `generator` is the decoder."""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from zoo import losses, networks
from zoo.base import DEFAULT_SAMPLE_BATCH, GenerativeModel, check_labels, unpack_batch
from zoo.registry import register


def _bernoulli_nll(images, params, gaussian_scale):
    del gaussian_scale
    return losses.bernoulli_reconstruction_loss(images, params)


def _gaussian_nll(images, params, gaussian_scale):
    return losses.gaussian_reconstruction_loss(
        images, keras.ops.tanh(params), math.log(gaussian_scale)
    )


# likelihood -> (per-image negative log-likelihood, scale that maps decoder outputs to images
# in [-1, 1] through tanh: the Bernoulli mean 2 * sigmoid(l) - 1 equals tanh(l / 2)).
LIKELIHOODS = {"bernoulli": (_bernoulli_nll, 0.5), "gaussian": (_gaussian_nll, 1.0)}


@register("vae")
@keras.saving.register_keras_serializable(package="zoo")
class VAE(GenerativeModel):
    """Kingma & Welling (2014). Loss per image: -log p(x|z) + beta * KL(q(z|x) || N(0, I)), nats.

    `likelihood="bernoulli"` treats pixel intensities as Bernoulli probabilities (decoder gives
    logits); `"gaussian"` uses N(tanh(decoder), scale^2) with a fixed `gaussian_scale`.
    """

    tracker_names = ("loss", "reconstruction_loss", "kl_loss")

    def __init__(
        self,
        image_shape=(28, 28, 1),
        latent_dim: int = 16,
        *,
        likelihood: str = "bernoulli",
        beta: float = 1.0,
        gaussian_scale: float = 0.1,
        base_filters: int = 32,
        decoder_activation: str = "leaky_relu",
        seed=None,
        num_classes: int = 0,
        **kwargs,
    ):
        super().__init__(
            image_shape=image_shape, latent_dim=latent_dim, num_classes=num_classes, seed=seed,
            **kwargs,
        )
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood={likelihood!r} is not one of {sorted(LIKELIHOODS)}")
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta!r}")
        if not gaussian_scale > 0:
            raise ValueError(f"gaussian_scale must be > 0, got {gaussian_scale!r}")
        self.likelihood = likelihood
        self.beta = float(beta)
        self.gaussian_scale = float(gaussian_scale)
        self.base_filters = int(base_filters)
        self.decoder_activation = networks.check_decoder_activation(decoder_activation)
        self.encoder, self.decoder = self.build_networks()
        z = keras.Input(shape=(self.latent_dim,), name="z")
        inputs = [z, keras.Input(shape=(), dtype="int32", name="label")] if self.num_classes else z
        to_image = networks.ScaledTanh(LIKELIHOODS[likelihood][1], name="image", dtype="float32")
        self.generator = keras.Model(inputs, to_image(self.decoder(inputs)), name="generator")
        self.built = True

    def build_networks(self):
        """(encoder, decoder); a conditional subclass returns networks that also take labels."""
        return (
            networks.conv_encoder(self.image_shape, self.latent_dim, self.base_filters),
            networks.conv_decoder(self.latent_dim, self.image_shape, self.base_filters,
                                  activation=self.decoder_activation),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            likelihood=self.likelihood,
            beta=self.beta,
            gaussian_scale=self.gaussian_scale,
            base_filters=self.base_filters,
            decoder_activation=self.decoder_activation,
        )
        return config

    @classmethod
    def from_config(cls, config):
        # Saved before decoder_activation existed: those decoders used ReLU.
        config = {"decoder_activation": "relu", **config}
        return super().from_config(config)

    def call(self, inputs, training=False):
        """The deterministic reconstruction: images [, labels] -> decode(z_mean) in [-1, 1].

        `model(images)` (a CVAE: `model([images, labels])`) encodes each image, takes the
        posterior mean z_mean (no sampling, so the same images give the same output) and
        runs the generator on it: what `reconstruct` returns, as a tensor. The generator
        itself (z [, labels] -> images) is `model.generator`, and what `export` writes.
        """
        images, labels = (inputs[0], inputs[1]) if self.num_classes else (inputs, None)
        z_mean, _ = self.encoder(self.with_labels(images, labels), training=training)
        return self.generator(self.with_labels(z_mean, labels), training=training)

    def reconstruction_loss(self, images, params):
        return LIKELIHOODS[self.likelihood][0](images, params, self.gaussian_scale)

    def elbo_terms(self, images, training, labels=None):
        """Per-image (reconstruction, kl) in nats with a reparameterized draw of z."""
        z_mean, z_log_var = self.encoder(self.with_labels(images, labels), training=training)
        eps = self.replica_noise(tf.shape(images)[0])
        z = z_mean + tf.exp(0.5 * z_log_var) * eps
        params = self.decoder(self.with_labels(z, labels), training=training)
        return (
            self.reconstruction_loss(images, params),
            losses.gaussian_kl_divergence(z_mean, z_log_var),
        )

    def train_step(self, data):
        images, labels = unpack_batch(data)
        labels = self.batch_labels(labels)

        def loss_fn():
            reconstruction, kl = self.elbo_terms(images, training=True, labels=labels)
            per_example = reconstruction + self.beta * kl
            return self.average_over_global_batch(per_example), (per_example, reconstruction, kl)

        _, (per_example, reconstruction, kl) = self.minimize(
            self.optimizer, loss_fn, self.trainable_variables
        )
        return self.update_trackers(loss=per_example, reconstruction_loss=reconstruction, kl_loss=kl)

    def test_step(self, data):
        images, labels = unpack_batch(data)
        reconstruction, kl = self.elbo_terms(
            images, training=False, labels=self.batch_labels(labels)
        )
        return self.update_trackers(
            loss=reconstruction + self.beta * kl, reconstruction_loss=reconstruction, kl_loss=kl
        )

    # ---- the VAE's own API --------------------------------------------------------------
    def encode(self, images, batch_size: int = DEFAULT_SAMPLE_BATCH, *, labels=None):
        """(z_mean, z_log_var) as numpy arrays for images NHWC in [-1, 1] (and their labels,
        for a conditional model)."""
        images = np.asarray(images, dtype=np.float32)
        labels = check_labels(labels, len(images), self.num_classes)
        means, log_vars = [], []
        for start in range(0, len(images), batch_size):
            chunk = slice(start, start + batch_size)
            mean, log_var = self.encoder(
                self.with_labels(images[chunk], None if labels is None else labels[chunk]),
                training=False,
            )
            means.append(keras.ops.convert_to_numpy(mean))
            log_vars.append(keras.ops.convert_to_numpy(log_var))
        return np.concatenate(means), np.concatenate(log_vars)

    def decode(self, z, batch_size: int = DEFAULT_SAMPLE_BATCH, *, labels=None):
        """Images in [-1, 1] (the likelihood's mean) for latents z [and labels]."""
        z = np.asarray(z, dtype=np.float32)
        labels = check_labels(labels, len(z), self.num_classes)
        return self.generate(z, labels, batch_size=batch_size)

    def reconstruct(self, images, batch_size: int = DEFAULT_SAMPLE_BATCH, *, labels=None):
        """Decode the posterior mean of each image (with its label, for a conditional model)."""
        z_mean, _ = self.encode(images, batch_size, labels=labels)
        return self.decode(z_mean, batch_size, labels=labels)
