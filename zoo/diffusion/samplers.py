"""Samplers: the code lives in `exporters.diffusion_samplers` (numpy only, so the
TensorFlow-free runtime samples with the very same math); this module keeps its names here."""

from exporters.diffusion_samplers import (  # noqa: F401
    SAMPLERS,
    DDIMSampler,
    DDPMSampler,
    Sampler,
    accepted_options,
    guide,
    make_sampler,
    trailing_timesteps,
)
