"""TFLite (LiteRT) export: converted from a SavedModel, builtin ops only, static batch by default.

Builtin ops only, because Flex (TF select) ops do not run in the phone runtime. Static batch by
default: measured on a DCGAN generator, a dynamic-batch model ran at 200 img/s and its
dynamic-range int8 version at 15 img/s, against 707 and 2,205 img/s for static-batch versions
(a dynamic batch leaves Shape/StridedSlice/Pack ops in front of every TRANSPOSE_CONV and blocks
the XNNPACK and GPU delegates' static planning). `batch_size=None` still gives a dynamic batch.
Known: nearest-neighbour upsampling (`upsampling="resize"`) converts only with a static batch.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

REPRESENTATIVE_STEPS = 32
REPRESENTATIVE_BATCH = 8


def _float32(converter, representative):
    del converter, representative


def _float16(converter, representative):
    import tensorflow as tf

    del representative
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]


def _dynamic_range(converter, representative):
    import tensorflow as tf

    del representative
    converter.optimizations = [tf.lite.Optimize.DEFAULT]


def _full_integer(converter, representative):
    """int8 weights and activations; float32 inputs/outputs so callers feed the same arrays."""
    import tensorflow as tf

    if representative is None:
        raise ValueError(
            "quantize='int8' needs representative_data (a callable yielding input dicts)"
        )
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]


def _int16_activations(converter, representative):
    """int8 weights, int16 activations (LiteRT's 16x8 mode): for networks whose activations
    lose too much in int8 (stylegan's modulated convolutions); runs on the reference kernels,
    so it is smaller than float32, not faster."""
    import tensorflow as tf

    if representative is None:
        raise ValueError(
            "quantize='int16x8' needs representative_data (a callable yielding input dicts)"
        )
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
    ]


# quantize option -> how it configures the converter.
QUANTIZERS = {"none": _float32, "fp16": _float16, "dynamic": _dynamic_range, "int8": _full_integer,
              "int16x8": _int16_activations}
# the options that calibrate activations on representative data
CALIBRATED = ("int8", "int16x8")


def export_tflite(network, filepath, quantize: str = "none", batch_size=1, representative_data=None,
                  output_names=None) -> dict:
    """Write `network` as a .tflite with a `serve` signature; returns inputs/outputs/ops.

    `representative_data(batch_size)` -> iterable of {input name: array} (needed for int8).
    """
    import tensorflow as tf

    from exporters.converters.saved_model import SIGNATURE, export_saved_model

    if quantize not in QUANTIZERS:
        raise ValueError(f"quantize={quantize!r} is not one of {sorted(QUANTIZERS)}")
    if Path(filepath).suffix != ".tflite":
        raise ValueError(f"a TFLite file name must end in .tflite, got {str(filepath)!r}")
    with tempfile.TemporaryDirectory(prefix="tflite-src-") as source:
        info = export_saved_model(network, source, batch_size, output_names)
        converter = tf.lite.TFLiteConverter.from_saved_model(source, signature_keys=[SIGNATURE])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        representative = None
        if representative_data is not None:
            steps_batch = batch_size or REPRESENTATIVE_BATCH
            def representative():
                return representative_data(steps_batch)
        QUANTIZERS[quantize](converter, representative)
        try:
            with warnings.catch_warnings():  # calibration uses the deprecated tf.lite.Interpreter
                warnings.simplefilter("ignore", UserWarning)
                flatbuffer = converter.convert()
        except Exception as error:  # converter errors are long MLIR dumps: keep the gist first
            raise ValueError(
                f"TFLite conversion (quantize={quantize!r}, batch_size={batch_size!r}) failed "
                f"with builtin ops only: {_first_line(error)}"
            ) from error
    Path(filepath).write_bytes(flatbuffer)
    ops = list_ops(filepath)
    flex = [op for op in ops if op.startswith("Flex") or op == "CUSTOM"]
    if flex:
        raise ValueError(f"{filepath} needs non-builtin ops {flex}; they do not run on phones")
    return {**info, "quantization": quantize, "ops": ops}


def _first_line(error) -> str:
    text = str(error).strip()
    for line in text.splitlines():
        if "error:" in line:
            return line.strip()[:400]
    return text.splitlines()[0][:400] if text else type(error).__name__


def list_ops(filepath) -> list[str]:
    """Builtin op names the model uses, read by LiteRT (the phone runtime), not by TF."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from exporters import compat

    interpreter = Interpreter(
        model_path=str(filepath),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    return compat.litert_op_names(interpreter)


def representative_data(make_inputs, steps=REPRESENTATIVE_STEPS):
    """A representative_data callable from make_inputs(n, seed) -> {input name: array}: what the
    int8 calibration sees (for a generator: standard-normal latents and every label)."""

    def batches(batch_size):
        for step in range(steps):
            yield make_inputs(batch_size, seed=step)

    return batches
