"""GAN and CGAN: adversarial training of a generator against a discriminator."""

from __future__ import annotations

from typing import ClassVar

import keras
import tensorflow as tf

from zoo import augment as augmentations
from zoo import losses, networks
from zoo.base import GenerativeModel, unpack_batch
from zoo.registry import register

ARCHITECTURES = {
    "dcgan": (networks.dcgan_generator, networks.dcgan_discriminator),
    "mlp": (networks.mlp_generator, networks.mlp_discriminator),
}


def check_ema_decay(ema_decay) -> float:
    if isinstance(ema_decay, bool) or not isinstance(ema_decay, (int, float)) or not (
        0.0 <= ema_decay < 1.0
    ):
        raise ValueError(
            f"ema_decay must be a number in [0, 1) (0 turns the average off), got {ema_decay!r}"
        )
    return float(ema_decay)


def check_non_negative(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{what} must be a number >= 0, got {value!r}")
    return float(value)


def check_flag(value, what: str) -> bool:
    if not isinstance(value, bool):  # ValueError like every bad constructor value in the zoo
        raise ValueError(f"{what} must be True or False, got {value!r}")  # noqa: TRY004
    return value


class AdversarialModel(GenerativeModel):
    """Shared by GAN, CGAN and WGAN-GP: discriminator step(s), then one generator step, per batch.

    Training upgrades, off unless a family's defaults turn them on where measured to help
    (tools/bench_gan_options.py; CGAN turns on EMA, hinge loss and spectral norm):

    - `ema_decay` > 0: `generator` (what sampling, `call`, evaluation and export use) holds an
      exponential moving average of the trained weights, which are in `raw_generator`. After
      each generator step: ema = d_t ema + (1 - d_t) raw with d_t = min(ema_decay,
      (1 + t) / (10 + t)), t = 0 at the first step (the warm-up keeps a short run's average
      from remembering the random start); batch-norm statistics are copied, not averaged.
      With `ema_decay=0`, `raw_generator` is `generator`.
    - `augment`: DiffAugment policy (zoo.augment) for real and generated images before D, in
      training only.
    - `gan_loss`: "nonsaturating" or "hinge" (zoo.losses.GAN_LOSSES; WGAN-GP has its own).
    - `spectral_norm`: SpectralNormalization on the discriminator's kernels.
    - `r1_weight` (gamma): adds gamma / 2 * ||grad D(x)||^2 on the real images D sees.
    - `class_loss_weight` (conditional DCGANs): an auxiliary classifier head on D's features
      (AC-GAN); D adds weight * cross-entropy on the real images' labels, G on the labels it
      was asked for (zoo.losses.auxiliary_class_loss).
    """

    optimizer_roles: ClassVar[dict] = {
        "g_optimizer": "raw_generator", "d_optimizer": "discriminator",
    }
    tracker_names = ("d_loss", "g_loss")
    options_before_they_existed: ClassVar[dict] = {
        "ema_decay": 0.0, "augment": "", "gan_loss": "nonsaturating", "spectral_norm": False,
        "r1_weight": 0.0, "class_loss_weight": 0.0, "class_norm": False,
    }
    class_loss_weight = 0.0  # families that build their own D (stylegan) have no class head

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
        ema_decay: float = 0.0,
        augment: str = "",
        gan_loss: str = "nonsaturating",
        spectral_norm: bool = False,
        r1_weight: float = 0.0,
        class_loss_weight: float = 0.0,
        class_norm: bool = False,
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
        if gan_loss not in losses.GAN_LOSSES:
            raise ValueError(
                f"gan_loss={gan_loss!r} is not one of {sorted(losses.GAN_LOSSES)}"
            )
        augmentations.parse_policy(augment)
        self.architecture = architecture
        self.base_filters = int(base_filters)
        self.upsampling = upsampling
        self.conditioning = conditioning
        self.embedding_dim = int(embedding_dim)
        self.ema_decay = check_ema_decay(ema_decay)
        self.augment = augment
        self.gan_loss = gan_loss
        self.spectral_norm = check_flag(spectral_norm, "spectral_norm")
        self.r1_weight = check_non_negative(r1_weight, "r1_weight")
        self.class_loss_weight = check_non_negative(class_loss_weight, "class_loss_weight")
        self.class_norm = check_flag(class_norm, "class_norm")
        for option, asked in (("class_norm", self.class_norm),
                              ("class_loss_weight", self.class_loss_weight)):
            if asked and (not self.num_classes or architecture != "dcgan"):
                raise ValueError(
                    f"{option}={asked!r} needs a conditional dcgan (class-conditional layers); "
                    f"this model has num_classes={self.num_classes}, "
                    f"architecture={architecture!r}"
                )
        build_generator, build_discriminator = ARCHITECTURES[architecture]
        conv = architecture == "dcgan"

        def new_generator(name):
            return build_generator(
                self.latent_dim, self.image_shape, self.num_classes,
                embedding_dim=self.embedding_dim, name=name,
                **({"base_filters": self.base_filters, "upsampling": upsampling,
                    "class_norm": self.class_norm} if conv else {}),
            )

        # The trained generator first and the averaged copy last, so that for a seed the
        # trained networks start (and train) exactly as they do without the average.
        trained = new_generator("raw_generator" if self.ema_decay else "generator")
        self.discriminator = build_discriminator(
            self.image_shape, self.num_classes,
            embedding_dim=self.embedding_dim, spectral_norm=self.spectral_norm,
            **({"base_filters": self.base_filters, "conditioning": conditioning,
                "class_head": bool(self.class_loss_weight)} if conv else {}),
        )
        if self.ema_decay:
            self.raw_generator = trained
            self.generator = new_generator("generator")
            self.generator.set_weights(trained.get_weights())
            self.generator.trainable = False  # moved by update_ema, not by gradients
        else:
            self.generator = trained
            self.raw_generator = trained
        self.built = True

    @classmethod
    def from_config(cls, config):
        # A config saved before an option existed was trained without it: load it that way,
        # whatever the family's default is now.
        return super().from_config({**cls.options_before_they_existed, **config})

    def get_config(self):
        config = super().get_config()
        config.update(
            architecture=self.architecture,
            base_filters=self.base_filters,
            upsampling=self.upsampling,
            embedding_dim=self.embedding_dim,
            ema_decay=self.ema_decay,
            augment=self.augment,
            gan_loss=self.gan_loss,
            spectral_norm=self.spectral_norm,
            r1_weight=self.r1_weight,
            class_loss_weight=self.class_loss_weight,
            class_norm=self.class_norm,
        )
        return config

    def default_optimizer(self, role):
        return keras.optimizers.Adam(learning_rate=2e-4, beta_1=0.5)

    def discriminate(self, images, labels, training):
        """D's real/fake score per image."""
        return self.discriminate_and_classify(images, labels, training)[0]

    def discriminate_and_classify(self, images, labels, training):
        """(score, class logits or None): the class head exists with `class_loss_weight`."""
        outputs = self.discriminator(self.with_labels(images, labels), training=training)
        if self.class_loss_weight:
            return outputs[0], outputs[1]
        return outputs, None

    def with_class_loss(self, per_example, labels, class_logits):
        """`per_example` + class_loss_weight * cross-entropy of D's class head (AC-GAN)."""
        if class_logits is None:
            return per_example
        return per_example + self.class_loss_weight * losses.auxiliary_class_loss(
            labels, class_logits
        )

    def augmented(self, images):
        """DiffAugment of `images` (the `augment` policy; fresh draws for the global batch)."""
        count = augmentations.random_count(self.augment)
        if not count:
            return images
        uniforms = self.replica_uniform(tf.shape(images)[0], (count,))
        return augmentations.apply(images, self.augment, uniforms)

    def fake_images(self, labels, batch, training=True):
        """G(z) on fresh noise: the trained generator in training, the averaged one otherwise."""
        generator = self.raw_generator if training else self.generator
        return generator(self.with_labels(self.replica_noise(batch), labels), training=training)

    def with_r1(self, per_example, real, labels):
        """`per_example` + r1_weight / 2 * ||grad D(real)||^2 (`real` as D sees it)."""
        if not self.r1_weight:
            return per_example
        penalty = losses.r1_penalty(lambda x: self.discriminate(x, labels, True), real)
        return per_example + 0.5 * self.r1_weight * penalty

    def update_ema(self):
        """One step of the generator's moving average (see the class docstring); a no-op
        without one. Run in replica context after the generator's optimizer step: every
        replica holds the same raw weights, so each updates its copy alike."""
        if not self.ema_decay:
            return
        t = tf.cast(self.g_optimizer.iterations, tf.float32) - 1.0
        decay = tf.minimum(self.ema_decay, (1.0 + t) / (10.0 + t))
        trainable = {id(v) for v in self.raw_generator.trainable_weights}
        for raw, average in zip(self.raw_generator.weights, self.generator.weights):
            if id(raw) in trainable:
                average.assign(decay * average + (1.0 - decay) * raw)
            else:
                average.assign(raw)

    def train_step(self, data):
        real, labels = unpack_batch(data)
        labels = self.batch_labels(labels)
        batch = tf.shape(real)[0]
        generator_loss_fn, discriminator_loss_fn = losses.GAN_LOSSES[self.gan_loss]

        def discriminator_loss():
            seen_real = self.augmented(real)
            fake = self.augmented(self.fake_images(labels, batch))
            real_scores, real_classes = self.discriminate_and_classify(seen_real, labels, True)
            per_example = discriminator_loss_fn(
                real_scores, self.discriminate(fake, labels, True)
            )
            per_example = self.with_class_loss(per_example, labels, real_classes)
            per_example = self.with_r1(per_example, seen_real, labels)
            return self.average_over_global_batch(per_example), per_example

        def generator_loss():
            fake = self.augmented(self.fake_images(labels, batch))
            fake_scores, fake_classes = self.discriminate_and_classify(fake, labels, True)
            per_example = self.with_class_loss(
                generator_loss_fn(fake_scores), labels, fake_classes
            )
            return self.average_over_global_batch(per_example), per_example

        _, d_per_example = self.minimize(
            self.d_optimizer, discriminator_loss, self.discriminator.trainable_variables
        )
        _, g_per_example = self.minimize(
            self.g_optimizer, generator_loss, self.raw_generator.trainable_variables
        )
        self.update_ema()
        return self.update_trackers(d_loss=d_per_example, g_loss=g_per_example)

    def test_step(self, data):
        real, labels = unpack_batch(data)
        labels = self.batch_labels(labels)
        generator_loss_fn, discriminator_loss_fn = losses.GAN_LOSSES[self.gan_loss]
        fake = self.fake_images(labels, tf.shape(real)[0], training=False)
        fake_logits = self.discriminate(fake, labels, False)
        return self.update_trackers(
            d_loss=discriminator_loss_fn(self.discriminate(real, labels, False), fake_logits),
            g_loss=generator_loss_fn(fake_logits),
        )


@register("gan")
@keras.saving.register_keras_serializable(package="zoo")
class GAN(AdversarialModel):
    """Unconditional GAN with the non-saturating loss: a DCGAN (default) or the classic MLP GAN.

    The training options are off by default here: only CGAN's were measured (see CGAN).
    """

    def __init__(
        self,
        image_shape=(28, 28, 1),
        latent_dim: int = 100,
        *,
        architecture: str = "dcgan",
        base_filters: int = 64,
        upsampling: str = "transpose",
        embedding_dim: int = 50,
        ema_decay: float = 0.0,
        augment: str = "",
        gan_loss: str = "nonsaturating",
        spectral_norm: bool = False,
        r1_weight: float = 0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            image_shape=image_shape, latent_dim=latent_dim, num_classes=0,
            architecture=architecture, base_filters=base_filters, upsampling=upsampling,
            embedding_dim=embedding_dim, ema_decay=ema_decay, augment=augment,
            gan_loss=gan_loss, spectral_norm=spectral_norm, r1_weight=r1_weight, seed=seed,
            **kwargs,
        )


@register("cgan")
@keras.saving.register_keras_serializable(package="zoo")
class CGAN(AdversarialModel):
    """Class-conditional GAN: the label steers G (input embedding, and class-conditional batch
    norm in every layer), D projects it (or sees it as an embedding channel) and learns to
    classify real images (AC-GAN head), so G is also trained to be read as its class.

    Defaults measured on the demo's budget (tools/bench_gan_options.py, mnist5k, 12 epochs,
    bench-results/gan_options.md): class consistency 0.59 (all off) -> 0.65 (generator EMA,
    hinge loss, spectral norm) -> 0.73 (+ class head weight 1, class norm); classifier-FID
    3.5 -> 3.2 -> 3.0. `upsampling="resize"` lifts it to 0.81 (FID 2.3; the demo and the
    gallery use it) but its LiteRT int8 export misses the 0.2 check (0.21-0.43 off on
    5-epoch runs, transposed convs 0.13), so the default stays "transpose". DiffAugment
    lowered both at that budget and R1 added nothing measurable, so both stay off.
    """

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
        ema_decay: float = 0.999,
        augment: str = "",
        gan_loss: str = "hinge",
        spectral_norm: bool = True,
        r1_weight: float = 0.0,
        class_loss_weight: float | None = None,
        class_norm: bool | None = None,
        seed=None,
        **kwargs,
    ):
        # the class head and class norm are DCGAN layers: on by default there, off for the MLP
        dcgan = architecture == "dcgan"
        class_loss_weight = (1.0 if dcgan else 0.0) if class_loss_weight is None else class_loss_weight
        class_norm = dcgan if class_norm is None else class_norm
        super().__init__(
            image_shape=image_shape, latent_dim=latent_dim, num_classes=num_classes,
            architecture=architecture, base_filters=base_filters, upsampling=upsampling,
            conditioning=conditioning, embedding_dim=embedding_dim, ema_decay=ema_decay,
            augment=augment, gan_loss=gan_loss, spectral_norm=spectral_norm,
            r1_weight=r1_weight, class_loss_weight=class_loss_weight, class_norm=class_norm,
            seed=seed, **kwargs,
        )

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, conditioning=self.conditioning)
        return config
