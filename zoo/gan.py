"""GAN and CGAN: adversarial training of a generator against a discriminator."""

from __future__ import annotations

import keras
import tensorflow as tf

from zoo import losses, networks
from zoo.base import GenerativeModel, unpack_batch
from zoo.registry import register

ARCHITECTURES = {
    "dcgan": (networks.dcgan_generator, networks.dcgan_discriminator),
    "mlp": (networks.mlp_generator, networks.mlp_discriminator),
}


class AdversarialModel(GenerativeModel):
    """Shared by GAN and CGAN: one discriminator step, then one generator step, per batch."""

    optimizer_roles = {"g_optimizer": "generator", "d_optimizer": "discriminator"}
    tracker_names = ("d_loss", "g_loss")

    def __init__(
        self,
        image_shape=(28, 28, 1),
        latent_dim: int = 100,
        num_classes: int = 0,
        *,
        architecture: str = "dcgan",
        base_filters: int = 64,
        upsampling: str = "transpose",
        conditioning: str = "projection",
        embedding_dim: int = 50,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            image_shape=image_shape, latent_dim=latent_dim, num_classes=num_classes, seed=seed,
            **kwargs,
        )
        if architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture={architecture!r} is not one of {sorted(ARCHITECTURES)}"
            )
        self.architecture = architecture
        self.base_filters = int(base_filters)
        self.upsampling = upsampling
        self.conditioning = conditioning
        self.embedding_dim = int(embedding_dim)
        build_generator, build_discriminator = ARCHITECTURES[architecture]
        conv = architecture == "dcgan"
        self.generator = build_generator(
            self.latent_dim, self.image_shape, self.num_classes,
            embedding_dim=self.embedding_dim,
            **({"base_filters": self.base_filters, "upsampling": upsampling} if conv else {}),
        )
        self.discriminator = build_discriminator(
            self.image_shape, self.num_classes,
            embedding_dim=self.embedding_dim,
            **({"base_filters": self.base_filters, "conditioning": conditioning} if conv else {}),
        )
        self.built = True

    def get_config(self):
        config = super().get_config()
        config.update(
            architecture=self.architecture,
            base_filters=self.base_filters,
            upsampling=self.upsampling,
            embedding_dim=self.embedding_dim,
        )
        return config

    def default_optimizer(self, role):
        return keras.optimizers.Adam(learning_rate=2e-4, beta_1=0.5)

    def discriminate(self, images, labels, training):
        return self.discriminator(self.with_labels(images, labels), training=training)

    def train_step(self, data):
        real, labels = unpack_batch(data)
        labels = self.batch_labels(labels)
        batch = tf.shape(real)[0]

        def discriminator_loss():
            fake = self.generator(
                self.with_labels(self.replica_noise(batch), labels), training=True
            )
            per_example = losses.nonsaturating_discriminator_loss(
                self.discriminate(real, labels, True), self.discriminate(fake, labels, True)
            )
            return self.average_over_global_batch(per_example), per_example

        def generator_loss():
            fake = self.generator(
                self.with_labels(self.replica_noise(batch), labels), training=True
            )
            per_example = losses.nonsaturating_generator_loss(
                self.discriminate(fake, labels, True)
            )
            return self.average_over_global_batch(per_example), per_example

        _, d_per_example = self.minimize(
            self.d_optimizer, discriminator_loss, self.discriminator.trainable_variables
        )
        _, g_per_example = self.minimize(
            self.g_optimizer, generator_loss, self.generator.trainable_variables
        )
        return self.update_trackers(d_loss=d_per_example, g_loss=g_per_example)

    def test_step(self, data):
        real, labels = unpack_batch(data)
        labels = self.batch_labels(labels)
        fake = self.generator(
            self.with_labels(self.replica_noise(tf.shape(real)[0]), labels), training=False
        )
        fake_logits = self.discriminate(fake, labels, False)
        return self.update_trackers(
            d_loss=losses.nonsaturating_discriminator_loss(
                self.discriminate(real, labels, False), fake_logits
            ),
            g_loss=losses.nonsaturating_generator_loss(fake_logits),
        )


@register("gan")
@keras.saving.register_keras_serializable(package="zoo")
class GAN(AdversarialModel):
    """Unconditional GAN with the non-saturating loss: a DCGAN (default) or the classic MLP GAN."""

    def __init__(
        self,
        image_shape=(28, 28, 1),
        latent_dim: int = 100,
        *,
        architecture: str = "dcgan",
        base_filters: int = 64,
        upsampling: str = "transpose",
        embedding_dim: int = 50,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            image_shape=image_shape, latent_dim=latent_dim, num_classes=0,
            architecture=architecture, base_filters=base_filters, upsampling=upsampling,
            embedding_dim=embedding_dim, seed=seed, **kwargs,
        )


@register("cgan")
@keras.saving.register_keras_serializable(package="zoo")
class CGAN(AdversarialModel):
    """Class-conditional GAN: label embedding in the generator, projection (or embedding) in D."""

    conditional = True

    def __init__(
        self,
        image_shape=(28, 28, 1),
        num_classes: int = 10,
        latent_dim: int = 100,
        *,
        architecture: str = "dcgan",
        base_filters: int = 64,
        upsampling: str = "transpose",
        conditioning: str = "projection",
        embedding_dim: int = 50,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            image_shape=image_shape, latent_dim=latent_dim, num_classes=num_classes,
            architecture=architecture, base_filters=base_filters, upsampling=upsampling,
            conditioning=conditioning, embedding_dim=embedding_dim, seed=seed, **kwargs,
        )

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, conditioning=self.conditioning)
        return config
