"""The one diffusion sampling loop: a (denoiser, sampler) pair walked from x_T to images.

Like a diffusers pipeline, it runs over a plain function, `denoise_raw(x_t, t, labels) -> output`
(x_t (n, H, W, C) float32, t (n,) float32 timesteps, labels (n,) int32 or None; the label
`num_classes` means "no label"), so the Keras model, the ONNX / LiteRT runtime and a SavedModel
signature all sample with this code and give the same images for the same seed:

- defaults and checks: sampler, steps, eta (a DDIM option) and guidance_scale, resolved from
  the model's defaults and checked with `exporters.sampling`'s rules;
- classifier-free guidance: one denoiser call on [x; x] with [labels; null label], then `guide`;
- batching: at most `batch_size` images per denoiser call (2 x that many rows when guided);
- noise: x_T = default_rng(seed).standard_normal((n, H*W*C), float32) reshaped to images, then
  one such draw from the same generator for each step with sigma > 0, in order;
- the step body, written once (`run`): denoise at the step's timestep, draw noise where the
  sampler needs it, `sampler.step`; the last x is clipped to [-1, 1].

numpy only at import. The array code takes `xp` (numpy, or keras.ops inside a graph) and the
loop takes a driver (`python_loop`, or a tf.while_loop from the caller) and a noise source, so a
graph runs the same body and guidance with stateless noise.
"""

from __future__ import annotations

import numpy as np

from exporters.diffusion_samplers import SAMPLERS, Sampler, accepted_options, guide, make_sampler
from exporters.diffusion_schedules import PREDICTIONS, NoiseSchedule
from exporters.sampling import (
    check_count,
    check_labels,
    check_number,
    check_seed,
    check_steps,
    short_repr,
)


def python_loop(num_steps: int, body, x):
    """The numpy driver: x = body(i, x) for i = 0 .. num_steps - 1 with Python-int i."""
    for i in range(num_steps):
        x = body(i, x)
    return x


def numpy_noise(rng: np.random.Generator, latent_dim: int):
    """`draw_noise(i, like)` for `run`: the next (n, latent_dim) float32 standard-normal draw
    from `rng`, reshaped like `like` (the draw the runtime and `model.sample` both make)."""

    def draw(i, like):
        n = like.shape[0]
        return rng.standard_normal((n, latent_dim), dtype=np.float32).reshape(like.shape)

    return draw


def needs_noise(sampler: Sampler, i) -> bool:
    """Whether step i takes a noise draw: sigma_i > 0 for a Python-int i; inside a graph loop
    (tensor i) every step of a stochastic sampler does (sigma_i = 0 then scales it away)."""
    if isinstance(i, (int, np.integer)):
        return sampler.needs_noise(int(i))
    return sampler.stochastic


def timestep(sampler: Sampler, i, xp=np):
    """The float32 timestep the denoiser gets at step i (a tensor for a tensor i)."""
    if isinstance(i, (int, np.integer)):
        return np.float32(sampler.timesteps[i])
    return xp.take(xp.convert_to_tensor(sampler.timesteps.astype(np.float32)), i)


def run(sampler: Sampler, denoise, x, draw_noise=None, xp=np, driver=python_loop):
    """The reverse process from x = x_T: at each step i, `denoise(x_t, t)` (t: the step's
    timestep for every image, float32 (n,)), then `draw_noise(i, x_t)` where the step is
    stochastic, then `sampler.step`. Returns x_0 clipped to [-1, 1]."""

    def body(i, x):
        output = denoise(x, xp.full_like(x[:, 0, 0, 0], timestep(sampler, i, xp)))
        noise = draw_noise(i, x) if draw_noise is not None and needs_noise(sampler, i) else None
        return sampler.step(output, i, x, noise, xp)

    return xp.clip(driver(sampler.num_steps, body, x), -1.0, 1.0)


class DiffusionPipeline:
    """Sampling for one denoiser: its schedule, prediction type and sampling defaults.

    `sample(denoise_raw, n, labels, seed, ...)` is what `model.sample` and the runtime's
    `generate` call; `generate` starts from a given x_T; `denoise` is one guided denoiser call.
    """

    def __init__(
        self,
        schedule: NoiseSchedule,
        image_shape,
        *,
        num_classes: int = 0,
        prediction: str = "epsilon",
        clip_denoised: bool = True,
        sampler: str = "ddim",
        steps: int = 50,
        eta: float = 0.0,
        guidance_scale: float | None = None,
    ):
        if not isinstance(schedule, NoiseSchedule):
            raise TypeError(f"schedule must be a NoiseSchedule, got {short_repr(schedule)}")
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction={prediction!r} is not one of {sorted(PREDICTIONS)}")
        self.schedule = schedule
        self.image_shape = tuple(int(d) for d in image_shape)
        self.latent_dim = int(np.prod(self.image_shape))
        self.num_classes = int(num_classes)
        self.null_label = self.num_classes if self.num_classes else None
        self.prediction = prediction
        self.clip_denoised = bool(clip_denoised)
        self.sampler = sampler
        self.steps = steps
        self.eta = check_number(eta, "eta", 0, 1)
        self.guidance_scale = 1.0 if guidance_scale is None else self._scale(guidance_scale)
        self.make_sampler()  # the defaults must make a sampler: a clear error now, not later

    @classmethod
    def from_schedule_config(cls, config: dict, image_shape, num_classes: int = 0):
        """The pipeline a manifest's "schedule" (`model.schedule_config()`) describes."""
        return cls(
            NoiseSchedule.from_config(config),
            image_shape,
            num_classes=num_classes,
            prediction=config["prediction"],
            clip_denoised=bool(config["clip_denoised"]),
            sampler=config.get("sampler", "ddim"),
            steps=int(config.get("steps", 50)),
            eta=float(config.get("eta", 0.0)),
            guidance_scale=config.get("guidance_scale") if num_classes else None,
        )

    # ---- defaults and checks -----------------------------------------------------------------
    def make_sampler(self, steps=None, eta=None, sampler=None) -> Sampler:
        """The sampler for these options, None meaning the default; each value checked."""
        kind = self.sampler if sampler is None else sampler
        if not isinstance(kind, str) or kind not in SAMPLERS:
            raise ValueError(f"sampler must be one of {sorted(SAMPLERS)}, got {short_repr(kind)}")
        options = {
            "steps": check_steps(self.steps if steps is None else steps, self.schedule.timesteps),
            "prediction": self.prediction,
            "clip_denoised": self.clip_denoised,
        }
        takes_eta = "eta" in accepted_options(kind)
        if eta is not None and not takes_eta:
            raise ValueError(
                f"eta={short_repr(eta)} is a DDIM option; the {kind} sampler takes none"
            )
        if takes_eta:
            options["eta"] = check_number(self.eta if eta is None else eta, "eta", 0, 1)
        return make_sampler(kind, self.schedule, **options)

    def check_guidance(self, guidance_scale) -> float:
        """The guidance scale to use (None: the default; 1.0 for an unconditional model)."""
        return self.guidance_scale if guidance_scale is None else self._scale(guidance_scale)

    def _scale(self, guidance_scale) -> float:
        scale = check_number(guidance_scale, "guidance_scale")
        if not self.num_classes and scale != 1.0:
            raise ValueError(
                f"guidance_scale={guidance_scale!r} needs a class-conditional model "
                "(this one is unconditional)"
            )
        return scale

    def check_batch_size(self, batch_size, max_images=None):
        return None if batch_size is None else check_count(batch_size, max_images, "batch_size")

    # ---- the denoiser --------------------------------------------------------------------------
    def denoiser(self, denoise_raw, labels, guidance_scale: float, batch_size=None, xp=np):
        """`denoise(x_t, t) -> output` for fixed labels: guided as one [x; x] call with
        [labels; null label] when guidance_scale != 1, in calls of at most batch_size images
        (numpy; None: one call, which is what a graph uses)."""
        guided = labels is not None and guidance_scale != 1.0
        scale = np.float32(guidance_scale)

        def one_call(x, t, labels):
            if not guided:
                return denoise_raw(x, t, labels)
            both = denoise_raw(
                xp.concatenate([x, x], axis=0),
                xp.concatenate([t, t], axis=0),
                xp.concatenate([labels, xp.full_like(labels, self.null_label)], axis=0),
            )
            conditional, unconditional = xp.split(both, 2, axis=0)
            return guide(conditional, unconditional, scale)

        def denoise(x, t):
            if batch_size is None or len(x) <= batch_size:
                return one_call(x, t, labels)
            chunks = [slice(start, start + batch_size) for start in range(0, len(x), batch_size)]
            return np.concatenate([
                one_call(x[c], t[c], None if labels is None else labels[c]) for c in chunks
            ])

        return denoise

    def denoise_unguided(self, denoise_raw, x_t, t, labels=None, batch_size=None):
        """`denoise_raw` on given inputs (numpy) in calls of at most batch_size images; t is a
        scalar or one per image, and labels may hold the null label (no label checks)."""
        x_t = np.asarray(x_t, np.float32)
        t = np.broadcast_to(np.asarray(t, np.float32), (len(x_t),))
        labels = None if labels is None else np.asarray(labels, np.int32)
        return self.denoiser(denoise_raw, labels, 1.0, batch_size)(x_t, t)

    def denoise(self, denoise_raw, x_t, t, labels=None, guidance_scale=None, batch_size=None):
        """One guided denoiser output (numpy) for x_t at timestep(s) t (a scalar or one per image)."""
        x_t = np.asarray(x_t, np.float32)
        n = len(x_t)
        t = np.broadcast_to(np.asarray(t, np.float32), (n,))
        labels = check_labels(labels, n, self.num_classes)
        scale = self.check_guidance(guidance_scale)
        batch_size = self.check_batch_size(batch_size)
        return self.denoiser(denoise_raw, labels, scale, batch_size)(x_t, t)

    # ---- sampling ------------------------------------------------------------------------------
    def generate(
        self,
        denoise_raw,
        z,
        labels=None,
        *,
        rng=None,
        batch_size=None,
        steps=None,
        eta=None,
        guidance_scale=None,
        sampler=None,
        draw_noise=None,
        xp=np,
        driver=python_loop,
    ):
        """Images in [-1, 1] from x_T = z ((n, latent_dim) or (n, H, W, C)). Stochastic steps
        take their noise from `rng` (a numpy Generator, in order) or from `draw_noise(i, x)`.
        With xp=numpy (the default) inputs are checked and the result is float32 numpy; a graph
        passes xp=keras.ops, a tf.while_loop `driver`, stateless `draw_noise` and tensors."""
        walk = self.make_sampler(steps, eta, sampler)
        scale = self.check_guidance(guidance_scale)
        if xp is np:
            z = np.asarray(z, np.float32)
            labels = check_labels(labels, len(z), self.num_classes)
            batch_size = self.check_batch_size(batch_size)
            if draw_noise is None:
                rng = np.random.default_rng() if rng is None else rng
                draw_noise = numpy_noise(rng, self.latent_dim)
        x = xp.reshape(z, (-1, *self.image_shape))
        denoise = self.denoiser(denoise_raw, labels, scale, batch_size, xp)
        images = run(walk, denoise, x, draw_noise, xp, driver)
        return images.astype(np.float32) if xp is np else images

    def sample(
        self,
        denoise_raw,
        n,
        labels=None,
        seed=None,
        *,
        batch_size=None,
        steps=None,
        eta=None,
        guidance_scale=None,
        sampler=None,
        max_images=None,
    ) -> np.ndarray:
        """n float32 images in [-1, 1]: x_T and then each stochastic step's noise drawn in that
        order from default_rng(seed), so the same seed gives the same images everywhere."""
        n = check_count(n, max_images)
        labels = check_labels(labels, n, self.num_classes)
        seed = check_seed(seed)
        batch_size = self.check_batch_size(batch_size, max_images)
        self.make_sampler(steps, eta, sampler)  # bad options fail before any work
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((n, self.latent_dim), dtype=np.float32)
        return self.generate(
            denoise_raw, z, labels, rng=rng, batch_size=batch_size, steps=steps, eta=eta,
            guidance_scale=guidance_scale, sampler=sampler,
        )
