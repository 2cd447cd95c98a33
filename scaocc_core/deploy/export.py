"""Export a checkpoint to ONNX, then check it against PyTorch with ONNX Runtime.

    scaocc export --checkpoint runs/tiny/best.pt --onnx tiny.onnx [--fp16] [--labels|--logits]

The graph runs from images in [0, 1] (normalisation inside) and calibration matrices to
per-voxel labels + confidence (default) or class logits, with static shapes for the
checkpoint's rig and resolution. Camera geometry, the learnable camera offsets and the
scatter pooling are part of the graph, with standard ONNX ops only.

Made with the dynamo exporter (``torch.onnx.export(..., dynamo=True)``): the legacy
TorchScript exporter turns ``index_add`` into ScatterElements without reduction (silently
wrong); this one emits ScatterND with ``reduction="add"``, which :func:`check_graph`
asserts. ``torch.linalg.inv`` (3x3 intrinsics and augmentation matrices) has no ONNX
lowering; :func:`inverse_3x3` supplies one (closed-form adjugate inverse, standard ops).
The exporter folds BatchNorm into the convolutions and the normalised convolution's
softmax kernels into constants (the model already runs its depthwise 3D convolutions as
grouped 2D ones, :func:`scaocc_core.model.depthwise.depthwise3x3x3`); ONNX Runtime applies
its graph optimisations on load.
Export metadata (config, grid, class names, shapes) goes into ``metadata_props``.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import onnx
import torch
from onnxscript import opset18

from scaocc_core.checkpoint import load_checkpoint
from scaocc_core.config import ModelConfig
from scaocc_core.deploy.fp16 import convert_convolutions
from scaocc_core.deploy.graph import INPUT_NAMES, InferenceGraph, LogitsGraph
from scaocc_core.deploy.onnx_model import ExportMetadata, OnnxModelError, ort_session, write_metadata
from scaocc_core.deploy.parity import ParityReport, compare, rig_feeds, torch_outputs
from scaocc_core.model.causal_occ import CausalOcc

log = logging.getLogger(__name__)
OPSET = 18
op: Any = opset18  # onnxscript ops; untyped here (the exporter passes symbolic values)


class ExportError(RuntimeError):
    """The model could not be exported, or the exported graph is not what we require."""


def inverse_3x3(A: Any) -> Any:
    """ONNX lowering of ``torch.linalg.inv`` for ``... 3 3`` matrices: adjugate over determinant.

    ``A`` is the exporter's symbolic value; every inverse in the model is of a 3x3
    intrinsics or image-augmentation matrix.
    """
    m = [[op.Gather(op.Gather(A, op.Constant(value_int=r), axis=-2), op.Constant(value_int=c), axis=-1)
          for c in range(3)] for r in range(3)]  # 3x3 of ... tensors
    (a, b, c), (d, e, f), (g, h, i) = m

    def minor(p: Any, q: Any, r: Any, s: Any) -> Any:
        return op.Sub(op.Mul(p, q), op.Mul(r, s))

    adj = [minor(e, i, f, h), minor(c, h, b, i), minor(b, f, c, e),
           minor(f, g, d, i), minor(a, i, c, g), minor(c, d, a, f),
           minor(d, h, e, g), minor(b, g, a, h), minor(a, e, b, d)]
    det = op.Add(op.Add(op.Mul(a, adj[0]), op.Mul(b, adj[3])), op.Mul(c, adj[6]))  # ...
    last = op.Constant(value_ints=[-1])
    flat = op.Concat(*[op.Unsqueeze(op.Div(x, det), last) for x in adj], axis=-1)  # ... 9
    return op.Reshape(flat, op.Shape(A))  # ... 3 3


def check_graph(model: onnx.ModelProto) -> Counter[str]:
    """Require standard ops only and summing scatters; returns the op-type histogram."""
    ops = Counter(n.op_type for n in model.graph.node)
    custom = {f"{n.domain}::{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx")}
    if custom:
        raise ExportError(f"exported graph contains non-standard ops: {sorted(custom)}")
    if ops["ScatterElements"]:
        raise ExportError("exported graph contains ScatterElements (the legacy exporter's wrong index_add)")
    scatters = [n for n in model.graph.node if n.op_type == "ScatterND"]
    for node in scatters:
        reduction = next((a.s.decode() for a in node.attribute if a.name == "reduction"), "none")
        if reduction != "add":
            raise ExportError(f"ScatterND {node.name} has reduction={reduction!r}, pooling needs 'add'")
    if not scatters:
        raise ExportError("exported graph has no ScatterND: the voxel pooling is missing")
    return ops


def export_graph(graph: InferenceGraph, cfg: ModelConfig, path: str | Path, precision: str = "fp32") -> Path:
    """Export ``graph`` (CPU, eval) for ``cfg``'s static shapes to ``path`` with metadata."""
    if precision not in ("fp32", "fp16"):
        raise ExportError(f"precision must be fp32 or fp16, got {precision!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    outputs = "logits" if isinstance(graph, LogitsGraph) else "labels"
    meta = ExportMetadata(cfg, outputs, precision)
    feeds = rig_feeds(cfg)
    args = tuple(torch.from_numpy(feeds[k]) for k in INPUT_NAMES)
    t0 = time.perf_counter()
    graph = graph.cpu().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            onnx_program = torch.onnx.export(
                graph, args, dynamo=True, input_names=list(INPUT_NAMES), output_names=list(meta.output_names),
                opset_version=OPSET, optimize=True, verbose=False,
                custom_translation_table={torch.ops.aten.linalg_inv.default: inverse_3x3},
            )
        except Exception as exc:  # torch.export / onnx conversion raise many types
            raise ExportError(f"ONNX export of {cfg.name} failed: {type(exc).__name__}: {exc}") from exc
    if onnx_program is None:
        raise ExportError("torch.onnx.export returned no program")
    model = onnx_program.model_proto
    ops = check_graph(model)
    if precision == "fp16":
        log.info("fp16: converted %d convolution/linear nodes", convert_convolutions(model))
    write_metadata(model, meta)
    model.producer_name = "scaocc"
    onnx.save(model, str(path))
    log.info("exported %s in %.1f s: %d nodes (%d Conv, %d ScatterND add)", path, time.perf_counter() - t0,
             len(model.graph.node), ops["Conv"], ops["ScatterND"])
    return path


def export_model(model: CausalOcc, cfg: ModelConfig, path: str | Path, outputs: str = "labels",
                 precision: str = "fp32") -> Path:
    """Export a model with ``outputs`` ``labels`` (labels + confidence) or ``logits``."""
    if outputs not in ("labels", "logits"):
        raise ExportError(f"outputs must be 'labels' or 'logits', got {outputs!r}")
    graph = LogitsGraph(model) if outputs == "logits" else InferenceGraph(model)
    return export_graph(graph, cfg, path, precision)


def onnx_parity(path: str | Path, graph: InferenceGraph, feeds: dict[str, object] | None = None,
                threads: int | None = None) -> ParityReport:
    """Run the ONNX file with ONNX Runtime (CPU) and the torch ``graph`` on the same feeds."""
    from scaocc_core.deploy.onnx_model import read_metadata

    meta = read_metadata(path)
    inputs = feeds if feeds is not None else rig_feeds(meta.config, seed=1)
    session = ort_session(path, "cpu", threads)
    ort_out = tuple(session.run(list(meta.output_names), dict(inputs)))
    ref = torch_outputs(graph.cpu().eval(), inputs)  # type: ignore[arg-type]
    return compare(ref, ort_out, meta.outputs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """CLI arguments of ``scaocc export``."""
    parser.add_argument("--checkpoint", required=True, type=Path, help="scaocc checkpoint (.pt)")
    parser.add_argument("--onnx", required=True, type=Path, help="output ONNX file")
    parser.add_argument("--fp16", action="store_true", help="float16 convolutions (geometry stays float32)")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--labels", dest="outputs", action="store_const", const="labels",
                      help="outputs: labels, confidence, camera offsets (default)")
    kind.add_argument("--logits", dest="outputs", action="store_const", const="logits",
                      help="outputs: class logits, camera offsets")
    parser.set_defaults(outputs="labels")
    parser.add_argument("--no-parity", action="store_true", help="skip the ONNX Runtime parity check")


def run(args: argparse.Namespace) -> int:
    """Export, then print the parity check; returns 1 if parity fails."""
    model, cfg = load_checkpoint(args.checkpoint, "cpu")
    precision = "fp16" if args.fp16 else "fp32"
    try:
        path = export_model(model, cfg, args.onnx, args.outputs, precision)
    except ExportError as exc:
        log.error("%s", exc)
        return 1
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, {cfg.name}, {args.outputs}, {precision})")
    if args.no_parity:
        return 0
    graph = LogitsGraph(model) if args.outputs == "logits" else InferenceGraph(model)
    try:
        report = onnx_parity(path, graph)
    except OnnxModelError as exc:
        print(f"parity check not run: {exc}")
        return 0 if precision == "fp16" else 1
    ok = report.passed() if precision == "fp32" else report.passed(0.02, 0.98, 3.0)  # fp16: lossy
    print(f"parity ONNX Runtime vs PyTorch: {report} -> {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1
