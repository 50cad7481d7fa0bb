"""Shared verification: reload an artifact in its own runtime and compare it with Keras.

Every artifact is run on the same inputs as the Keras network it came from, at two batch sizes
(1 and an odd size, plus a static-batch artifact's own batch), through the backend a deployment
uses (TF for SavedModel, ONNX Runtime, LiteRT). float32 artifacts must agree to 1e-4 (max abs
diff on images in [-1, 1]); quantized ones to the tolerance stated in TOLERANCES. A failure
raises with the numbers; the results go into the manifest.
"""

from __future__ import annotations

import numpy as np

# quantization -> max abs diff allowed on outputs in [-1, 1]. fp16 keeps ~3 decimal digits;
# dynamic-range int8 quantizes weights (activations stay float); full int8 also quantizes
# activations to 256 levels, so 0.2 (a tenth of the output range) bounds it on trained models;
# int16x8 keeps activations in 65,536 levels, weights in int8.
TOLERANCES = {"none": 1e-4, "fp16": 2e-2, "dynamic": 0.1, "int8": 0.2, "int16x8": 0.2}
BATCH_SIZES = (1, 7)


class VerificationError(ValueError):
    """An artifact's outputs differ from the Keras network's by more than the tolerance."""


def _saved_model_backend(path):
    from exporters.converters.saved_model import SavedModelBackend

    return SavedModelBackend(path)


def _runtime_backend(fmt):
    def load(path):
        from exporters import runtime

        return runtime.BACKENDS["." + fmt](path)

    return load


# format -> how to load an artifact in its own runtime
LOADERS = {
    "saved_model": _saved_model_backend,
    "onnx": _runtime_backend("onnx"),
    "tflite": _runtime_backend("tflite"),
}


class KerasReference:
    """The Keras network's outputs by name for the inputs of batch size n (cached per n)."""

    def __init__(self, network, output_names, make_inputs):
        self.network = network
        self.output_names = tuple(output_names)
        self.make_inputs = make_inputs
        self.cache = {}

    def __call__(self, n):
        if n not in self.cache:
            feeds = self.make_inputs(n)
            values = list(feeds.values())
            outputs = self.network(values[0] if len(values) == 1 else values, training=False)
            outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
            self.cache[n] = feeds, {
                name: np.asarray(out, dtype=np.float32)
                for name, out in zip(self.output_names, outputs)
            }
        return self.cache[n]


def verify_artifact(path, fmt: str, reference: KerasReference, quantization: str = "none",
                    batch_sizes=BATCH_SIZES, tolerance: float | None = None) -> dict:
    """{"max_abs_diff", "mean_abs_diff", "tolerance", "batch_sizes", "passed"} or raise."""
    if fmt not in LOADERS:
        raise ValueError(f"format={fmt!r} is not one of {sorted(LOADERS)}")
    tolerance = TOLERANCES[quantization] if tolerance is None else float(tolerance)
    backend = LOADERS[fmt](path)
    own_batch = getattr(backend, "batch", None)
    sizes = sorted(set(batch_sizes) | ({own_batch} if own_batch else set()))
    per_batch = {}
    for n in sizes:
        feeds, expected = reference(n)
        got = backend.run(feeds)
        missing = sorted(set(expected) - set(got))
        if missing:
            raise VerificationError(f"{path}: outputs {missing} missing (it returns {sorted(got)})")
        diffs = [np.abs(np.asarray(got[k], np.float32) - v) for k, v in expected.items()]
        shapes_ok = all(np.shape(got[k]) == v.shape for k, v in expected.items())
        if not shapes_ok:
            raise VerificationError(
                f"{path}: output shapes {[np.shape(got[k]) for k in expected]} != "
                f"Keras {[v.shape for v in expected.values()]} at batch {n}"
            )
        per_batch[n] = (float(max(d.max() for d in diffs)),
                        float(np.mean([d.mean() for d in diffs])))
    worst_batch = max(per_batch, key=lambda n: per_batch[n][0])
    max_diff = per_batch[worst_batch][0]
    result = {
        "max_abs_diff": max_diff,
        "mean_abs_diff": max(mean for _, mean in per_batch.values()),
        "tolerance": tolerance,
        "batch_sizes": sizes,
        "passed": bool(max_diff <= tolerance),
    }
    if not result["passed"]:
        raise VerificationError(
            f"{path} ({fmt}, quantization={quantization}) differs from the Keras network: max abs "
            f"diff {max_diff:.4g} at batch {worst_batch} > tolerance {tolerance:g} "
            f"(per batch: {', '.join(f'{n}: {d:.4g}' for n, (d, _) in per_batch.items())})"
        )
    return result
