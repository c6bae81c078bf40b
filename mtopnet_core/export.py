"""Export a trained model's network to ONNX for :mod:`mtopnet_core.runtime` (done once, at ship time).

The network with its embedding output (:attr:`~mtopnet_core.inference.TrainedModel.forward`) is
traced in inference mode and converted by tf2onnx. tf2onnx writes each Conv1D as TensorFlow runs
it: a 2-D convolution between an Unsqueeze and a Squeeze of a singleton height axis, with the
bias added to the squeezed result. Every Squeeze breaks ONNX Runtime's blocked-layout chain, so
it converts the layout back after every convolution (over 40% of the run time, profiled) and cannot
fuse bias and ReLU into the convolution. :func:`keep_height_axis` rewrites the trunk to stay 4-D
(bias constants reshaped to broadcast there), after which ONNX Runtime fuses Conv + bias + ReLU;
:func:`keep_batch_axis_named` lets it also fuse the first block's residual Add + ReLU, and
:func:`unfold_narrow_convolutions` keeps it from padding the two evidence maps to a whole block.

Needs TensorFlow, tf2onnx and onnx (the ``export`` extra); prediction needs only onnxruntime.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

__all__ = ["export_onnx", "keep_height_axis", "keep_batch_axis_named", "unfold_narrow_convolutions", "ONNX_FILE",
           "ONNX_OPSET", "NCHWC_BLOCK", "file_sha256"]

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
"""Name of the exported network inside a model folder."""
ONNX_OPSET = 17


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _squeezed_axes(node, constants: dict) -> list[int] | None:
    if node.op_type not in ("Squeeze", "Unsqueeze") or len(node.input) < 2 or node.input[1] not in constants:
        return None
    return constants[node.input[1]].astype(int).tolist()


def keep_height_axis(model):
    """Keep the singleton height axis of tf2onnx's Conv1D lowering through the whole trunk.

    Squeeze (axis 2) ... Unsqueeze (axis 2) pairs around Add (of a constant bias or of two such
    tensors) and Relu are removed: those nodes run on the 4-D tensor instead, and a Squeeze is
    kept only where a node that is not elementwise reads the 3-D tensor (the flatten at the end).

    Parameters
    ----------
    model : onnx.ModelProto

    Returns
    -------
    onnx.ModelProto
        A new model computing the same outputs.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    four_d: dict[str, str] = {}  # 3-D tensor -> the same values with the height axis kept
    alias: dict[str, str] = {}  # output of a removed Unsqueeze -> the 4-D tensor it equals
    channels_last: dict[str, str] = {}  # NWC transpose of a 3-D tensor -> its 4-D NCHW version
    unsqueezed: dict[str, str] = {}  # (N, 1, W, C) unsqueeze of such a transpose -> the same 4-D version
    new_inits, nodes, squeezes_needed = [], [], set()

    def as_4d(name: str) -> str | None:
        if name in four_d:
            return four_d[name]
        value = constants.get(name)
        if value is not None and value.ndim == 3 and value.shape[2] == 1:  # a (1, C, 1) bias
            reshaped = f"{name}__height"
            if reshaped not in constants:
                constants[reshaped] = value[:, :, None, :]
                new_inits.append(numpy_helper.from_array(constants[reshaped], reshaped))
            return reshaped
        return None

    for node in graph.node:
        axes = _squeezed_axes(node, constants)
        if node.op_type == "Squeeze" and axes == [2]:
            four_d[node.output[0]] = alias.get(node.input[0], node.input[0])
            continue  # emitted at the end only if a 3-D reader needs it
        if node.op_type == "Unsqueeze" and axes == [2] and node.input[0] in four_d:
            alias[node.output[0]] = four_d[node.input[0]]
            continue
        # where a trunk tensor feeds two convolutions (or a convolution and a pooling), tf2onnx
        # leaves Transpose(NCW -> NWC), Unsqueeze(height), Transpose(NHWC -> NCHW) per reader: the
        # identity on the 4-D tensor; the first Transpose is dropped below if nothing else reads it
        if _perm(node) == [0, 2, 1] and node.input[0] in four_d:
            channels_last[node.output[0]] = four_d[node.input[0]]
        if node.op_type == "Unsqueeze" and axes in ([1], [-3]) and node.input[0] in channels_last:
            unsqueezed[node.output[0]] = channels_last[node.input[0]]
            continue
        if _perm(node) == [0, 3, 1, 2] and node.input[0] in unsqueezed:
            alias[node.output[0]] = unsqueezed[node.input[0]]
            continue
        if node.op_type in ("Add", "Relu") and any(name in four_d for name in node.input):
            inputs = [as_4d(name) for name in node.input]
            if all(inputs):
                output = f"{node.output[0]}__height"
                nodes.append(helper.make_node(node.op_type, inputs, [output], name=f"{node.name}__height"))
                four_d[node.output[0]] = output
                continue
        inputs = [alias.get(name, name) for name in node.input]
        squeezes_needed.update(name for name in inputs if name in four_d)
        rewired = helper.make_node(node.op_type, inputs, list(node.output), name=node.name, domain=node.domain)
        rewired.attribute.extend(node.attribute)
        nodes.append(rewired)

    axes_name = "height_axis__const"
    if axes_name not in constants:
        new_inits.append(numpy_helper.from_array(np.array([2], np.int64), axes_name))
    squeezes_needed.update(output.name for output in graph.output if output.name in four_d)
    squeezes = [helper.make_node("Squeeze", [four_d[name], axes_name], [name], name=f"{name}__squeeze")
                for name in sorted(squeezes_needed)]
    ordered = _topological(_without_dead_nodes(nodes + squeezes, {o.name for o in graph.output}),
                           {i.name for i in graph.input} | set(constants) | {axes_name})
    return _model_with(model, ordered, list(graph.initializer) + new_inits)


def keep_batch_axis_named(model):
    """Write each Reshape that only moves axes of length one as the equivalent Transpose.

    tf2onnx turns the (N, W, 1) spectrum into the trunk's (N, 1, 1, W) with a Reshape to
    (-1, 1, 1, W). Shape inference then gives the batch axis a new, nameless length, so ONNX
    Runtime cannot prove block 1's two convolution outputs to be of one shape and leaves its
    residual Add and ReLU unfused: two more passes over the largest tensor of the network (11%
    of its time on one thread, profiled). A Transpose keeps the input's named batch axis.

    Parameters
    ----------
    model : onnx.ModelProto

    Returns
    -------
    onnx.ModelProto
        A new model computing the same outputs.
    """
    import onnx
    from onnx import helper, numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {info.name: [d.dim_value if d.HasField("dim_value") else None for d in info.type.tensor_type.shape.dim]
              for info in [*inferred.graph.value_info, *inferred.graph.input]}
    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}

    def as_transpose(node) -> list[int] | None:
        source = shapes.get(node.input[0])
        target = constants.get(node.input[1]) if len(node.input) > 1 else None
        if node.op_type != "Reshape" or source is None or target is None or len(source) != len(target):
            return None
        target = target.astype(int).tolist()
        if target[0] not in (-1, 0) or None in source[1:] or min(target[1:]) < 1:
            return None
        moved = [i for i in range(1, len(source)) if source[i] != 1]  # the axes that hold the data, in order
        kept = [i for i in range(1, len(source)) if source[i] == 1]
        if [source[i] for i in moved] != [n for n in target[1:] if n != 1]:
            return None
        return [0] + [moved.pop(0) if n != 1 else kept.pop(0) for n in target[1:]]

    nodes = []
    for node in model.graph.node:
        perm = as_transpose(node)
        name = f"{node.name or node.output[0]}__transpose"
        nodes.append(node if perm is None else helper.make_node("Transpose", [node.input[0]], list(node.output),
                                                                name=name, perm=perm))
    return _model_with(model, nodes, list(model.graph.initializer))


NCHWC_BLOCK = 16
"""Channels per block of ONNX Runtime's blocked (NCHWc) layout on AVX-512 CPUs (8 on AVX2): a
multiple of it is a whole number of blocks on either."""


def unfold_narrow_convolutions(model, narrower_than: int = 8):
    """Write each convolution with fewer output channels than a layout block as three that fill blocks.

    ONNX Runtime's blocked layout pads a convolution's output channels to its block (8 on AVX2, 16
    on AVX-512), so the comb head's evidence maps (16 -> 2 channels, kernel 7, over the whole
    12 217-channel spectrum) cost 4-8x their arithmetic: 19% of the network's time on one AVX2
    core (profiled), as much as block 1's 16 -> 16 convolution. ``y[o, t] = sum over c, k of
    W[o, c, k] x[c, t + k - pad]`` is computed instead as

    1. a 1x1 convolution to one channel per (tap k, output o): ``T[k, o, t] = sum_c W[o, c, k] x[c, t]``,
       zero-padded to whole blocks;
    2. a depthwise convolution that moves channel (k, o) by k - pad (its kernel is 1 at tap k);
    3. a 1x1 convolution summing the taps of each output, with the original bias.

    All three run in the blocked layout (the depthwise one only with whole blocks, hence the
    padding), and the sum is the same up to float32 rounding.

    Parameters
    ----------
    model : onnx.ModelProto
    narrower_than : int
        Convolutions with fewer output channels than this (and a kernel wider than 1, stride and
        dilation 1, one group, constant weights) are rewritten.

    Returns
    -------
    onnx.ModelProto
        A new model computing the same outputs.
    """
    from onnx import helper, numpy_helper

    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    new_inits, nodes = [], []
    for node in model.graph.node:
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        weights = constants.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if (weights is None or weights.ndim != 4 or weights.shape[0] >= narrower_than or weights.shape[2] != 1
                or weights.shape[3] == 1 or attributes.get("group", 1) != 1
                or any(v != 1 for key in ("strides", "dilations") for v in attributes.get(key, [1]))):
            nodes.append(node)
            continue
        outputs, inputs, _, taps = weights.shape
        width = -(-outputs * taps // NCHWC_BLOCK) * NCHWC_BLOCK
        spread = np.zeros((width, inputs, 1, 1), np.float32)  # channel k * outputs + o
        spread[:outputs * taps, :, 0, 0] = weights[:, :, 0, :].transpose(2, 0, 1).reshape(outputs * taps, inputs)
        shift = np.zeros((width, 1, 1, taps), np.float32)
        summed = np.zeros((outputs, width, 1, 1), np.float32)
        for k in range(taps):
            shift[k * outputs:(k + 1) * outputs, 0, 0, k] = 1
            summed[np.arange(outputs), k * outputs + np.arange(outputs), 0, 0] = 1
        base = node.name or node.output[0]
        names = [f"{base}__{part}" for part in ("spread", "shift", "sum")]
        new_inits += [numpy_helper.from_array(value, f"{name}_weights")
                      for value, name in zip((spread, shift, summed), names, strict=True)]
        pads = attributes.get("pads", [0, 0, 0, 0])
        nodes += [helper.make_node("Conv", [node.input[0], f"{names[0]}_weights"], [names[0]], name=names[0],
                                   kernel_shape=[1, 1]),
                  helper.make_node("Conv", [names[0], f"{names[1]}_weights"], [names[1]], name=names[1],
                                   kernel_shape=[1, taps], pads=pads, group=width),
                  helper.make_node("Conv", [names[1], f"{names[2]}_weights", *node.input[2:]], list(node.output),
                                   name=names[2], kernel_shape=[1, 1])]
    return _model_with(model, nodes, list(model.graph.initializer) + new_inits)


def _model_with(model, nodes: list, initializers: list):
    """``model`` with these nodes, keeping the initializers they read; checked by ONNX."""
    import onnx
    from onnx import helper

    used = {name for node in nodes for name in node.input}
    graph = helper.make_graph(nodes, model.graph.name, model.graph.input, model.graph.output,
                              [init for init in initializers if init.name in used])
    rewritten = helper.make_model(graph, opset_imports=model.opset_import, producer_name=model.producer_name)
    rewritten.ir_version = model.ir_version
    onnx.checker.check_model(rewritten)
    return rewritten


def _perm(node) -> list[int] | None:
    """The permutation of a Transpose node (None for other nodes)."""
    if node.op_type != "Transpose":
        return None
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), None)


def _without_dead_nodes(nodes: list, outputs: set[str]) -> list:
    """The nodes whose results reach a graph output (a rewrite may leave readers of nothing)."""
    while True:
        read = {name for node in nodes for name in node.input} | outputs
        alive = [node for node in nodes if any(name in read for name in node.output)]
        if len(alive) == len(nodes):
            return nodes
        nodes = alive


def _topological(nodes: list, available: set[str]) -> list:
    """Nodes ordered so that each follows the producers of its inputs (ONNX requires it)."""
    pending, ordered, available = list(nodes), [], set(available) | {""}
    while pending:
        ready = [node for node in pending if all(name in available for name in node.input)]
        if not ready:
            missing = sorted({name for node in pending for name in node.input} - available)
            raise ValueError(f"ONNX rewrite left inputs without producers: {missing[:5]}")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [node for node in pending if node not in ready]
    return ordered


def export_onnx(folder: str | os.PathLike) -> dict:
    """Write ``model.onnx`` (and the heads for MC dropout, ``heads.npz``) into a trained model
    folder and record them in its ``model.json`` (``onnx``, ``mc_heads``).

    Parameters
    ----------
    folder : str or path-like
        A trained model folder (:func:`~mtopnet_core.inference.load_trained_model`).

    Returns
    -------
    dict
        The record, ``model.json["onnx"]``: ``file``, ``sha256`` (of model.onnx),
        ``keras_sha256`` (of the model.keras it came from, so that a runtime can tell a stale
        export), ``opset``, ``inputs``, ``outputs`` and the converter's version.
    """
    from mtopnet_core.inference import load_trained_model
    from mtopnet_core.jsonio import atomic_path, read_json, write_json_atomic
    from mtopnet_core.mc_dropout import export_heads
    from mtopnet_core.runtime import COMB_EVIDENCE_OUTPUT, COMB_MAPS_OUTPUT, COMB_OUTPUT

    folder = Path(folder)
    # the folder is checked before TensorFlow's import, which prints to stderr whatever its log level
    trained = load_trained_model(folder, runtime="keras")
    import tensorflow as tf
    import tf2onnx

    forward = trained.forward
    signature = [tf.TensorSpec((None, *forward.get_layer(name).output.shape[1:]), tf.float32, name=name)
                 for name in ("spectrum", "continuum")]

    @tf.function(input_signature=signature)
    def network(spectrum, continuum):
        outputs = forward({"spectrum": spectrum, "continuum": continuum}, training=False)
        if COMB_MAPS_OUTPUT in outputs:
            # the comb's evidence and projection are ~10x and ~3x faster as sparse products in
            # NumPy (runtime.OnnxNetwork), from the prior logits and the evidence maps
            outputs.pop(COMB_OUTPUT)
            outputs.pop(COMB_EVIDENCE_OUTPUT)
        return outputs

    proto, _ = tf2onnx.convert.from_function(network, input_signature=signature, opset=ONNX_OPSET)
    proto = unfold_narrow_convolutions(keep_batch_axis_named(keep_height_axis(proto)))
    target = folder / ONNX_FILE
    with atomic_path(target) as temporary:
        temporary.write_bytes(proto.SerializeToString())
    record = {"file": ONNX_FILE, "sha256": file_sha256(target), "keras_sha256": file_sha256(folder / "model.keras"),
              "opset": ONNX_OPSET, "inputs": [s.name for s in signature],
              "outputs": sorted(o.name for o in proto.graph.output), "converter": f"tf2onnx {tf2onnx.__version__}"}
    heads = export_heads(trained.model, folder)
    meta_file = folder / "model.json"
    write_json_atomic(meta_file, {**read_json(meta_file, ValueError, "model metadata"), "onnx": record,
                                  "mc_heads": heads})
    logger.info("exported %s (%.1f MB)", target, target.stat().st_size / 1e6)
    return record
