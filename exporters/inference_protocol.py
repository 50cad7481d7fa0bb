"""The Open Inference Protocol (KServe v2 / Triton HTTP) codec: request bodies to numpy feeds
and numpy results to response bodies, in JSON and with the binary tensor extension. No HTTP here
(`exporters.server` routes the endpoints); numpy only.

A request body is JSON, or, with the binary tensor extension, a JSON header of
`Inference-Header-Content-Length` bytes followed by the tensors' raw little-endian bytes in input
order (each input says its `binary_data_size`). Responses put an output in binary when the request
asks (`outputs[i].parameters.binary_data`, or `parameters.binary_data_output` for all).
Every check names the value it got: a malformed request is a `ProtocolError` (a 400).
"""

from __future__ import annotations

import json
import math

import numpy as np

from exporters.sampling import short_repr

DATATYPES = {"float32": "FP32", "int32": "INT32", "int64": "INT64", "uint8": "UINT8"}
NUMPY_TYPES = {v: np.dtype(k) for k, v in DATATYPES.items()}
REQUEST_FIELDS = ("id", "inputs", "outputs", "parameters")
# request parameters a Triton client may send that do not change a result here
IGNORED_PARAMETERS = ("binary_data_output", "priority", "timeout", "sequence_id",
                      "sequence_start", "sequence_end")
HEADER_LENGTH = "Inference-Header-Content-Length"


class ProtocolError(ValueError):
    """A malformed inference request: the message says which value and what was expected."""


def tensor_metadata(specs) -> list[dict]:
    """[{"name", "datatype", "shape"}] (-1: a dynamic dimension) from {"name", "dtype", "shape"}
    specs (None: dynamic), as model metadata lists them."""
    return [
        {"name": s["name"], "datatype": DATATYPES.get(s["dtype"], s["dtype"].upper()),
         "shape": [-1 if d is None else int(d) for d in s["shape"]]}
        for s in specs
    ]


def parse_request(body: bytes, header_length, input_specs, output_names,
                  allowed_parameters=()) -> tuple[dict, dict, list, dict]:
    """(feeds {name: array}, parameters, [(output name, binary?)], the request JSON).

    input_specs: [{"name", "dtype", "shape"}] the model takes (None: dynamic dimension); every
    one must be given, with its datatype and shape; all with the same first dimension.
    allowed_parameters: request parameters the model takes besides IGNORED_PARAMETERS.
    """
    binary = b""
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            raise ProtocolError(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") \
                from None
        if not 0 < size <= len(body):
            raise ProtocolError(f"{HEADER_LENGTH} {size} is not within the body's "
                                f"{len(body)} bytes")
        body, binary = body[:size], body[size:]
    try:
        request = json.loads(body.decode("utf-8") or "null")
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ProtocolError(f"inference request is not valid JSON: {error} "
                            f"(got {body[:80]!r})") from None
    if not isinstance(request, dict):
        raise ProtocolError(f"inference request must be a JSON object, got {body[:80]!r}")
    unknown = sorted(set(request) - set(REQUEST_FIELDS))
    if unknown:
        raise ProtocolError(f"unknown inference request fields {unknown}; accepted: "
                            f"{list(REQUEST_FIELDS)}")
    parameters = request.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ProtocolError(f"parameters must be a JSON object, got {short_repr(parameters)}")
    allowed = set(IGNORED_PARAMETERS) | set(allowed_parameters)
    unknown = sorted(set(parameters) - allowed)
    if unknown:
        raise ProtocolError(f"unknown parameters {unknown}; accepted here: {sorted(allowed)}")
    feeds = _parse_inputs(request.get("inputs"), binary, input_specs)
    outputs = _parse_outputs(request.get("outputs"), list(output_names),
                             bool(parameters.get("binary_data_output", False)))
    return feeds, parameters, outputs, request


def _parse_inputs(inputs, binary: bytes, input_specs) -> dict:
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError(f"inputs must be a non-empty list of tensors, got {short_repr(inputs)}")
    specs = {spec["name"]: spec for spec in input_specs}
    feeds, offset = {}, 0
    for tensor in inputs:
        if not isinstance(tensor, dict):
            raise ProtocolError(f"each input must be a JSON object, got {short_repr(tensor)}")
        name = tensor.get("name")
        if name not in specs:
            raise ProtocolError(f"unknown input {short_repr(name)}; the model takes {sorted(specs)}")
        if name in feeds:
            raise ProtocolError(f"input {name!r} is given twice")
        spec = specs[name]
        expected_type = DATATYPES[spec["dtype"]]
        datatype = tensor.get("datatype")
        if datatype != expected_type:
            raise ProtocolError(f"input {name!r} must have datatype {expected_type}, got "
                                f"{short_repr(datatype)}")
        shape = tensor.get("shape")
        if (not isinstance(shape, list) or len(shape) != len(spec["shape"])
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                           for d in shape)
                or any(want is not None and got != want
                       for got, want in zip(shape, spec["shape"]))):
            wanted = ["n" if d is None else d for d in spec["shape"]]
            raise ProtocolError(f"input {name!r} must have shape {wanted}, got {short_repr(shape)}")
        count = math.prod(shape)
        dtype = NUMPY_TYPES[datatype]
        params = tensor.get("parameters") or {}
        if not isinstance(params, dict):
            raise ProtocolError(f"input {name!r}: parameters must be an object, "
                                f"got {short_repr(params)}")
        if "binary_data_size" in params:
            size = params["binary_data_size"]
            if (isinstance(size, bool) or not isinstance(size, int)
                    or size != count * dtype.itemsize or offset + size > len(binary)):
                raise ProtocolError(
                    f"input {name!r}: binary_data_size {short_repr(size)} does not match shape "
                    f"{shape} of {datatype} ({count * dtype.itemsize} bytes) or the "
                    f"{len(binary) - offset} binary bytes left in the body"
                )
            array = np.frombuffer(binary, dtype.newbyteorder("<"), count, offset)
            offset += size
        elif "data" in tensor:
            array = _json_array(name, tensor["data"], dtype, count)
        else:
            raise ProtocolError(f"input {name!r} has neither 'data' nor a binary_data_size")
        feeds[name] = np.ascontiguousarray(array.reshape(shape), dtype=dtype)
    if offset != len(binary):
        raise ProtocolError(f"the body has {len(binary) - offset} binary bytes no input claims")
    missing = sorted(set(specs) - set(feeds))
    if missing:
        raise ProtocolError(f"missing inputs {missing}; the model takes {sorted(specs)}")
    rows = {name: len(array) for name, array in feeds.items()}
    if len(set(rows.values())) != 1:
        raise ProtocolError(f"inputs must have the same batch size, got {rows}")
    return feeds


def _json_array(name, data, dtype, count) -> np.ndarray:
    try:
        array = np.asarray(data)
    except (ValueError, TypeError):
        raise ProtocolError(f"input {name!r}: data must be a (flat) list of numbers, "
                            f"got {short_repr(data)}") from None
    if array.dtype == object or array.dtype.kind not in "iuf" or array.dtype == bool:
        raise ProtocolError(f"input {name!r}: data must be numbers, got {short_repr(data)}")
    if array.size != count:
        raise ProtocolError(f"input {name!r}: data has {array.size} values, its shape needs "
                            f"{count}")
    if dtype.kind == "i" and array.dtype.kind == "f" and not np.all(array == np.round(array)):
        raise ProtocolError(f"input {name!r}: data must be integers, got {short_repr(data)}")
    return array.ravel().astype(dtype)


def _parse_outputs(outputs, names: list, binary_default: bool) -> list:
    if outputs is None:
        return [(name, binary_default) for name in names]
    if not isinstance(outputs, list):
        raise ProtocolError(f"outputs must be a list, got {short_repr(outputs)}")
    wanted = []
    for item in outputs:
        name = item.get("name") if isinstance(item, dict) else None
        if name not in names:
            raise ProtocolError(f"unknown output {short_repr(name if name else item)}; the model "
                                f"gives {names}")
        params = item.get("parameters") or {}
        wanted.append((name, bool(params.get("binary_data", binary_default))
                       if isinstance(params, dict) else binary_default))
    return wanted


def encode_response(model_name: str, model_version: str, request: dict, results: dict,
                    outputs: list) -> tuple[bytes, dict]:
    """(body, extra headers) for `results` {name: array}; `outputs` from parse_request."""
    answer = {"model_name": model_name, "model_version": model_version, "outputs": []}
    if "id" in request:
        answer["id"] = request["id"]
    buffers = []
    for name, binary in outputs:
        array = np.ascontiguousarray(results[name])
        tensor = {"name": name, "datatype": DATATYPES[str(array.dtype)],
                  "shape": list(array.shape)}
        if binary:
            data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            tensor["parameters"] = {"binary_data_size": len(data)}
            buffers.append(data)
        else:
            tensor["data"] = array.ravel().tolist()
        answer["outputs"].append(tensor)
    header = json.dumps(answer, separators=(",", ":")).encode()
    if not buffers:
        return header, {}
    return b"".join([header, *buffers]), {HEADER_LENGTH: str(len(header))}
