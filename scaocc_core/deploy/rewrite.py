"""Exact graph rewrites applied at export time for speed.

Depthwise 3x3x3 convolutions (the normalised convolution's spatial kernel) run slowly in
ONNX Runtime's grouped 3D convolution. :func:`depthwise3d_as_conv2d` rewrites each as a
grouped 2D convolution over (X, Y) with the Z axis folded into the channels: for channel
``c`` the Z taps become a banded ``Z x Z`` block, ``W2[(c, zo), zi, kx, ky] =
k[c, kx, ky, zi - zo + 1]`` for ``|zi - zo| <= 1`` (zero padding in Z falls out of the
band). The result is the same sum of the same products (about 2.5x faster on CPU).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _ints(node: onnx.NodeProto, name: str, default: list[int]) -> list[int]:
    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]
    return default


def _is_depthwise_3x3x3(node: onnx.NodeProto, weight: np.ndarray | None) -> bool:
    if node.op_type != "Conv" or weight is None or weight.ndim != 5 or weight.shape[1:] != (1, 3, 3, 3):
        return False
    return (_ints(node, "group", [1]) == [weight.shape[0]] and _ints(node, "pads", [0] * 6) == [1] * 6
            and _ints(node, "strides", [1] * 3) == [1] * 3 and _ints(node, "dilations", [1] * 3) == [1] * 3)


def banded_weight(kernel: np.ndarray, depth: int) -> np.ndarray:
    """``C 1 3 3 3`` depthwise kernel -> ``(C Z) Z 3 3`` grouped 2D weight (see module docstring)."""
    C = kernel.shape[0]
    W = np.zeros((C, depth, depth, 3, 3), dtype=kernel.dtype)  # c zo zi kx ky
    for zo in range(depth):
        for dz in (-1, 0, 1):
            if 0 <= zo + dz < depth:
                W[:, zo, zo + dz] = kernel[:, 0, :, :, dz + 1]
    return W.reshape(C * depth, depth, 3, 3)


def depthwise3d_as_conv2d(model: onnx.ModelProto) -> int:
    """Rewrite depthwise 3x3x3 Conv nodes with static ``1 C X Y Z`` input; returns how many."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.graph.value_info, *inferred.graph.input]}
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    new_nodes: list[onnx.NodeProto] = []
    count = 0
    for node in graph.node:
        w_init = inits.get(node.input[1]) if node.op_type == "Conv" else None
        weight = numpy_helper.to_array(w_init) if w_init is not None else None
        shape = shapes.get(node.input[0], [])
        if not _is_depthwise_3x3x3(node, weight) or len(shape) != 5 or min(shape) <= 0 or shape[0] != 1:
            new_nodes.append(node)
            continue
        assert weight is not None
        _, C, X, Y, Z = shape
        p = f"{node.name}_dw2d"
        consts = {f"{p}_w": banded_weight(weight, Z),
                  f"{p}_s_in": np.array([1, C * Z, X, Y], np.int64),
                  f"{p}_s_out": np.array([1, C, Z, X, Y], np.int64)}
        inputs = [f"{p}_x2", f"{p}_w"]
        if len(node.input) > 2 and node.input[2]:
            consts[f"{p}_b"] = np.repeat(numpy_helper.to_array(inits[node.input[2]]), Z)  # bias per (c, z)
            inputs.append(f"{p}_b")
        graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
        conv = helper.make_node("Conv", inputs, [f"{p}_y2"], p, group=C, pads=[1, 1, 1, 1], kernel_shape=[3, 3])
        conv.metadata_props.extend(node.metadata_props)  # keeps the module scope (fp16 selection)
        new_nodes += [
            helper.make_node("Transpose", [node.input[0]], [f"{p}_xt"], f"{p}_in_t", perm=[0, 1, 4, 2, 3]),  # 1 C Z X Y
            helper.make_node("Reshape", [f"{p}_xt", f"{p}_s_in"], [f"{p}_x2"], f"{p}_in_r"),  # 1 (C Z) X Y
            conv,
            helper.make_node("Reshape", [f"{p}_y2", f"{p}_s_out"], [f"{p}_yt"], f"{p}_out_r"),  # 1 C Z X Y
            helper.make_node("Transpose", [f"{p}_yt"], [node.output[0]], f"{p}_out_t", perm=[0, 1, 3, 4, 2]),
        ]
        count += 1
    del graph.node[:]
    graph.node.extend(new_nodes)
    used = {i for n in graph.node for i in n.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return count
