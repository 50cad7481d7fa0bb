"""Noise schedules: weightless descriptions of the forward process q(x_t | x_0).

A `NoiseSchedule` holds betas_t for t = 0 .. T-1 and what follows from them (alphas, the
cumulative products alpha_bar_t). `add_noise` makes training inputs
x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise; `prediction_target` gives what the
denoiser learns (the noise, or v = sqrt(alpha_bar_t) noise - sqrt(1 - alpha_bar_t) x_0).

Everything here is numpy at import time (no TensorFlow, no Keras): functions that touch arrays
take `xp`, the array namespace: `numpy` (float64 tables) or `keras.ops` (float32 tensors, for
train steps and graphs). `config()` is json-able and `NoiseSchedule.from_config` rebuilds the same
schedule, so an exported denoiser's manifest carries its schedule.
"""

from __future__ import annotations

import inspect
import math

import numpy as np


def linear_betas(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """Ho et al. 2020: betas evenly spaced from beta_start to beta_end (their T = 1000 values).

    For T other than 1000 the ends are rescaled by 1000 / T (as in improved DDPM), so the
    total noise added stays comparable.
    """
    scale = 1000.0 / timesteps
    return np.linspace(beta_start * scale, beta_end * scale, timesteps, dtype=np.float64)


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal 2021: alpha_bar(t) = f(t) / f(0), f(t) = cos^2(((t / T) + s) / (1 + s)
    * pi / 2); beta_t = min(1 - alpha_bar(t + 1) / alpha_bar(t), max_beta)."""

    def f(t):
        return np.cos((t / timesteps + s) / (1.0 + s) * math.pi / 2.0) ** 2

    steps = np.arange(timesteps + 1, dtype=np.float64)
    alpha_bar = f(steps) / f(0.0)
    return np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], max_beta)


# kind -> betas(timesteps, **params); the defaults of each are its documented params.
SCHEDULES = {"linear": linear_betas, "cosine": cosine_betas}


def _default_params(kind: str) -> dict:
    signature = inspect.signature(SCHEDULES[kind])
    return {
        name: p.default for name, p in signature.parameters.items() if name != "timesteps"
    }


def _gather(table: np.ndarray, t, like, xp):
    """table[t] broadcastable against `like` (batch, ...): per-example values for a batch of t."""
    if xp is np:
        values = np.asarray(table)[np.asarray(t, dtype=np.int64)]
        values = values.astype(np.result_type(np.asarray(like).dtype, np.float32))
    else:
        values = xp.take(
            xp.convert_to_tensor(np.asarray(table, np.float32)), xp.cast(t, "int32")
        )
        values = xp.cast(values, like.dtype)
    rank = len(like.shape)
    return xp.reshape(values, (-1,) + (1,) * (rank - 1))


class NoiseSchedule:
    """The forward process of a DDPM with `timesteps` steps; weightless, immutable."""

    def __init__(self, kind: str = "cosine", timesteps: int = 1000, **params):
        if kind not in SCHEDULES:
            raise ValueError(f"schedule kind={kind!r} is not one of {sorted(SCHEDULES)}")
        if isinstance(timesteps, bool) or not isinstance(timesteps, (int, np.integer)) or (
            timesteps < 2
        ):
            raise ValueError(f"timesteps must be an integer >= 2, got {timesteps!r}")
        known = _default_params(kind)
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(
                f"{kind} schedule got unknown parameters {unknown}; it takes {sorted(known)}"
            )
        self.kind = kind
        self.timesteps = int(timesteps)
        self.params = {**known, **{k: float(v) for k, v in params.items()}}
        betas = SCHEDULES[kind](self.timesteps, **self.params)
        if not (np.all(betas > 0) and np.all(betas < 1)):
            raise ValueError(
                f"{kind} schedule with {self.params} and {self.timesteps} steps gives betas "
                f"outside (0, 1): min {betas.min()!r}, max {betas.max()!r}"
            )
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(self.alphas)

    def config(self) -> dict:
        """Json-able: {"kind", "timesteps", "params"}; `from_config` rebuilds this schedule."""
        return {"kind": self.kind, "timesteps": self.timesteps, "params": dict(self.params)}

    @classmethod
    def from_config(cls, config: dict) -> NoiseSchedule:
        return cls(config["kind"], config["timesteps"], **config.get("params", {}))

    def __repr__(self):
        return f"NoiseSchedule({self.kind!r}, timesteps={self.timesteps}, **{self.params})"

    # ---- training ------------------------------------------------------------------------
    def add_noise(self, x0, noise, t, xp=np):
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise, per example's t."""
        alpha_bar = _gather(self.alphas_cumprod, t, x0, xp)
        return xp.sqrt(alpha_bar) * x0 + xp.sqrt(1.0 - alpha_bar) * noise

    def velocity(self, x0, noise, t, xp=np):
        """v = sqrt(alpha_bar_t) noise - sqrt(1 - alpha_bar_t) x_0 (Salimans & Ho 2022)."""
        alpha_bar = _gather(self.alphas_cumprod, t, x0, xp)
        return xp.sqrt(alpha_bar) * noise - xp.sqrt(1.0 - alpha_bar) * x0

    def snr(self, t, xp=np):
        """SNR_t = alpha_bar_t / (1 - alpha_bar_t), per example's t (float64 for numpy)."""
        table = self.alphas_cumprod / (1.0 - self.alphas_cumprod)
        if xp is np:
            return table[np.asarray(t, dtype=np.int64)]
        return xp.take(xp.convert_to_tensor(table.astype(np.float32)), xp.cast(t, "int32"))

    def loss_weights(self, weighting: str, prediction: str, t, gamma: float = 5.0, xp=np):
        """Per-example loss weights at timesteps t, shape (batch,): `LOSS_WEIGHTINGS[weighting]`
        for a denoiser of this `prediction` type (computed in float64, gathered per t)."""
        check_loss_weighting(weighting, gamma)
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction={prediction!r} is not one of {sorted(PREDICTIONS)}")
        snr = self.alphas_cumprod / (1.0 - self.alphas_cumprod)
        table = LOSS_WEIGHTINGS[weighting](snr, prediction, float(gamma))
        if xp is np:
            return table[np.asarray(t, dtype=np.int64)]
        return xp.take(xp.convert_to_tensor(table.astype(np.float32)), xp.cast(t, "int32"))

    def prediction_target(self, prediction: str, x0, noise, t, xp=np):
        """What a denoiser of this `prediction` type learns to output."""
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction={prediction!r} is not one of {sorted(PREDICTIONS)}")
        return PREDICTIONS[prediction][0](self, x0, noise, t, xp)


def _target_epsilon(schedule, x0, noise, t, xp):
    return noise


def _target_v(schedule, x0, noise, t, xp):
    return schedule.velocity(x0, noise, t, xp)


def _target_sample(schedule, x0, noise, t, xp):
    return x0


def _split_epsilon(output, x_t, alpha_bar, xp):
    eps = output
    return (x_t - xp.sqrt(1.0 - alpha_bar) * eps) / xp.sqrt(alpha_bar), eps


def _split_v(output, x_t, alpha_bar, xp):
    a, s = xp.sqrt(alpha_bar), xp.sqrt(1.0 - alpha_bar)
    return a * x_t - s * output, s * x_t + a * output


def _split_sample(output, x_t, alpha_bar, xp):
    x0 = output
    return x0, (x_t - xp.sqrt(alpha_bar) * x0) / xp.sqrt(1.0 - alpha_bar)


# prediction type -> (training target(schedule, x0, noise, t, xp),
#                     (x0, eps) from the output at x_t with alpha_bar_t(output, x_t, alpha_bar, xp))
PREDICTIONS = {
    "epsilon": (_target_epsilon, _split_epsilon),
    "v": (_target_v, _split_v),
    "sample": (_target_sample, _split_sample),
}


def _no_weighting(snr, prediction, gamma):
    return np.ones_like(snr)


# min(SNR, gamma) is the weight of the x_0 error; an epsilon error is SNR x_0 errors and a v error
# (SNR + 1) x_0 errors (Hang et al. 2023, eq. 6 and its v form), so each divides by its factor.
_SNR_FACTORS = {
    "epsilon": lambda snr: snr,
    "v": lambda snr: snr + 1.0,
    "sample": lambda snr: np.ones_like(snr),
}


def _min_snr_weighting(snr, prediction, gamma):
    return np.minimum(snr, gamma) / _SNR_FACTORS[prediction](snr)


# weighting -> per-timestep weights(snr table, prediction, gamma) of the squared error.
LOSS_WEIGHTINGS = {"none": _no_weighting, "min_snr": _min_snr_weighting}


def check_loss_weighting(weighting: str, gamma) -> None:
    """One clear error for an unknown weighting or a gamma that is not a positive number."""
    if not isinstance(weighting, str) or weighting not in LOSS_WEIGHTINGS:
        raise ValueError(f"loss_weighting={weighting!r} is not one of {sorted(LOSS_WEIGHTINGS)}")
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not (
        math.isfinite(gamma) and gamma > 0
    ):
        raise ValueError(f"min_snr_gamma must be a positive number, got {gamma!r}")
