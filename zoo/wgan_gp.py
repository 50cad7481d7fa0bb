"""WGAN-GP: a generator against a Lipschitz-penalized critic (Gulrajani et al. 2017)."""

from __future__ import annotations

from typing import ClassVar

import keras
import tensorflow as tf

from zoo import losses
from zoo.base import unpack_batch
from zoo.gan import AdversarialModel
from zoo.registry import register


@register("wgan_gp")
@keras.saving.register_keras_serializable(package="zoo")
class WGANGP(AdversarialModel):
    """Wasserstein GAN with gradient penalty; `discriminator` is the critic (one score per image).

    Each `train_step` makes `n_critic` critic steps and then one generator step. All critic
    steps of a step use the same real batch, each with fresh noise and fresh interpolation
    weights alpha ~ Uniform(0, 1) per example, drawn for the global batch like `replica_noise`.
    The critic is the DCGAN (or MLP) discriminator, which has no batch statistics, so the
    penalty of each example depends on that example only.

    Critic loss per example: D(G(z)) - D(x) + gp_weight * (||grad D(x_hat)|| - 1)^2.
    Reported: `d_loss` (that sum, averaged over the critic steps of the epoch),
    `gradient_penalty` (the unweighted penalty), `g_loss` (-D(G(z))).

    The AdversarialModel options `ema_decay`, `augment` (the penalty is taken between the
    augmented real and generated images), `spectral_norm` and `r1_weight` apply; the loss is
    always Wasserstein, so there is no `gan_loss`.
    """

    options_before_they_existed: ClassVar[dict] = {
        k: v for k, v in AdversarialModel.options_before_they_existed.items() if k != "gan_loss"
    }

    tracker_names = ("d_loss", "g_loss", "gradient_penalty")

    def __init__(
        self,
        image_shape=(28, 28, 1),
        latent_dim: int = 100,
        *,
        architecture: str = "dcgan",
        base_filters: int = 64,
        upsampling: str = "transpose",
        n_critic: int = 5,
        gp_weight: float = 10.0,
        embedding_dim: int = 50,
        ema_decay: float = 0.0,
        augment: str = "",
        spectral_norm: bool = False,
        r1_weight: float = 0.0,
        seed=None,
        **kwargs,
    ):
        if "gan_loss" in kwargs:
            raise ValueError(
                f"wgan_gp always trains with the Wasserstein loss: gan_loss="
                f"{kwargs['gan_loss']!r} is for gan and cgan"
            )
        if isinstance(n_critic, bool) or not isinstance(n_critic, int) or n_critic < 1:
            raise ValueError(f"n_critic must be an integer >= 1, got {n_critic!r}")
        if not gp_weight >= 0:
            raise ValueError(f"gp_weight must be >= 0, got {gp_weight!r}")
        super().__init__(
            image_shape=image_shape, latent_dim=latent_dim, num_classes=0,
            architecture=architecture, base_filters=base_filters, upsampling=upsampling,
            embedding_dim=embedding_dim, ema_decay=ema_decay, augment=augment,
            spectral_norm=spectral_norm, r1_weight=r1_weight, seed=seed, **kwargs,
        )
        self.n_critic = int(n_critic)
        self.gp_weight = float(gp_weight)

    def get_config(self):
        config = super().get_config()
        del config["gan_loss"]
        config.update(n_critic=self.n_critic, gp_weight=self.gp_weight)
        return config

    def default_optimizer(self, role):
        return keras.optimizers.Adam(learning_rate=1e-4, beta_1=0.0, beta_2=0.9)

    def critic_terms(self, real, labels, training):
        """Per-example (wasserstein critic loss, gradient penalty, real images as the critic
        saw them) on fresh noise and alpha; augmented in training."""
        batch = tf.shape(real)[0]
        fake = self.fake_images(labels, batch, training)
        if training:
            real, fake = self.augmented(real), self.augmented(fake)
        alpha = self.replica_uniform(batch)
        wasserstein = losses.wasserstein_discriminator_loss(
            self.discriminate(real, labels, training), self.discriminate(fake, labels, training)
        )
        penalty = losses.gradient_penalty(
            lambda images: self.discriminate(images, labels, training), real, fake, alpha
        )
        return wasserstein, penalty, real

    def train_step(self, data):
        real, labels = unpack_batch(data)
        labels = self.batch_labels(labels)
        batch = tf.shape(real)[0]

        def critic_loss():
            wasserstein, penalty, seen_real = self.critic_terms(real, labels, True)
            per_example = self.with_r1(wasserstein + self.gp_weight * penalty, seen_real, labels)
            return self.average_over_global_batch(per_example), (per_example, penalty)

        def generator_loss():
            fake = self.augmented(self.fake_images(labels, batch))
            per_example = losses.wasserstein_generator_loss(
                self.discriminate(fake, labels, True)
            )
            return self.average_over_global_batch(per_example), per_example

        for _ in range(self.n_critic):  # unrolled: n_critic is a small Python int
            _, (d_per_example, penalty) = self.minimize(
                self.d_optimizer, critic_loss, self.discriminator.trainable_variables
            )
            self.trackers["d_loss"].update_state(d_per_example)
            self.trackers["gradient_penalty"].update_state(penalty)
        _, g_per_example = self.minimize(
            self.g_optimizer, generator_loss, self.raw_generator.trainable_variables
        )
        self.update_ema()
        return self.update_trackers(g_loss=g_per_example)

    def test_step(self, data):
        real, labels = unpack_batch(data)
        labels = self.batch_labels(labels)
        wasserstein, penalty, _ = self.critic_terms(real, labels, False)
        fake = self.fake_images(labels, tf.shape(real)[0], training=False)
        return self.update_trackers(
            d_loss=wasserstein + self.gp_weight * penalty,
            gradient_penalty=penalty,
            g_loss=losses.wasserstein_generator_loss(self.discriminate(fake, labels, False)),
        )
