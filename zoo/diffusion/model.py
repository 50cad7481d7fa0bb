"""DDPM / DDIM: a U-Net denoiser trained with `fit`, sampled by weightless samplers.

One trained model serves every sampler: `sample(..., sampler="ddim", steps=50, eta=0.0)` (the
default) or `sampler="ddpm"` (ancestral). `generator` is the denoiser with the EMA weights,
[x_t, t [, label]] -> prediction, which is what exporters export; `schedule_config()` gives
what a runtime needs beside it to run the sampling loop itself (e.g. in numpy over ONNX Runtime),
and `sampling_function(steps)` a tf.function of the whole loop (z [, label]) -> images, for a
second SavedModel signature. All three sample with the one loop of `exporters.diffusion_pipeline`.
`model([x_t, t [, label]])` is the EMA denoiser (`call`).
"""

from __future__ import annotations

from typing import ClassVar

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from exporters.diffusion_pipeline import DiffusionPipeline
from exporters.diffusion_samplers import Sampler
from exporters.diffusion_schedules import (
    PREDICTIONS,
    SCHEDULES,
    NoiseSchedule,
    check_loss_weighting,
)
from zoo import networks
from zoo.base import (
    DEFAULT_SAMPLE_BATCH,
    GenerativeModel,
    check_count,
    check_image_shape,
    check_no_style_controls,
    unpack_batch,
)
from zoo.registry import register

# The defaults of options that a short CPU run trains faster with (tools/bench_diffusion_recipe.py
# measured them on Fashion-MNIST).
RECIPE = {"unet": "lean", "min_group_channels": 4, "prediction": "v",
          "loss_weighting": "min_snr", "min_snr_gamma": 5.0, "sampling_steps": 50}


class _FunctionCache:
    """A plain holder for compiled functions: neither Keras nor tf.train tracks it, so the
    model's saved state never includes these traces."""

    def __init__(self):
        self.functions = {}


class DiffusionModel(GenerativeModel):
    """Shared by DDPM and CDDPM. Loss per image: mean over pixels of (denoiser - target)^2 at a
    uniformly drawn t, with target the noise (`prediction="epsilon"`), v (`"v"`) or x_0
    (`"sample"`), times a per-t weight (`loss_weighting`: "none", or "min_snr": Hang et al.
    2023's min(SNR_t, min_snr_gamma) over the prediction's own SNR factor, which stops the
    low-noise steps from dominating and converges in fewer steps). EMA of the weights (`ema_decay`, warmed up as min(decay, (1+n)/(10+n)) after
    n updates) is kept in `ema_denoiser`, which is `generator` and what sampling uses.
    """

    optimizer_roles: ClassVar[dict] = {"optimizer": "denoiser"}
    tracker_names = ("loss",)
    generator_output = "prediction"
    # Read by exporters.export (which never imports zoo). Measured on the default cddpm
    # denoiser (tools/bench_export.py, bench-results/export): LiteRT int8 runs 2.8x float32 at
    # batch 256 but errs by up to 2.0 on its prediction (tolerance 0.2), an error every
    # sampling step adds to: GroupNorm and attention activations do not fit one int8 scale.
    quantizations_not_offered: ClassVar[dict] = {
        "int8": "its int8 denoiser runs 2.8x faster than float32 but errs by up to 2.0 on its "
                "prediction (tolerance 0.2), and every sampling step adds to that error",
    }

    def __init__(
        self,
        image_shape=(28, 28, 1),
        num_classes: int = 0,
        *,
        base_filters: int = 32,
        channel_multipliers=(1, 2, 2),
        blocks_per_level: int = 1,
        attention: bool = False,
        unet: str = RECIPE["unet"],
        min_group_channels: int = RECIPE["min_group_channels"],
        schedule: str = "cosine",
        timesteps: int = 1000,
        schedule_params=None,
        prediction: str = RECIPE["prediction"],
        loss_weighting: str = RECIPE["loss_weighting"],
        min_snr_gamma: float = RECIPE["min_snr_gamma"],
        ema_decay: float = 0.999,
        label_dropout: float = 0.1,
        guidance_scale: float = 1.0,
        sampler: str = "ddim",
        sampling_steps: int = RECIPE["sampling_steps"],
        eta: float = 0.0,
        clip_denoised: bool = True,
        latent_dim=None,
        seed=None,
        **kwargs,
    ):
        pixels = int(np.prod(check_image_shape(image_shape)))
        if latent_dim is not None and latent_dim != pixels:
            raise ValueError(
                f"a diffusion model's latent is x_T, one value per pixel: latent_dim is "
                f"{pixels} for image_shape={image_shape!r}, got latent_dim={latent_dim!r}"
            )
        super().__init__(
            image_shape=image_shape, latent_dim=pixels, num_classes=num_classes, seed=seed,
            **kwargs,
        )
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule={schedule!r} is not one of {sorted(SCHEDULES)}")
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction={prediction!r} is not one of {sorted(PREDICTIONS)}")
        check_loss_weighting(loss_weighting, min_snr_gamma)
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay!r}")
        if not 0.0 <= label_dropout <= 1.0:
            raise ValueError(f"label_dropout must be in [0, 1], got {label_dropout!r}")
        self.base_filters = int(base_filters)
        self.channel_multipliers = tuple(int(m) for m in channel_multipliers)
        self.blocks_per_level = int(blocks_per_level)
        self.attention = bool(attention)
        self.unet = networks.check_unet_layout(unet)
        self.min_group_channels = networks.check_min_group_channels(min_group_channels)
        self.loss_weighting = loss_weighting
        self.min_snr_gamma = float(min_snr_gamma)
        self.noise_schedule = NoiseSchedule(schedule, timesteps, **dict(schedule_params or {}))
        self.schedule = schedule
        self.timesteps = self.noise_schedule.timesteps
        self.schedule_params = dict(schedule_params or {})
        self.prediction = prediction
        self.ema_decay = float(ema_decay)
        self.label_dropout = float(label_dropout)
        self.guidance_scale = float(guidance_scale)
        self.sampler = sampler
        self.sampling_steps = sampling_steps
        self.eta = float(eta)
        self.clip_denoised = bool(clip_denoised)
        _ = self.pipeline  # a clear error now for a bad sampler, steps, eta or guidance_scale

        self.denoiser = self.build_denoiser("denoiser")
        self.ema_denoiser = self.build_denoiser("ema_denoiser")
        self.ema_denoiser.trainable = False
        self.ema_denoiser.set_weights(self.denoiser.get_weights())
        self._cache = _FunctionCache()
        self.built = True

    def build_denoiser(self, name):
        return networks.unet_denoiser(
            self.image_shape, num_classes=self.num_classes, base_filters=self.base_filters,
            channel_multipliers=self.channel_multipliers, blocks_per_level=self.blocks_per_level,
            attention=self.attention, name=name, unet=self.unet,
            min_group_channels=self.min_group_channels,
        )

    @property
    def generator(self):
        """The EMA denoiser: what sampling uses and exporters export."""
        return self.ema_denoiser

    def call(self, inputs, training=False):
        """`model([x_t, t])` (or `[x_t, t, label]` for CDDPM): the EMA denoiser's prediction
        (noise, v or x_0 per `prediction`), exactly `model.generator(inputs)`. x_t is
        (n, H, W, C) float32, t (n,) float32 timesteps in [0, timesteps), label (n,) int32 in
        [0, num_classes] (num_classes: no label). Training runs `train_step` on `denoiser`,
        never this; the EMA weights have no training mode, so `training` is ignored."""
        return self.generator(inputs, training=False)

    @property
    def null_label(self):
        """The label index meaning "no label" (classifier-free guidance), or None."""
        return self.num_classes if self.num_classes else None

    def get_config(self):
        config = super().get_config()
        config.update(
            base_filters=self.base_filters,
            channel_multipliers=list(self.channel_multipliers),
            blocks_per_level=self.blocks_per_level,
            attention=self.attention,
            unet=self.unet,
            min_group_channels=self.min_group_channels,
            schedule=self.schedule,
            timesteps=self.timesteps,
            schedule_params=dict(self.schedule_params),
            prediction=self.prediction,
            loss_weighting=self.loss_weighting,
            min_snr_gamma=self.min_snr_gamma,
            ema_decay=self.ema_decay,
            sampler=self.sampler,
            sampling_steps=self.sampling_steps,
            eta=self.eta,
            clip_denoised=self.clip_denoised,
        )
        return config

    @classmethod
    def from_config(cls, config):
        # Saved before these keys existed: those U-Nets had the classic layout and one-channel
        # norm groups at 8 channels, and trained unweighted.
        legacy = {"unet": "classic", "min_group_channels": 1, "loss_weighting": "none",
                  "min_snr_gamma": 5.0}
        return super().from_config({**legacy, **config})

    def default_optimizer(self, role):
        return keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=1e-4)

    def schedule_config(self) -> dict:
        """Json-able description of the schedule and sampling, for an exporter's manifest.

        A runtime that has the exported denoiser and this dict can sample: x_T and then the
        noise of each stochastic step are numpy `default_rng(seed).standard_normal((n,
        latent_dim), float32)` draws in that order, reshaped to images; the sampler visits
        "trailing" timesteps round(arange(T, 0, -T / steps)) - 1; the denoiser's `t` input is
        the timestep as float32; guidance runs the denoiser on `null_label` as well and mixes
        u + guidance_scale * (c - u); x_0 predictions are clipped to [-1, 1] if clip_denoised.
        """
        schedule = self.noise_schedule
        return {
            **schedule.config(),
            "betas": schedule.betas.tolist(),
            "alphas_cumprod": schedule.alphas_cumprod.tolist(),
            "prediction": self.prediction,
            "clip_denoised": self.clip_denoised,
            "timestep_spacing": "trailing",
            "timestep_input": {"name": "t", "dtype": "float32", "range": [0, schedule.timesteps - 1]},
            "sampler": self.sampler,
            "steps": self.sampling_steps,
            "eta": self.eta,
            "num_classes": self.num_classes,
            "null_label": self.null_label,
            "guidance_scale": self.guidance_scale if self.num_classes else None,
            "inputs": ["x_t", "t", "label"] if self.num_classes else ["x_t", "t"],
        }

    def make_sampler(self, steps=None, eta=None, sampler=None) -> Sampler:
        """The model's sampler, with its defaults (`sampler`, `sampling_steps`, `eta`) for
        whatever is None. eta is a DDIM option; the DDPM sampler takes none."""
        return self.pipeline.make_sampler(steps, eta, sampler)

    # ---- training -----------------------------------------------------------------------
    def diffusion_loss(self, images, labels, training):
        """Per-image mean squared error of the denoiser at a random t (and label dropout)."""
        batch = tf.shape(images)[0]
        schedule = self.noise_schedule
        t = self.replica_draw(
            lambda shape: keras.random.randint(
                shape, 0, schedule.timesteps, seed=self.seed_generator, dtype="int32"
            ),
            batch,
        )
        noise = self.replica_noise(batch, self.image_shape)
        if self.num_classes and training and self.label_dropout > 0:
            dropped = self.replica_uniform(batch) < self.label_dropout
            labels = tf.where(dropped, tf.fill(tf.shape(labels), self.num_classes), labels)
        x_t = schedule.add_noise(images, noise, t, xp=ops)
        target = schedule.prediction_target(self.prediction, images, noise, t, xp=ops)
        inputs = [x_t, ops.cast(t, "float32")] + ([labels] if self.num_classes else [])
        output = ops.cast(self.denoiser(inputs, training=training), "float32")
        error = ops.mean(ops.square(output - target), axis=(1, 2, 3))
        if self.loss_weighting == "none":
            return error
        weights = schedule.loss_weights(
            self.loss_weighting, self.prediction, t, gamma=self.min_snr_gamma, xp=ops
        )
        return error * ops.reshape(weights, (-1,))

    def train_step(self, data):
        images, labels = unpack_batch(data)
        images = tf.cast(images, tf.float32)
        labels = self.batch_labels(labels)

        def loss_fn():
            per_example = self.diffusion_loss(images, labels, training=True)
            return self.average_over_global_batch(per_example), per_example

        _, per_example = self.minimize(
            self.optimizer, loss_fn, self.denoiser.trainable_variables
        )
        self.update_ema()
        return self.update_trackers(loss=per_example)

    def test_step(self, data):
        images, labels = unpack_batch(data)
        per_example = self.diffusion_loss(
            tf.cast(images, tf.float32), self.batch_labels(labels), training=False
        )
        return self.update_trackers(loss=per_example)

    def ema_decay_now(self):
        """min(ema_decay, (1 + n) / (10 + n)) after n optimizer updates."""
        n = ops.cast(self.optimizer.iterations, "float32")
        return ops.minimum(self.ema_decay, (1.0 + n) / (10.0 + n))

    def update_ema(self):
        """ema <- decay * ema + (1 - decay) * weights, on every replica's copy alike."""
        decay = self.ema_decay_now()
        pairs = [
            (ema.value, weight.value)
            for ema, weight in zip(self.ema_denoiser.weights, self.denoiser.weights)
        ]

        def assign(ema, weight, decay):
            return ema.assign(decay * ema + (1.0 - decay) * tf.cast(weight, ema.dtype))

        def update_all(strategy, decay):
            for ema, weight in pairs:
                strategy.extended.update(ema, assign, args=(weight, decay))

        tf.distribute.get_replica_context().merge_call(update_all, args=(decay,))

    # ---- sampling -----------------------------------------------------------------------
    def example_generator_inputs(self, n: int, seed=0):
        """[x_t, t (float32 timesteps in [0, T)) [, label in [0, num_classes] incl. null]]."""
        n = check_count(n)
        rng = np.random.default_rng(seed)
        inputs = [
            rng.standard_normal((n, *self.image_shape), dtype=np.float32),
            rng.integers(0, self.noise_schedule.timesteps, n).astype(np.float32),
        ]
        if self.num_classes:
            inputs.append((np.arange(n) % (self.num_classes + 1)).astype(np.int32))
        return inputs

    @property
    def pipeline(self) -> DiffusionPipeline:
        """The one sampling loop (`exporters.diffusion_pipeline`) with this model's schedule and
        current sampling defaults: what `sample`, `sampling_function` and the runtime run."""
        return DiffusionPipeline(
            self.noise_schedule,
            self.image_shape,
            num_classes=self.num_classes,
            prediction=self.prediction,
            clip_denoised=self.clip_denoised,
            sampler=self.sampler,
            steps=self.sampling_steps,
            eta=self.eta,
            guidance_scale=self.guidance_scale if self.num_classes else None,
        )

    def _prediction_function(self):
        """The EMA denoiser as a tf.function with a dynamic batch (one trace)."""
        function = self._cache.functions.get("predict")
        if function is None:
            specs = [
                tf.TensorSpec((None, *self.image_shape), tf.float32),
                tf.TensorSpec((None,), tf.float32),
            ] + ([tf.TensorSpec((None,), tf.int32)] if self.num_classes else [])
            generator = self.generator

            @tf.function(input_signature=specs)
            def predict(*inputs):
                return tf.cast(generator(list(inputs), training=False), tf.float32)

            function = self._cache.functions["predict"] = predict
        return function

    def _numpy_denoise_raw(self):
        """The pipeline's `denoise_raw(x_t, t, labels)` in numpy over the compiled denoiser."""
        predict = self._prediction_function()

        def denoise_raw(x_t, t, labels):
            inputs = [x_t, t] + ([labels] if labels is not None else [])
            return predict(*inputs).numpy()

        return denoise_raw

    def denoise(self, x_t, t, labels=None, guidance_scale=None, batch_size=DEFAULT_SAMPLE_BATCH):
        """EMA denoiser output for x_t at timestep(s) t (numpy), with classifier-free guidance
        `guidance_scale` for a conditional model (None: the model's `guidance_scale`)."""
        return self.pipeline.denoise(
            self._numpy_denoise_raw(), x_t, t, labels, guidance_scale, batch_size
        )

    def denoise_raw(self, x_t, t, labels=None, batch_size=DEFAULT_SAMPLE_BATCH):
        """The EMA denoiser on given inputs in batches; labels may include the null label."""
        return self.pipeline.denoise_unguided(
            self._numpy_denoise_raw(), x_t, t, labels, batch_size
        )

    def sample(
        self,
        n: int,
        labels=None,
        seed=None,
        batch_size: int = DEFAULT_SAMPLE_BATCH,
        steps=None,
        eta=None,
        guidance_scale=None,
        sampler=None,
        *,
        truncation=1.0,
        mix=None,
        edits=None,
    ):
        """n images float32 NHWC in [-1, 1] from the EMA denoiser; the same seed, the same
        images (the runtime's too). Defaults: the model's `sampler` ("ddim"), `sampling_steps`,
        `eta` and, for a conditional model, `guidance_scale`. The style-based families'
        controls (truncation, mix, edits) are a clear error unless neutral, as in the runtime."""
        check_no_style_controls(self.family, truncation, mix, edits)
        return self.pipeline.sample(
            self._numpy_denoise_raw(), n, labels, seed, batch_size=batch_size, steps=steps,
            eta=eta, guidance_scale=guidance_scale, sampler=sampler,
        )

    def generate(
        self,
        z,
        labels=None,
        batch_size: int = DEFAULT_SAMPLE_BATCH,
        steps=None,
        eta=None,
        guidance_scale=None,
        sampler=None,
        rng=None,
        *,
        truncation=1.0,
        mix=None,
        edits=None,
    ) -> np.ndarray:
        """Run the sampler from x_T = z ((n, latent_dim) or (n, H, W, C)); stochastic steps
        draw their noise from `rng` (a numpy Generator) in order."""
        check_no_style_controls(self.family, truncation, mix, edits)
        return self.pipeline.generate(
            self._numpy_denoise_raw(), z, labels, rng=rng, batch_size=batch_size, steps=steps,
            eta=eta, guidance_scale=guidance_scale, sampler=sampler,
        )

    def sampling_function(self, steps=None, eta=None, guidance_scale=None, sampler=None, seed=0):
        """A tf.function (z [, label]) -> images running the whole sampling loop in the graph
        (the pipeline's loop under a tf.while_loop), input z (batch, H, W, C) = x_T, for a
        SavedModel signature. It captures the EMA denoiser's variables: save it beside
        `generator`. Stochastic samplers draw stateless noise from (seed, step)."""
        pipeline = self.pipeline
        pipeline.make_sampler(steps, eta, sampler)  # bad options fail here, not when traced
        pipeline.check_guidance(guidance_scale)
        generator = self.generator
        specs = [tf.TensorSpec((None, *self.image_shape), tf.float32, name="z")]
        if self.num_classes:
            specs.append(tf.TensorSpec((None,), tf.int32, name="label"))

        def denoise_raw(x_t, t, labels):
            inputs = [x_t, t] + ([labels] if labels is not None else [])
            return tf.cast(generator(inputs, training=False), tf.float32)

        def draw_noise(i, like):
            return tf.random.stateless_normal(tf.shape(like), seed=tf.stack([seed, i]))

        def loop(z, label):
            return pipeline.generate(
                denoise_raw, z, label, steps=steps, eta=eta, guidance_scale=guidance_scale,
                sampler=sampler, draw_noise=draw_noise, xp=ops, driver=_while_loop,
            )

        if self.num_classes:
            return tf.function(lambda z, label: loop(z, label), input_signature=specs)
        return tf.function(lambda z: loop(z, None), input_signature=specs)


def _while_loop(num_steps, body, x):
    """The graph driver of the pipeline's loop: x = body(i, x) for i < num_steps, in a
    tf.while_loop (one trace of the body, whatever the number of steps)."""
    _, x = tf.while_loop(
        lambda i, x: i < num_steps, lambda i, x: (i + 1, body(i, x)), (tf.constant(0), x)
    )
    return x


@register("ddpm")
@keras.saving.register_keras_serializable(package="zoo")
class DDPM(DiffusionModel):
    """Unconditional denoising diffusion (Ho et al. 2020), sampled with DDIM or DDPM."""

    def __init__(
        self,
        image_shape=(28, 28, 1),
        *,
        base_filters: int = 32,
        channel_multipliers=(1, 2, 2),
        blocks_per_level: int = 1,
        attention: bool = False,
        unet: str = RECIPE["unet"],
        min_group_channels: int = RECIPE["min_group_channels"],
        schedule: str = "cosine",
        timesteps: int = 1000,
        schedule_params=None,
        prediction: str = RECIPE["prediction"],
        loss_weighting: str = RECIPE["loss_weighting"],
        min_snr_gamma: float = RECIPE["min_snr_gamma"],
        ema_decay: float = 0.999,
        sampler: str = "ddim",
        sampling_steps: int = RECIPE["sampling_steps"],
        eta: float = 0.0,
        clip_denoised: bool = True,
        latent_dim=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            image_shape, 0, base_filters=base_filters, channel_multipliers=channel_multipliers,
            blocks_per_level=blocks_per_level, attention=attention, unet=unet,
            min_group_channels=min_group_channels, schedule=schedule, timesteps=timesteps,
            schedule_params=schedule_params, prediction=prediction,
            loss_weighting=loss_weighting, min_snr_gamma=min_snr_gamma,
            ema_decay=ema_decay, label_dropout=0.0, guidance_scale=1.0, sampler=sampler,
            sampling_steps=sampling_steps, eta=eta, clip_denoised=clip_denoised,
            latent_dim=latent_dim, seed=seed, **kwargs,
        )


@register("cddpm")
@keras.saving.register_keras_serializable(package="zoo")
class CDDPM(DiffusionModel):
    """Class-conditional diffusion with classifier-free guidance (Ho & Salimans 2022): labels
    are replaced by the null label with probability `label_dropout` in training, and sampling
    mixes conditional and unconditional outputs with `guidance_scale` (1: no guidance)."""

    conditional = True

    def __init__(
        self,
        image_shape=(28, 28, 1),
        num_classes: int = 10,
        *,
        base_filters: int = 32,
        channel_multipliers=(1, 2, 2),
        blocks_per_level: int = 1,
        attention: bool = False,
        unet: str = RECIPE["unet"],
        min_group_channels: int = RECIPE["min_group_channels"],
        schedule: str = "cosine",
        timesteps: int = 1000,
        schedule_params=None,
        prediction: str = RECIPE["prediction"],
        loss_weighting: str = RECIPE["loss_weighting"],
        min_snr_gamma: float = RECIPE["min_snr_gamma"],
        ema_decay: float = 0.999,
        label_dropout: float = 0.1,
        guidance_scale: float = 2.0,
        sampler: str = "ddim",
        sampling_steps: int = RECIPE["sampling_steps"],
        eta: float = 0.0,
        clip_denoised: bool = True,
        latent_dim=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            image_shape, num_classes, base_filters=base_filters,
            channel_multipliers=channel_multipliers, blocks_per_level=blocks_per_level,
            attention=attention, unet=unet, min_group_channels=min_group_channels,
            schedule=schedule, timesteps=timesteps, schedule_params=schedule_params,
            prediction=prediction, loss_weighting=loss_weighting, min_snr_gamma=min_snr_gamma,
            ema_decay=ema_decay,
            label_dropout=label_dropout, guidance_scale=guidance_scale, sampler=sampler,
            sampling_steps=sampling_steps, eta=eta, clip_denoised=clip_denoised,
            latent_dim=latent_dim, seed=seed, **kwargs,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            label_dropout=self.label_dropout,
            guidance_scale=self.guidance_scale,
        )
        return config
