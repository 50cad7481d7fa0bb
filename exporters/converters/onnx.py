"""ONNX export through tf2onnx, with graph rewrites that make ONNX Runtime fast on CPU.

Why ORT was slow (0.6-0.8x the TF SavedModel at batch 256 on a DCGAN generator): not layout
transposes (tf2onnx already cancels all but one) nor thread settings alone, but the kernels the
graph lands on. ORT's CPU ConvTranspose runs image by image: a small GEMM (N = H*W of one image)
then a single-threaded col2im, with a following BatchNorm left as separate Mul/Add and the ReLU
unfused; and a stride-1 Conv with 1-3 output channels (the to-image layer) goes to the blocked
NCHWc kernels, which pad the output channels to a block of 8/16 and reorder the input.

Two exact rewrites (the same products, summed in another order):
- `phase_convs`: a stride-s ConvTranspose -> s*s phase Convolutions (output pixel
  (s*i + a, s*j + b) only sees the kernel taps of phase (a, b)) + Concat + DepthToSpace, with the
  BatchNorm scale/shift folded into their weights and the ReLU fused. The Convs run batched in
  NCHWc kernels on all threads; the price is moving the map through Concat/DepthToSpace.
- `conv_as_transpose`: a stride-1 Conv with few outputs -> the equal ConvTranspose (flipped
  kernel), one GEMM with M = outputs x taps and no padded work.
- `fold_interleave`: a DepthToSpace read only by a ConvTranspose -> one ConvTranspose with a
  larger stride and kernel on the phase-stacked input, so the big map is never interleaved.
Which rewrite pays depends on map and channel sizes, so `tune_for_onnxruntime` measures: each is
kept only if it cuts the graph's single-thread CPU time. The choice and timings go in the manifest.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import numpy as np

DEFAULT_OPSET = 17
MIN_PHASE_CHANNELS = 8  # NCHWc convolutions pad output channels to 8/16: below that, waste
REWRITE_CHECK_TOLERANCE = 1e-5
TUNE_BATCH = 64
TUNE_MIN_GAIN = 0.03
BATCH_DIM = "batch"  # the symbolic batch dimension of every input and output


def export_onnx(network, filepath, opset: int = DEFAULT_OPSET, optimize: bool = True,
                output_names=None) -> dict:
    """Write `network` (keras.Model) as ONNX with a dynamic batch; returns inputs/outputs/opset."""
    import onnx
    import tf2onnx

    from exporters.converters.saved_model import describe_specs, serving_function

    if isinstance(opset, bool) or not isinstance(opset, int) or not 13 <= opset <= 21:
        raise ValueError(f"opset must be an integer in [13, 21], got {opset!r}")
    function, specs, names, _ = serving_function(network, None, output_names)
    _patch_tf2onnx()
    with _quiet("tf2onnx"):
        proto, _ = tf2onnx.convert.from_function(function, input_signature=specs, opset=opset)
    rewrite = {"applied": False, "rewritten": {}}
    if optimize:
        proto, rewrite = _checked_rewrite(proto)
    name_batch_dimension(proto)
    onnx.checker.check_model(proto)
    Path(filepath).write_bytes(proto.SerializeToString())
    return {
        "opset": opset,
        "inputs": describe_specs(specs),
        "outputs": [{"name": n, "dtype": "float32", "shape": _shape_of(proto, n)} for n in names],
        "batch": None,
        "graph_rewrite": rewrite,
    }


def name_batch_dimension(proto, name: str = BATCH_DIM):
    """One symbolic name for the batch dimension of every graph input and output (tf2onnx
    names each one apart, unk__108, unk__109, ..., which tells a consumer nothing)."""
    for value in [*proto.graph.input, *proto.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = name


def _patch_tf2onnx():
    """Keras's own numpy-2 fixes for tf2onnx 1.17 (what `model.export(format="onnx")` applies);
    a Keras without them leaves tf2onnx as is. The private import lives in exporters.compat."""
    from exporters import compat

    compat.patch_tf2onnx()


@contextlib.contextmanager
def _quiet(logger_name):
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _shape_of(proto, name):
    for value in proto.graph.output:
        if value.name == name:
            return [d.dim_value if d.HasField("dim_value") else None
                    for d in value.type.tensor_type.shape.dim]
    return None


# ---- choosing rewrites by measurement ------------------------------------------------------------
def _checked_rewrite(proto):
    """Tune, then run both graphs in ORT on random inputs; keep the result only if they agree."""
    try:
        rewritten, report = tune_for_onnxruntime(proto)
    except ValueError as error:  # a layout the rewrites do not cover: keep tf2onnx's graph
        return proto, {"applied": False, "rewritten": {}, "skipped": str(error)}
    if not report["rewritten"]:
        return proto, {**report, "applied": False}
    diff = _max_graph_diff(proto, rewritten)
    if not diff <= REWRITE_CHECK_TOLERANCE:
        return proto, {**report, "applied": False, "rewritten": {},
                       "skipped": f"rewritten graph differs by {diff:.3g}"}
    return rewritten, {**report, "applied": True, "check_max_abs_diff": diff}


def tune_for_onnxruntime(proto, batch: int = TUNE_BATCH, min_gain: float = TUNE_MIN_GAIN):
    """(graph, report): each candidate rewrite kept only if it cuts ORT's CPU time.

    Greedy, in graph order: a rewrite stays when the whole graph then needs at least `min_gain`
    less single-thread CPU time (process time, so load from other processes barely matters) at
    batch `batch`. Why measure: the phase form wins where maps are small and channels many (a
    DCGAN's first upsampling) and loses where its DepthToSpace/Concat move large maps.
    """
    best = _cpu_ms(proto, batch)
    report = {"baseline_cpu_ms": best, "batch": batch, "rewritten": {}, "tried": {}}
    graph = proto
    while True:  # rounds: a kept rewrite can make new candidates (an interleave to fold)
        candidates = {name: kind for name, kind in rewrite_candidates(graph).items()
                      if name not in report["tried"]}
        chosen: dict[str, str] = {}
        for name, kind in candidates.items():
            trial, _ = optimize_for_onnxruntime(graph, only={**chosen, name: kind})
            cost = _cpu_ms(trial, batch)
            report["tried"][name] = {"rewrite": kind, "cpu_ms": cost}
            if cost < best * (1.0 - min_gain):
                chosen[name], best = kind, cost
        if not chosen:
            break
        graph, _ = optimize_for_onnxruntime(graph, only=chosen)
        report["rewritten"].update(chosen)
    report["cpu_ms"] = best
    return graph, report


def _feeds(session, batch, seed=0):
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in session.get_inputs():
        shape = [batch if not isinstance(d, int) else d for d in spec.shape]
        if "int" in spec.type:
            feeds[spec.name] = rng.integers(0, 2, shape).astype(np.int32)
        else:
            feeds[spec.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def _session(proto, threads=None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def _cpu_ms(proto, batch, repeats: int = 5) -> float:
    """Best single-thread CPU milliseconds of one run at `batch`."""
    session = _session(proto, threads=1)
    feeds = _feeds(session, batch)
    session.run(None, feeds)
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        session.run(None, feeds)
        best = min(best, time.process_time() - start)
    return 1e3 * best


def _max_graph_diff(a, b, batch=3) -> float:
    sessions = [_session(p) for p in (a, b)]
    feeds = _feeds(sessions[0], batch)
    outs = [s.run(None, feeds) for s in sessions]
    return float(max(np.max(np.abs(x - y)) for x, y in zip(*outs)))


def _attribute(node, name, default=None):
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _phase_taps(kernel: int, stride: int, pad_begin: int, phase: int) -> tuple[list[int], int]:
    """(kernel taps that reach output phase `phase` in Conv order, the Conv's leading pad).

    ConvTranspose: y[o] = sum_j x[j] * w[o - stride * j + pad_begin]. For o = stride * i + phase,
    tap t = stride * q + phase + pad_begin pairs with x[i - q]; a Conv window over x[i - q_max ..
    i - q_min] uses the taps for q = q_max .. q_min.
    """
    qs = [q for q in range(-kernel - stride, kernel + stride)
          if 0 <= stride * q + phase + pad_begin < kernel]
    return [stride * q + phase + pad_begin for q in sorted(qs, reverse=True)], max(qs)


class _GraphView:
    """What the rewrites read: constants, static shapes, consumers and outputs of a graph."""

    def __init__(self, proto):
        from onnx import numpy_helper

        graph = proto.graph
        self.constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
        self.shapes = {
            v.name: [d.dim_value if d.HasField("dim_value") else None
                     for d in v.type.tensor_type.shape.dim]
            for v in [*graph.value_info, *graph.input]
        }
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.graph_outputs = {v.name for v in graph.output}

    def bias(self, node, channels):
        """The node's constant bias (zeros when absent), or None if it is not a constant."""
        if len(node.input) > 2 and node.input[2]:
            value = self.constants.get(node.input[2])
            return None if value is None else value.astype(np.float32)
        return np.zeros(channels, np.float32)


def _first_rewrite(node, view, min_channels):
    """(kind, plan) of the first rewrite that handles `node` exactly, else (None, None)."""
    for kind, (plan_fn, _) in REWRITES.items():
        plan = plan_fn(node, view, min_channels)
        if plan is not None:
            return kind, plan
    return None, None


def rewrite_candidates(proto, min_channels: int = MIN_PHASE_CHANNELS) -> dict[str, str]:
    """{node name: rewrite kind} for every node some rewrite handles exactly."""
    import onnx

    proto = onnx.shape_inference.infer_shapes(proto)
    view = _GraphView(proto)
    found = {}
    for node in proto.graph.node:
        kind, _ = _first_rewrite(node, view, min_channels)
        if kind and node.name:
            found[node.name] = kind
    return found


def optimize_for_onnxruntime(proto, min_channels: int = MIN_PHASE_CHANNELS, only=None):
    """(rewritten ModelProto, number of nodes rewritten): every candidate, or those in `only`
    ({node name: kind}, as `tune_for_onnxruntime` picks them). See the module docstring."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.shape_inference.infer_shapes(proto)
    graph = proto.graph
    view = _GraphView(proto)
    nodes, absorbed, new_constants, count = [], set(), [], 0
    for node in graph.node:
        if id(node) in absorbed:
            continue
        kind, plan = _first_rewrite(node, view, min_channels)
        if plan is None or (only is not None and only.get(node.name) != kind):
            nodes.append(node)
            continue
        emitted, constants = REWRITES[kind][1](node, plan, view, absorbed)
        nodes += emitted
        new_constants += [numpy_helper.from_array(v, k) for k, v in constants.items()]
        count += 1
    if not count:
        return proto, 0
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(new_constants)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]
    return proto, count


# ---- rewrite 1: stride-s ConvTranspose -> s*s phase Convs + Concat + DepthToSpace -------------
def _plan_phases(node, view, min_channels):
    """The numbers of a ConvTranspose this rewrite handles exactly, else None."""
    if node.op_type != "ConvTranspose" or node.input[1] not in view.constants:
        return None
    weight = view.constants[node.input[1]].astype(np.float32)
    strides = list(_attribute(node, "strides", [1, 1]))
    if (
        weight.ndim != 4 or weight.shape[1] < min_channels
        or _attribute(node, "group", 1) != 1
        or list(_attribute(node, "dilations", [1, 1])) != [1, 1]
        or _attribute(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
        or _attribute(node, "output_shape") is not None
        or len(set(strides)) != 1 or strides[0] < 2
    ):
        return None
    in_shape = view.shapes.get(node.input[0])
    if not in_shape or len(in_shape) != 4 or None in in_shape[2:]:
        return None
    pads = list(_attribute(node, "pads", [0, 0, 0, 0]))
    output_padding = list(_attribute(node, "output_padding", [0, 0]))
    kernel = weight.shape[2:]
    out_size = [s * (i - 1) + p + k - pb - pe for s, i, p, k, pb, pe in
                zip(strides, in_shape[2:], output_padding, kernel, pads[:2], pads[2:])]
    if any(o % s for o, s in zip(out_size, strides)):
        return None  # DepthToSpace needs whole blocks
    bias = view.bias(node, weight.shape[1])
    if bias is None:
        return None
    return {"weight": weight, "bias": bias, "strides": strides, "pads": pads,
            "in_size": in_shape[2:], "phase_size": [o // s for o, s in zip(out_size, strides)]}


def _emit_phases(node, plan, view, absorbed):
    from onnx import helper

    weight, bias, tail, relu = _absorb_followers(node, plan["weight"], plan["bias"], view,
                                                 absorbed)
    nodes, constants, phases = [], {}, []
    for a in range(plan["strides"][0]):
        for b in range(plan["strides"][1]):
            name = f"{node.name}/phase{a}{b}"
            conv, relu_node, constants[f"{name}/W"], constants[f"{name}/B"] = _phase_conv(
                node, plan, weight, bias, (a, b), name, relu
            )
            nodes += [conv] + ([relu_node] if relu_node is not None else [])
            phases.append((relu_node or conv).output[0])
    nodes.append(helper.make_node("Concat", phases, [f"{node.name}/phases"], axis=1,
                                  name=f"{node.name}/concat"))
    nodes.append(helper.make_node("DepthToSpace", [f"{node.name}/phases"], [tail],
                                  blocksize=plan["strides"][0], mode="DCR",
                                  name=f"{node.name}/interleave"))
    return nodes, constants


# ---- rewrite 2: stride-1 Conv with few output channels -> the equal ConvTranspose ---------------
def _plan_conv_as_transpose(node, view, min_channels):
    """A stride-1 Conv with fewer than `min_channels` outputs (a to-image layer): ORT's NCHWc
    kernels pad its outputs to a block of 8/16 channels and reorder the input, while its
    ConvTranspose (one GEMM per image, M = out channels x kernel taps) does no padded work."""
    if node.op_type != "Conv" or node.input[1] not in view.constants:
        return None
    weight = view.constants[node.input[1]].astype(np.float32)
    if (
        weight.ndim != 4 or weight.shape[0] >= min_channels
        or _attribute(node, "group", 1) != 1
        or list(_attribute(node, "strides", [1, 1])) != [1, 1]
        or list(_attribute(node, "dilations", [1, 1])) != [1, 1]
        or _attribute(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
    ):
        return None
    pads = list(_attribute(node, "pads", [0, 0, 0, 0]))
    kernel = list(weight.shape[2:])
    flipped = [k - 1 - p for k, p in zip(kernel * 2, pads)]
    if min(flipped) < 0:
        return None
    bias = view.bias(node, weight.shape[0])
    if bias is None:
        return None
    # correlation with w == transposed convolution with w flipped and its channel axes swapped
    return {"weight": weight.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1].copy(), "bias": bias,
            "pads": flipped, "kernel": kernel}


def _emit_conv_as_transpose(node, plan, view, absorbed):
    from onnx import helper

    del view, absorbed
    name = f"{node.name}/as_transpose"
    transposed = helper.make_node(
        "ConvTranspose", [node.input[0], f"{name}/W", f"{name}/B"], list(node.output), name=name,
        kernel_shape=plan["kernel"], pads=plan["pads"], strides=[1, 1],
    )
    return [transposed], {f"{name}/W": plan["weight"], f"{name}/B": plan["bias"]}


# ---- rewrite 3: DepthToSpace -> ConvTranspose folded into one ConvTranspose ----------------------
def _plan_fold_interleave(node, view, min_channels):
    """An interleave (DCR DepthToSpace, block s1) read only by a ConvTranspose (stride s2): the
    pair is one ConvTranspose on the phase-stacked input with stride s1*s2 and a kernel of
    s2*(s1-1) + k: W'[(a, b, c), o, t + s2*a, u + s2*b] = W[c, o, t, u]. Saves moving the map."""
    del min_channels
    mode = _attribute(node, "mode", b"DCR")
    if node.op_type != "DepthToSpace" or mode not in (b"DCR", "DCR"):
        return None
    users = view.consumers.get(node.output[0], [])
    if len(users) != 1 or node.output[0] in view.graph_outputs:
        return None
    transpose = users[0]
    if transpose.op_type != "ConvTranspose" or transpose.input[0] != node.output[0]:
        return None
    weight = view.constants.get(transpose.input[1])
    strides = list(_attribute(transpose, "strides", [1, 1]))
    if (
        weight is None or weight.ndim != 4 or _attribute(transpose, "group", 1) != 1
        or list(_attribute(transpose, "dilations", [1, 1])) != [1, 1]
        or _attribute(transpose, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
        or _attribute(transpose, "output_shape") is not None
    ):
        return None
    bias = view.bias(transpose, weight.shape[1])
    if bias is None:
        return None
    block = int(_attribute(node, "blocksize"))
    channels, outputs, kh, kw = weight.shape
    folded = np.zeros((block, block, channels, outputs, strides[0] * (block - 1) + kh,
                       strides[1] * (block - 1) + kw), np.float32)
    for a in range(block):
        for b in range(block):
            folded[a, b, :, :, strides[0] * a : strides[0] * a + kh,
                   strides[1] * b : strides[1] * b + kw] = weight
    return {"transpose": transpose, "bias": bias,
            "weight": folded.reshape(block * block * channels, outputs, *folded.shape[4:]),
            "strides": [block * s for s in strides]}


def _emit_fold_interleave(node, plan, view, absorbed):
    from onnx import helper

    del view
    transpose = plan["transpose"]
    absorbed.add(id(transpose))
    name = f"{transpose.name}/folded"
    attributes = {a.name: helper.get_attribute_value(a) for a in transpose.attribute}
    attributes.update(strides=plan["strides"], kernel_shape=list(plan["weight"].shape[2:]))
    folded = helper.make_node("ConvTranspose", [node.input[0], f"{name}/W", f"{name}/B"],
                              list(transpose.output), name=name, **attributes)
    return [folded], {f"{name}/W": plan["weight"], f"{name}/B": plan["bias"]}


# rewrite kind -> (plan(node, view, min_channels) -> plan or None, emit(node, plan, view, absorbed))
REWRITES = {
    "phase_convs": (_plan_phases, _emit_phases),
    "conv_as_transpose": (_plan_conv_as_transpose, _emit_conv_as_transpose),
    "fold_interleave": (_plan_fold_interleave, _emit_fold_interleave),
}


def _absorb_followers(node, weight, bias, view, absorbed):
    """Fold per-channel Mul/Add (an inference BatchNorm) into weight/bias, then take one ReLU
    or LeakyReLU (elementwise, so it applies to each phase as it did to the whole)."""
    channels = weight.shape[1]
    tail, relu = node.output[0], None
    while tail not in view.graph_outputs and len(view.consumers.get(tail, [])) == 1:
        follower = view.consumers[tail][0]
        others = [name for name in follower.input if name != tail]
        if (follower.op_type in ("Mul", "Add") and len(others) == 1
                and others[0] in view.constants):
            value = view.constants[others[0]].astype(np.float32)
            if not (value.size == 1 or value.shape in ((1, channels, 1, 1), (channels, 1, 1))):
                break
            value = np.broadcast_to(value.reshape(-1), (channels,))
            if follower.op_type == "Mul":
                weight, bias = weight * value[None, :, None, None], bias * value
            else:
                bias = bias + value
        elif follower.op_type in ("Relu", "LeakyRelu"):
            relu = follower
        else:
            break
        absorbed.add(id(follower))
        tail = follower.output[0]
        if relu is not None:
            break
    return weight, bias, tail, relu


def _phase_conv(node, plan, weight, bias, phase, name, relu):
    from onnx import helper

    taps, pads_begin, pads_end = [], [], []
    for axis in (0, 1):
        axis_taps, q_max = _phase_taps(weight.shape[2 + axis], plan["strides"][axis],
                                       plan["pads"][axis], phase[axis])
        taps.append(axis_taps)
        pads_begin.append(q_max)
        pads_end.append(plan["phase_size"][axis] - plan["in_size"][axis] - q_max
                        + len(axis_taps) - 1)
    if min(pads_end) < 0:
        raise ValueError(f"unexpected negative padding rewriting {node.name}")
    conv_weight = weight[:, :, taps[0]][:, :, :, taps[1]].transpose(1, 0, 2, 3).copy()
    conv = helper.make_node(
        "Conv", [node.input[0], f"{name}/W", f"{name}/B"], [f"{name}/y"], name=name,
        kernel_shape=[len(taps[0]), len(taps[1])], pads=pads_begin + pads_end,
    )
    relu_node = None
    if relu is not None:
        attributes = {a.name: helper.get_attribute_value(a) for a in relu.attribute}
        relu_node = helper.make_node(relu.op_type, [f"{name}/y"], [f"{name}/relu"],
                                     name=f"{name}/relu", **attributes)
    return conv, relu_node, conv_weight, bias.astype(np.float32)
