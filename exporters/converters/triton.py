"""Triton Inference Server model repository for a generator, on the ONNX Runtime backend:

    <filepath>/<model_name>/config.pbtxt
    <filepath>/<model_name>/1/model.onnx

`export_triton(network, filepath, ...)` writes the ONNX model (the ONNX exporter, dynamic batch
named `batch`) and a `config.pbtxt` whose inputs and outputs (names, data types, dims without
the batch dimension) are read from that ONNX graph: `max_batch_size` and `dynamic_batching`
(Triton's own dynamic batcher, with `max_queue_delay_microseconds`) are set; a [batch]-shaped
input such as `label` is declared as dims [1] with `reshape { shape: [] }`, as Triton requires.

    tritonserver --model-repository <export folder>/triton
"""

from __future__ import annotations

from pathlib import Path

from exporters import manifest as manifest_lib

VERSION = "1"
DEFAULT_MODEL_NAME = "generator"
DEFAULT_MAX_BATCH_SIZE = 256
DEFAULT_QUEUE_DELAY_US = 5000
TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int32": "TYPE_INT32",
                "int64": "TYPE_INT64", "uint8": "TYPE_UINT8"}


def _tensor_block(spec: dict) -> str:
    dtype = spec["dtype"]
    if dtype not in TRITON_TYPES:
        raise ValueError(f"tensor {spec['name']!r} has dtype {dtype!r}; Triton types known "
                         f"here: {sorted(TRITON_TYPES)}")
    dims = list(spec["shape"][1:])
    if any(d is None for d in dims):
        raise ValueError(f"tensor {spec['name']!r} has shape {spec['shape']}: only the batch "
                         "dimension may be dynamic")
    lines = [f'    name: "{spec["name"]}"', f"    data_type: {TRITON_TYPES[dtype]}"]
    if dims:
        lines.append(f"    dims: [ {', '.join(str(int(d)) for d in dims)} ]")
    else:  # a [batch] tensor: Triton needs at least one dim, reshaped away for the model
        lines += ["    dims: [ 1 ]", "    reshape: { shape: [ ] }"]
    return "  {\n" + "\n".join(lines) + "\n  }"


def model_config(model_name: str, inputs: list, outputs: list,
                 max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
                 max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US) -> str:
    """config.pbtxt text (protobuf text format of Triton's ModelConfig)."""
    for name, value in (("max_batch_size", max_batch_size),
                        ("max_queue_delay_us", max_queue_delay_us)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if max_batch_size == 0:
        raise ValueError("max_batch_size must be positive: the generator takes a batch")
    return "\n".join([
        f'name: "{model_name}"',
        'backend: "onnxruntime"',
        f"max_batch_size: {max_batch_size}",
        "input [\n" + ",\n".join(_tensor_block(s) for s in inputs) + "\n]",
        "output [\n" + ",\n".join(_tensor_block(s) for s in outputs) + "\n]",
        "dynamic_batching {",
        f"  max_queue_delay_microseconds: {max_queue_delay_us}",
        "}",
        "",
    ])


def export_triton(network, filepath, output_names=None, opset=None, optimize: bool = True,
                  model_name: str = DEFAULT_MODEL_NAME,
                  max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
                  max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US) -> dict:
    """Write a Triton model repository for `network` at `filepath` (a folder); returns the ONNX
    exporter's inputs/outputs plus where the model and its config are inside the repository."""
    from exporters.converters.onnx import DEFAULT_OPSET, export_onnx

    manifest_lib.check_model_name(model_name)
    repository = Path(filepath)
    version = repository / model_name / VERSION
    version.mkdir(parents=True)
    info = export_onnx(network, version / "model.onnx", opset=opset or DEFAULT_OPSET,
                       optimize=optimize, output_names=output_names)
    config = model_config(model_name, info["inputs"], info["outputs"], max_batch_size,
                          max_queue_delay_us)
    (repository / model_name / "config.pbtxt").write_text(config)
    return {
        **info,
        "model_name": model_name,
        "model_file": f"{model_name}/{VERSION}/model.onnx",
        "config": f"{model_name}/config.pbtxt",
        "max_batch_size": max_batch_size,
        "max_queue_delay_us": max_queue_delay_us,
    }
