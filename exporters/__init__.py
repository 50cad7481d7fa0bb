"""Export trained generators and run them without TensorFlow.

Two tiers, told apart by where a module lives:

- the TF-free tier, the modules directly in `exporters/` (`sampling`, `images`, `manifest`,
  `run_folder`, `diffusion_schedules`, `diffusion_samplers`, `diffusion_pipeline`, `runtime`,
  `batching`, `inference_protocol`, `server`): numpy, ONNX Runtime, LiteRT, Pillow and the
  serving stack only. This is what `pip install genzoo` gives; `zoo sample` / `zoo serve` on an
  artifact run on it alone. `compat` holds every private-API use of any layer and loads nothing
  when imported.
- the converters, `exporters/converters/` (SavedModel, TFLite, ONNX, Triton and TF Serving
  layouts, verify, `export`): they take a Keras generator, import the TF stack and the TF-free
  tier, and never import `zoo`.

Importing this package loads no TensorFlow: `export` imports the converters when called.

    report = exporters.export(model, "saved_models/cgan-mnist5k")
    g = exporters.runtime.load("saved_models/cgan-mnist5k/generator.onnx")
"""

from __future__ import annotations

import importlib

# every format `export` writes; DEFAULT_FORMATS when none are named (the model repositories
# for Triton and TF Serving and the in-browser page are on request: `--formats triton,web`)
DEFAULT_FORMATS = ("saved_model", "tflite", "onnx")
FORMATS = (*DEFAULT_FORMATS, "triton", "tf_serving", "web")
QUANTIZATIONS = ("none", "fp16", "dynamic", "int8", "int16x8")
DEFAULT_TFLITE_BATCH_SIZES = (1, 64)  # batch 1 for phones, 64 for grids; None = dynamic batch

# Converter modules by the names they had before the converters moved to exporters/converters/
# (`from exporters import onnx` keeps working); imported on first use, so TF loads only then.
CONVERTER_MODULES = ("saved_model", "tflite", "onnx", "verify")

__all__ = ["DEFAULT_FORMATS", "FORMATS", "QUANTIZATIONS", "export", "export_format"]


def export(model_or_path, out_dir, formats=DEFAULT_FORMATS, quantize="none", **options) -> dict:
    """`exporters.converters.export.export` (needs the TF stack: `pip install genzoo[train]`)."""
    from exporters.converters.export import export as export_model

    return export_model(model_or_path, out_dir, formats, quantize, **options)


def export_format(fmt: str, network, filepath, **kwargs) -> dict:
    """One format's exporter on a Keras network (see `exporters.converters.export`)."""
    from exporters.converters.export import export_format as export_one

    return export_one(fmt, network, filepath, **kwargs)


def __getattr__(name):
    if name in CONVERTER_MODULES:
        return importlib.import_module(f"exporters.converters.{name}")
    try:
        return importlib.import_module(f"exporters.{name}")
    except ModuleNotFoundError as error:
        if error.name != f"exporters.{name}":
            raise
        raise AttributeError(f"module 'exporters' has no attribute {name!r}") from None
