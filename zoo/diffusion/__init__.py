"""Diffusion: weightless noise schedules and samplers (numpy at import) and the DDPM family.

`zoo.diffusion.schedules` and `zoo.diffusion.samplers` re-export `exporters.diffusion_schedules`
and `exporters.diffusion_samplers` (numpy only; the TF-free runtime uses them); the sampling loop
is `exporters.diffusion_pipeline`; `zoo.diffusion.model` (the Keras models "ddpm" and "cddpm")
loads on first use.
"""

import importlib

_EXPORTS = {"DDPM": "zoo.diffusion.model", "CDDPM": "zoo.diffusion.model",
            "NoiseSchedule": "zoo.diffusion.schedules"}


def __getattr__(name):
    module_name = _EXPORTS.get(name)
    if module_name is not None:
        return getattr(importlib.import_module(module_name), name)
    try:
        return importlib.import_module(f"zoo.diffusion.{name}")
    except ModuleNotFoundError as error:
        if error.name != f"zoo.diffusion.{name}":
            raise
        raise AttributeError(f"module 'zoo.diffusion' has no attribute {name!r}") from None
