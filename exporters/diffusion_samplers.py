"""Samplers: weightless reverse processes that turn a denoiser's outputs into images.

A sampler walks a descending list of `timesteps` (a "trailing" subset of the schedule's
0 .. T-1, so it always starts at T - 1) and, at step i, turns the denoiser's output at
(x_t, t = timesteps[i]) into x_{t'} for the next timestep t' (or into x_0 after the last):

    x0, eps = sampler.predict(output, i, x_t)          # clipped x0, eps consistent with it
    x_prev = sampler.step(output, i, x_t, noise)       # noise only where sigmas[i] > 0

`DDIMSampler` (Song et al. 2021, eq. 12) with `eta` (0: deterministic, 1: DDPM's variance);
`DDPMSampler` (Ho et al. 2020): ancestral sampling with the posterior variance
beta~ = (1 - a_prev) / (1 - a) * beta, on all T steps or a respaced subset.

Like the schedules, the math is numpy at import time and takes `xp` (numpy, or keras.ops for
graphs), so the same code runs in a TensorFlow graph, in `model.sample` and in numpy beside
ONNX Runtime. `guide` is classifier-free guidance; the loop that walks a sampler
with a denoiser is `exporters.diffusion_pipeline`.
"""

from __future__ import annotations

import inspect

import numpy as np

from exporters.diffusion_schedules import PREDICTIONS, NoiseSchedule, _gather


def trailing_timesteps(timesteps: int, steps: int) -> np.ndarray:
    """`steps` timesteps from T - 1 down, evenly spaced ("trailing", Lin et al. 2024, table 2):
    round(arange(T, 0, -T / steps)) - 1. steps = T gives T - 1, ..., 0."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not (
        1 <= steps <= timesteps
    ):
        raise ValueError(
            f"steps must be an integer in [1, {timesteps}] (the schedule's timesteps), "
            f"got {steps!r}"
        )
    return (np.round(np.arange(timesteps, 0, -timesteps / steps)) - 1).astype(np.int64)


def guide(conditional, unconditional, guidance_scale):
    """Classifier-free guidance (Ho & Salimans 2022): u + s * (c - u).

    s = 1 is the conditional output, s = 0 the unconditional one, s > 1 pushes further from
    the unconditional. Linear, so it applies to any prediction type (noise, v or x0) alike.
    """
    return unconditional + guidance_scale * (conditional - unconditional)


class Sampler:
    """Shared walk over `timesteps`; subclasses set `sigmas` and the update in `step`."""

    kind = ""

    def __init__(
        self,
        schedule: NoiseSchedule,
        steps: int | None = None,
        prediction: str = "epsilon",
        clip_denoised: bool = True,
    ):
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction={prediction!r} is not one of {sorted(PREDICTIONS)}")
        self.schedule = schedule
        self.prediction = prediction
        self.clip_denoised = bool(clip_denoised)
        self.timesteps = trailing_timesteps(
            schedule.timesteps, schedule.timesteps if steps is None else steps
        )
        self.num_steps = len(self.timesteps)
        self.prev_timesteps = np.append(self.timesteps[1:], -1)
        alphas_cumprod = schedule.alphas_cumprod
        self.alpha_bar = alphas_cumprod[self.timesteps]
        # after the last step we are at x_0: "alpha_bar_{-1}" = 1 (no noise left).
        self.alpha_bar_prev = np.where(
            self.prev_timesteps >= 0, alphas_cumprod[np.maximum(self.prev_timesteps, 0)], 1.0
        )
        self.sigmas = np.zeros(self.num_steps)

    def needs_noise(self, i: int) -> bool:
        """Whether step i adds fresh noise (and so takes a `noise` draw)."""
        return bool(self.sigmas[i] > 0)

    @property
    def stochastic(self) -> bool:
        return bool(np.any(self.sigmas > 0))

    def predict(self, model_output, i, x_t, xp=np):
        """(x0, eps) at step i from the denoiser's output; x0 clipped to [-1, 1] if
        `clip_denoised`, then eps recomputed so both describe the same x_t."""
        alpha_bar = _gather(self.alpha_bar, i, x_t, xp)
        x0, eps = PREDICTIONS[self.prediction][1](model_output, x_t, alpha_bar, xp)
        if self.clip_denoised:
            x0 = xp.clip(x0, -1.0, 1.0)
            eps = (x_t - xp.sqrt(alpha_bar) * x0) / xp.sqrt(1.0 - alpha_bar)
        return x0, eps

    def step(self, model_output, i, x_t, noise=None, xp=np):
        raise NotImplementedError

    def _add_noise_term(self, mean, i, noise, xp):
        """mean + sigma_i * noise. A Python-int step with sigma_i = 0 takes no noise; a step
        with a tensor i (inside a graph loop) adds sigma_i * noise whenever noise is given."""
        if isinstance(i, (int, np.integer)):
            if not self.needs_noise(i):
                return mean
            if noise is None:
                raise ValueError(f"{self.kind} step {i} is stochastic (sigma > 0): pass noise")
        elif noise is None:
            if self.stochastic:
                raise ValueError(f"this {self.kind} sampler is stochastic: pass noise")
            return mean
        return mean + _gather(self.sigmas, i, mean, xp) * noise


class DDIMSampler(Sampler):
    """x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma noise, with
    sigma = eta * sqrt((1 - a_prev) / (1 - a)) * sqrt(1 - a / a_prev)."""

    kind = "ddim"

    def __init__(self, schedule, steps=None, prediction="epsilon", clip_denoised=True, eta=0.0):
        super().__init__(schedule, steps, prediction, clip_denoised)
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {eta!r}")
        self.eta = float(eta)
        a, a_prev = self.alpha_bar, self.alpha_bar_prev
        self.sigmas = self.eta * np.sqrt((1.0 - a_prev) / (1.0 - a) * (1.0 - a / a_prev))
        self.direction = np.sqrt(np.maximum(1.0 - a_prev - self.sigmas**2, 0.0))

    def step(self, model_output, i, x_t, noise=None, xp=np):
        x0, eps = self.predict(model_output, i, x_t, xp)
        mean = (
            xp.sqrt(_gather(self.alpha_bar_prev, i, x_t, xp)) * x0
            + _gather(self.direction, i, x_t, xp) * eps
        )
        return self._add_noise_term(mean, i, noise, xp)


class DDPMSampler(Sampler):
    """Ancestral sampling from the posterior q(x_prev | x_t, x0):
    mean = sqrt(a_prev) beta / (1 - a) x0 + sqrt(alpha) (1 - a_prev) / (1 - a) x_t,
    variance beta~ = (1 - a_prev) / (1 - a) beta, with alpha = a / a_prev and beta = 1 - alpha
    between consecutive (possibly respaced) timesteps."""

    kind = "ddpm"

    def __init__(self, schedule, steps=None, prediction="epsilon", clip_denoised=True):
        super().__init__(schedule, steps, prediction, clip_denoised)
        a, a_prev = self.alpha_bar, self.alpha_bar_prev
        alpha = a / a_prev
        beta = 1.0 - alpha
        self.x0_coefficient = np.sqrt(a_prev) * beta / (1.0 - a)
        self.xt_coefficient = np.sqrt(alpha) * (1.0 - a_prev) / (1.0 - a)
        self.sigmas = np.sqrt(beta * (1.0 - a_prev) / (1.0 - a))

    def step(self, model_output, i, x_t, noise=None, xp=np):
        x0, _ = self.predict(model_output, i, x_t, xp)
        mean = (
            _gather(self.x0_coefficient, i, x_t, xp) * x0
            + _gather(self.xt_coefficient, i, x_t, xp) * x_t
        )
        return self._add_noise_term(mean, i, noise, xp)


SAMPLERS = {"ddim": DDIMSampler, "ddpm": DDPMSampler}


def accepted_options(kind: str) -> list[str]:
    """The options `make_sampler(kind, schedule, **options)` takes."""
    if kind not in SAMPLERS:
        raise ValueError(f"sampler={kind!r} is not one of {sorted(SAMPLERS)}")
    return sorted(set(inspect.signature(SAMPLERS[kind]).parameters) - {"schedule"})


def make_sampler(kind: str, schedule: NoiseSchedule, **options) -> Sampler:
    """`SAMPLERS[kind](schedule, **options)` with a clear error for unknown kinds or options."""
    accepted = accepted_options(kind)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"the {kind} sampler takes {accepted}, not {unknown}")
    return SAMPLERS[kind](schedule, **options)
