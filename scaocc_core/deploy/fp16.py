"""Half-precision convolutions in an exported graph, geometry kept in float32.

Camera geometry (inverses, projections, voxel coordinates) and the scatter must stay in
float32: voxel coordinates up to 200 have a float16 spacing of 0.125 voxel, enough to move
points between voxels. Only the convolutions and linear layers of the networks (image
encoder, depth head, propagation, voxel U-Net) carry the FLOPs, so exactly those nodes are
converted: their float weights become float16 and each is wrapped in
``Cast(fp16) -> op -> Cast(fp32)``. Every other node keeps its types, so the graph stays
well-typed by construction; runtimes fuse the casts (TensorRT builds such a graph as a
strongly typed network and follows these types).

Nodes are selected by the module scope the dynamo exporter records in each node's
``pkg.torch.onnx.name_scopes`` metadata.
"""

from __future__ import annotations

import ast

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: Module scopes whose heavy nodes run in float16.
NETWORK_SCOPES = ("model.encoder", "model.depth_head", "model.propagation", "model.voxel_net")
#: Node types converted (their inputs 1.. are initialisers: weights and biases).
HEAVY_OPS = ("Conv", "ConvTranspose", "Gemm")


def node_scopes(node: onnx.NodeProto) -> list[str]:
    """Module scopes recorded by the exporter for ``node`` (empty if none)."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            value = ast.literal_eval(prop.value)
            return [str(v) for v in value] if isinstance(value, list) else []
    return []


def in_network(node: onnx.NodeProto) -> bool:
    """Whether ``node`` belongs to one of :data:`NETWORK_SCOPES`."""
    return any(s.split(".")[:2] == t.split(".") for s in node_scopes(node) for t in NETWORK_SCOPES)


def convert_convolutions(model: onnx.ModelProto) -> int:
    """Convert the heavy network nodes of ``model`` to float16 in place; returns how many."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    new_nodes: list[onnx.NodeProto] = []
    converted = 0
    for node in graph.node:
        weights = list(node.input[1:])
        if (node.op_type not in HEAVY_OPS or not in_network(node)
                or not all(w in inits and inits[w].data_type == TensorProto.FLOAT and uses[w] == 1
                           for w in weights if w)):
            new_nodes.append(node)
            continue
        for w in weights:
            if w:
                half = numpy_helper.to_array(inits[w]).astype(np.float16)
                inits[w].CopyFrom(numpy_helper.from_array(half, w))
        x16, y16 = f"{node.name}_in_fp16", f"{node.name}_out_fp16"
        new_nodes.append(helper.make_node("Cast", [node.input[0]], [x16], f"{node.name}_cast_in",
                                          to=TensorProto.FLOAT16))
        out = node.output[0]
        node.input[0] = x16
        node.output[0] = y16
        new_nodes.append(node)
        new_nodes.append(helper.make_node("Cast", [y16], [out], f"{node.name}_cast_out", to=TensorProto.FLOAT))
        converted += 1
    del graph.node[:]
    graph.node.extend(new_nodes)
    # Stale value_info for converted tensors would contradict the new types.
    kept = [v for v in graph.value_info if not v.name.endswith("_fp16")]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    return converted
