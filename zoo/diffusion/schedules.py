"""Noise schedules: the code lives in `exporters.diffusion_schedules` (numpy only, so the
TensorFlow-free runtime samples with the very same math); this module keeps its names here."""

from exporters.diffusion_schedules import (  # noqa: F401
    PREDICTIONS,
    SCHEDULES,
    NoiseSchedule,
    _default_params,
    _gather,
    cosine_betas,
    linear_betas,
)
