"""StyleGAN: a style-based generator (mapping z -> w, synthesis from per-layer styles) trained
adversarially, with the controls users turn at sampling time (truncation, style mixing,
edits along principal directions of w; exporters.style_controls holds their one numpy
implementation, docs/stylegan_contract.md the shared names).

Training is StyleGAN2's, at the zoo's small sizes: the non-saturating loss, lazy R1 on the
real images every `r1_interval` discriminator steps (weight scaled by the interval, so the
average penalty is r1_weight), style-mixing regularization (per example with probability
`style_mixing`, a second z styles the layers from a random crossover on: the layers learn not
to depend on each other) and w_avg, the moving average of w that truncation pulls towards.
The discriminator is the DCGAN one of the `gan` family (projection-conditioned with labels).
"""

from __future__ import annotations

from typing import ClassVar

import keras
import numpy as np
import tensorflow as tf

from exporters import style_controls as sc
from exporters.sampling import check_labels
from exporters.sampling import latents as latent_normal
from zoo import augment as augmentations
from zoo import losses, networks, style_networks
from zoo.base import DEFAULT_SAMPLE_BATCH, GenerativeModel, check_count, unpack_batch
from zoo.gan import AdversarialModel, check_ema_decay, check_flag, check_non_negative
from zoo.registry import register

W_AVG_BETA = 0.995  # StyleGAN's w_avg_beta


class _ConditionalWhenLabelled:
    """`StyleGAN.conditional`: True on the class (it takes num_classes, so `zoo.build` and
    `zoo train` pass the data set's classes), and on a model whether it was built with any."""

    def __get__(self, model, owner=None):
        return True if model is None else bool(getattr(model, "num_classes", 0))


class _Plain:
    """Holds what Keras must not track as part of the model (a second view of shared layers,
    the directions dict that get_config carries)."""

    def __init__(self, **values):
        self.__dict__.update(values)


def check_probability(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{what} must be a number in [0, 1], got {value!r}")
    return float(value)


def check_directions(directions) -> dict:
    """{name: {"vector": [w_dim floats], "std", "explained_variance"}} as plain Python."""
    if not isinstance(directions, dict):
        raise ValueError(f"directions must be a dict, got {directions!r}")  # noqa: TRY004
    plain = {}
    for name, entry in directions.items():
        if not isinstance(entry, dict) or not {"vector", "std"} <= set(entry):
            raise ValueError(f"direction {name!r} must have 'vector' and 'std', got {entry!r}")
        plain[str(name)] = {
            "vector": [float(v) for v in entry["vector"]],
            "std": float(entry["std"]),
            "explained_variance": float(entry.get("explained_variance", 0.0)),
        }
    return plain


@register("stylegan")
@keras.saving.register_keras_serializable(package="zoo")
class StyleGAN(AdversarialModel):
    """Style-based GAN (StyleGAN2 at small sizes). Unconditional with num_classes=0, else the
    label joins z at the mapping network's input.

    `generator` (z [, label] -> images, psi = 1) is the EMA copy when ema_decay > 0 (default);
    `mapping` and `synthesis` are its two halves, `w_avg` the tracked mean of w, `directions`
    the principal directions `find_directions` (or `zoo directions RUN`) stored.
    """

    conditional = _ConditionalWhenLabelled()
    # Read by exporters.export. Measured (tests/test_stylegan_export.py, 16x16 and 28x28):
    # LiteRT int8 of the synthesis network is 0.6-1.1 off (mean 0.035) while every op's own
    # error is at the quantization level: it builds up through modulation and demodulation.
    quantizations_not_offered: ClassVar[dict] = {
        "int8": "its int8 synthesis network is 0.6-1.1 off the float32 one (tolerance 0.2): the "
                "error builds up through style modulation and demodulation; unconditional "
                "models can take int16x8 (int16 activations: 0.19 off on a 3-epoch mnist5k run)",
    }
    options_before_they_existed: ClassVar[dict] = {}

    def __init__(
        self,
        image_shape=(28, 28, 1),
        num_classes: int = 0,
        latent_dim: int = 128,
        *,
        w_dim: int = 128,
        mapping_layers: int = 4,
        mapping_lr_multiplier: float = 0.01,
        base_filters: int = 32,
        max_filters: int = 256,
        d_base_filters: int = 64,
        embedding_dim: int = 64,
        style_mixing: float = 0.9,
        r1_weight: float = 0.1,
        r1_interval: int = 16,
        ema_decay: float = 0.999,
        augment: str = "",
        gan_loss: str = "nonsaturating",
        spectral_norm: bool = False,
        directions=None,
        seed=None,
        **kwargs,
    ):
        # The networks are not the DCGAN/MLP ones AdversarialModel builds: set up the shared
        # base here and keep AdversarialModel's training parts (EMA, augment, losses, R1).
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or (
            num_classes < 0 or num_classes == 1
        ):
            raise ValueError(
                f"num_classes must be 0 (unconditional) or an integer >= 2, got {num_classes!r}"
            )
        GenerativeModel.__init__(
            self, image_shape=image_shape, latent_dim=latent_dim, num_classes=0, seed=seed,
            **kwargs,
        )
        self.num_classes = int(num_classes)
        if gan_loss not in losses.GAN_LOSSES:
            raise ValueError(f"gan_loss={gan_loss!r} is not one of {sorted(losses.GAN_LOSSES)}")
        augmentations.parse_policy(augment)
        positive = style_networks.check_positive_int
        self.w_dim = positive(w_dim, "w_dim")
        self.mapping_layers = positive(mapping_layers, "mapping_layers")
        if isinstance(mapping_lr_multiplier, bool) or not isinstance(
            mapping_lr_multiplier, (int, float)
        ) or not 0 < mapping_lr_multiplier <= 1:
            raise ValueError(
                f"mapping_lr_multiplier must be a number in (0, 1], got {mapping_lr_multiplier!r}"
            )
        self.mapping_lr_multiplier = float(mapping_lr_multiplier)
        self.base_filters = positive(base_filters, "base_filters")
        self.max_filters = positive(max_filters, "max_filters")
        self.d_base_filters = positive(d_base_filters, "d_base_filters")
        self.embedding_dim = positive(embedding_dim, "embedding_dim")
        self.style_mixing = check_probability(style_mixing, "style_mixing")
        self.r1_weight = check_non_negative(r1_weight, "r1_weight")
        self.r1_interval = positive(r1_interval, "r1_interval")
        self.ema_decay = check_ema_decay(ema_decay)
        self.augment = augment
        self.gan_loss = gan_loss
        self.spectral_norm = check_flag(spectral_norm, "spectral_norm")
        self._state = _Plain(directions=check_directions(directions or {}))
        for name, entry in self.directions.items():
            if len(entry["vector"]) != self.w_dim:
                raise ValueError(f"direction {name!r} has {len(entry['vector'])} entries; this "
                                 f"model's w has w_dim={self.w_dim}")

        _, self.num_ws = style_networks.synthesis_plan(
            self.image_shape, self.base_filters, self.max_filters
        )
        # Trained networks first, the averaged copy last (as in AdversarialModel).
        trained = self._new_generator("raw_generator" if self.ema_decay else "generator")
        self.discriminator = networks.dcgan_discriminator(
            self.image_shape, self.num_classes, base_filters=self.d_base_filters,
            embedding_dim=self.embedding_dim, spectral_norm=self.spectral_norm,
        )
        if self.ema_decay:
            self.raw_generator = trained[0]
            averaged = self._new_generator("generator")
            self.generator = averaged[0]
            self.generator.set_weights(self.raw_generator.get_weights())
            self.generator.trainable = False
        else:
            self.generator = self.raw_generator = trained[0]
        self._training = _Plain(synthesis=trained[1], noise_shapes=trained[2])
        self.w_avg = self.add_weight(
            shape=(self.w_dim,), name="w_avg", initializer="zeros", trainable=False,
            aggregation="only_first_replica",
        )
        self.built = True

    def _new_generator(self, name):
        mapping = style_networks.mapping_network(
            self.latent_dim, self.w_dim, self.num_classes, layers_count=self.mapping_layers,
            lr_multiplier=self.mapping_lr_multiplier, embedding_dim=self.embedding_dim,
        )
        synthesis, training, noise_shapes = style_networks.synthesis_networks(
            self.image_shape, self.w_dim, base_filters=self.base_filters,
            max_filters=self.max_filters,
        )
        generator = style_networks.style_generator(mapping, synthesis, self.num_ws, name=name)
        return generator, training, noise_shapes

    def get_config(self):
        config = GenerativeModel.get_config(self)
        config.update(
            num_classes=self.num_classes, w_dim=self.w_dim, mapping_layers=self.mapping_layers,
            mapping_lr_multiplier=self.mapping_lr_multiplier, base_filters=self.base_filters,
            max_filters=self.max_filters, d_base_filters=self.d_base_filters,
            embedding_dim=self.embedding_dim, style_mixing=self.style_mixing,
            r1_weight=self.r1_weight, r1_interval=self.r1_interval, ema_decay=self.ema_decay,
            augment=self.augment, gan_loss=self.gan_loss, spectral_norm=self.spectral_norm,
            directions=self.directions,
        )
        return config

    def default_optimizer(self, role):
        # StyleGAN2's Adam (2e-3, betas 0 / 0.99) for both networks. Measured on mnist5k, 5
        # epochs (bench-results/stylegan.md): the `gan` family's D settings (2e-4, 0.5) gave
        # classifier-FID 10.9 / recall 0.09, these 8.3 / 0.31; a G at 1e-3 was worse (14.7).
        return keras.optimizers.Adam(learning_rate=2e-3, beta_1=0.0, beta_2=0.99)

    # ---- the contract's attributes ------------------------------------------------------
    @property
    def mapping(self) -> keras.Model:
        return self.generator.get_layer("mapping")

    @property
    def synthesis(self) -> keras.Model:
        return self.generator.get_layer("synthesis")

    @property
    def directions(self) -> dict:
        return self._state.directions

    @directions.setter
    def directions(self, value):
        self._state.directions = check_directions(value)

    def export_networks(self) -> dict:
        """The float32 EMA halves the exporters write as roles "mapping" and "synthesis"."""
        return {"mapping": self.mapping, "synthesis": self.synthesis}

    def style_manifest(self) -> dict:
        return {
            "w_dim": self.w_dim, "num_ws": self.num_ws,
            "w_avg": [float(v) for v in keras.ops.convert_to_numpy(self.w_avg)],
            "directions": self.directions, "truncation_default": 1.0,
        }

    # ---- training -----------------------------------------------------------------------
    def _mixed_styles(self, mapping, z, labels, batch):
        """(ws, w): mapping(z) on every layer, and for a `style_mixing` share of the examples a
        second z's w from a random crossover layer on (replica-count independent draws)."""
        w = mapping(self.with_labels(z, labels), training=True)
        ws = w[:, None, :] * tf.ones((1, self.num_ws, 1), w.dtype)
        if not self.style_mixing or self.num_ws < 2:
            return ws, w
        w2 = mapping(self.with_labels(self.replica_noise(batch), labels), training=True)
        draws = self.replica_uniform(batch, (2,))
        mixes = draws[:, 0] < self.style_mixing
        cutoff = 1 + tf.cast(tf.floor(draws[:, 1] * (self.num_ws - 1)), tf.int32)
        cutoff = tf.where(mixes, cutoff, self.num_ws)
        later = tf.range(self.num_ws)[None, :] >= cutoff[:, None]
        return tf.where(later[:, :, None], w2[:, None, :], ws), w

    def _trained_fakes(self, labels, batch):
        """Images from the trained networks with fresh noise and style mixing, and their w."""
        mapping = self.raw_generator.get_layer("mapping")
        ws, w = self._mixed_styles(mapping, self.replica_noise(batch), labels, batch)
        noises = [self.replica_noise(batch, shape) for shape in self._training.noise_shapes]
        images = self._training.synthesis([ws, *noises], training=True)
        return images, w

    def fake_images(self, labels, batch, training=True):
        if training:
            return self._trained_fakes(labels, batch)[0]
        return super().fake_images(labels, batch, training=False)

    def _update_w_avg(self, w):
        """w_avg <- lerp(mean of w over the GLOBAL batch, w_avg, 0.995), alike on every replica."""
        context = tf.distribute.get_replica_context()
        w = tf.cast(tf.stop_gradient(w), tf.float32)
        total = tf.reduce_sum(w, axis=0)
        count = tf.cast(tf.shape(w)[0], tf.float32)
        if context is not None and context.num_replicas_in_sync > 1:
            total = context.all_reduce("sum", total)
            count = context.all_reduce("sum", count)
        mean = total / count
        self.w_avg.assign(mean + W_AVG_BETA * (self.w_avg - mean))

    def train_step(self, data):
        real, labels = unpack_batch(data)
        labels = self.batch_labels(labels)
        batch = tf.shape(real)[0]
        generator_loss_fn, discriminator_loss_fn = losses.GAN_LOSSES[self.gan_loss]
        # Lazy R1 (StyleGAN2): every r1_interval-th D step, weighted by the interval.
        lazy_r1 = self.r1_weight and tf.equal(self.d_optimizer.iterations % self.r1_interval, 0)

        def discriminator_loss():
            seen_real = self.augmented(real)
            fake = self.augmented(tf.stop_gradient(self._trained_fakes(labels, batch)[0]))
            per_example = discriminator_loss_fn(
                self.discriminate(seen_real, labels, True), self.discriminate(fake, labels, True)
            )
            if self.r1_weight:
                penalty = tf.cond(
                    lazy_r1,
                    lambda: losses.r1_penalty(
                        lambda x: self.discriminate(x, labels, True), seen_real),
                    lambda: tf.zeros_like(per_example),
                )
                per_example += 0.5 * self.r1_weight * self.r1_interval * penalty
            return self.average_over_global_batch(per_example), per_example

        def generator_loss():
            images, w = self._trained_fakes(labels, batch)
            per_example = generator_loss_fn(self.discriminate(self.augmented(images), labels, True))
            return self.average_over_global_batch(per_example), (per_example, w)

        _, d_per_example = self.minimize(
            self.d_optimizer, discriminator_loss, self.discriminator.trainable_variables
        )
        _, (g_per_example, w) = self.minimize(
            self.g_optimizer, generator_loss, self.raw_generator.trainable_variables
        )
        self._update_w_avg(w)
        self.update_ema()
        return self.update_trackers(d_loss=d_per_example, g_loss=g_per_example)

    # ---- sampling with the controls -----------------------------------------------------
    def map(self, z, labels=None, batch_size: int = DEFAULT_SAMPLE_BATCH) -> np.ndarray:
        """w = mapping(z [, labels]) as float32 numpy, in batches (the EMA mapping)."""
        return self.run_in_batches(self.mapping, z, labels, batch_size)

    def synthesize(self, ws, batch_size: int = DEFAULT_SAMPLE_BATCH) -> np.ndarray:
        """images = synthesis(ws) as float32 numpy, in batches."""
        out = [keras.ops.convert_to_numpy(self.synthesis(ws[s:s + batch_size], training=False))
               for s in range(0, len(ws), batch_size)]
        return np.concatenate(out).astype(np.float32)

    def sample(self, n: int, labels=None, seed=None, batch_size: int = DEFAULT_SAMPLE_BATCH, *,
               truncation=1.0, mix=None, edits=None):
        """n images in [-1, 1]; `truncation` psi in [0, 1], `mix` (seed_b, from_layer), `edits`
        {direction: amount in standard deviations}: docs/stylegan_contract.md."""
        n = check_count(n)
        labels = check_labels(labels, n, self.num_classes)
        z = latent_normal(n, self.latent_dim, seed)
        return self.generate(z, labels, batch_size=batch_size, truncation=truncation, mix=mix,
                             edits=edits)

    def generate(self, z, labels=None, batch_size: int = DEFAULT_SAMPLE_BATCH, *,
                 truncation=1.0, mix=None, edits=None) -> np.ndarray:
        """Images for given latents: mapping, the controls (style_controls), synthesis."""
        psi = sc.check_truncation(truncation)
        mix = sc.check_mix(mix, self.num_ws)
        edits = sc.check_edits(edits, self.directions)
        z = np.asarray(z, np.float32)
        w = self.map(z, labels, batch_size)
        mix_w = None
        if mix is not None:
            mix_w = self.map(latent_normal(len(z), self.latent_dim, mix[0]), labels, batch_size)
        ws = sc.style_inputs(w, self.num_ws, keras.ops.convert_to_numpy(self.w_avg), psi, mix_w,
                             mix[1] if mix else None, edits, self.directions)
        return self.synthesize(ws, batch_size)

    def find_directions(self, n: int = 10000, k: int = 8, seed: int = 0) -> dict:
        """Principal directions of w (GANSpace) from n mapped latents (balanced labels when
        conditional); stored in `directions` (kept by get_config) and returned."""
        n = check_count(n)
        if n < 2:
            raise ValueError(f"n must be at least 2 to find directions, got {n}")
        labels = (np.arange(n) % self.num_classes).astype(np.int32) if self.num_classes else None
        w = self.map(latent_normal(n, self.latent_dim, seed), labels)
        self.directions = sc.pca_directions(w, k)
        return self.directions
