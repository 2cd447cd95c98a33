"""Inference engines behind the one :class:`~scaocc_core.predictor.Predictor`.

An :class:`Engine` runs preprocessed feeds (:data:`~scaocc_core.deploy.graph.INPUT_NAMES`)
and returns the graph outputs; the Predictor owns everything around it (resize, crop,
calibration checks, unpacking). :func:`load_engine` opens a ``.pt`` checkpoint or an
``.onnx`` export on one backend and returns the engine with the model's metadata
(:func:`scaocc_core.predictor.make_predictor` wraps the pair into a Predictor):

* ``torch``: the checkpoint's model (:class:`TorchEngine`). On CUDA the hard pooling runs
  the fused Triton kernel, and optionally float16/bfloat16 autocast for the networks
  (geometry and scatter stay float32), ``torch.compile`` and CUDA graphs.
* ``onnxruntime``: the ONNX file (CPU, or the CUDA execution provider where installed).
* ``tensorrt``: a TensorRT 10 engine built from the ONNX file and cached beside it (see
  :mod:`scaocc_core.deploy.trt_engine` for the ``trtexec`` equivalent).

Backends that need ONNX export a ``.pt`` checkpoint once to ``<checkpoint>.onnx`` (or
``.fp16.onnx``) beside it, re-exported when the checkpoint is newer. This module never
imports the Predictor.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from scaocc_core.checkpoint import load_checkpoint
from scaocc_core.deploy.fp16 import NETWORK_SCOPES
from scaocc_core.deploy.graph import INPUT_NAMES, OUTPUT_NAMES, InferenceGraph
from scaocc_core.deploy.onnx_model import ExportMetadata, OnnxModelError, ort_session, read_metadata
from scaocc_core.model.causal_occ import CausalOcc

log = logging.getLogger(__name__)
BACKENDS = ("torch", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16")


class EngineError(ValueError):
    """The model file or the engine options cannot be used (the message says why)."""


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (package or device missing)."""


class Engine(Protocol):
    """Runs preprocessed feeds (:data:`INPUT_NAMES`) and returns the graph outputs."""

    output_names: tuple[str, ...]

    def __call__(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        """Outputs named :attr:`output_names`, as numpy."""
        ...


class OrtEngine:
    """An ONNX Runtime session over one exported file."""

    def __init__(self, path: Path, meta: ExportMetadata, device: str, threads: int | None = None) -> None:
        self.session = ort_session(path, device, threads)
        self.output_names = meta.output_names

    def __call__(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        """Run the session."""
        return tuple(self.session.run(list(self.output_names), {k: feeds[k] for k in INPUT_NAMES}))


def labels_from_logits(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Argmax labels and confidence (max softmax x 255, rounded) of ``b K X Y Z`` logits, as uint8."""
    z = logits.astype(np.float32) - logits.max(axis=1, keepdims=True)
    prob = np.exp(z)
    conf = 1.0 / prob.sum(axis=1)  # the max class has exp(0) = 1
    return logits.argmax(axis=1).astype(np.uint8), np.round(conf * 255.0).astype(np.uint8)


class _Autocast(nn.Module):
    """Runs ``module`` under CUDA autocast and returns float32 tensors."""

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.module = module
        self.dtype = dtype

    def forward(self, *args: Any) -> Any:
        """Forward of the wrapped module, outputs cast back to float32."""
        with torch.autocast("cuda", dtype=self.dtype):
            out = self.module(*args)
        if isinstance(out, tuple):
            return tuple(t.float() for t in out)
        return out.float()


def fused_pool_kernel(device: str, enabled: bool = True) -> Callable[..., Tensor] | None:
    """The hard-pooling kernel the torch engine hands to the model: the fused Triton kernel
    on CUDA when Triton is installed (and ``enabled``), else ``None`` (PyTorch's ``index_add``).

    The kernel module is imported only for CUDA: Triton compiles (or, with
    ``TRITON_INTERPRET=1``, interprets) the kernel as the module loads.
    """
    if not (enabled and device.startswith("cuda")):
        return None
    pool_triton = importlib.import_module("scaocc_core.deploy.pool_triton")
    return pool_triton.pool_hard_fused if pool_triton.triton_available() else None  # type: ignore[no-any-return]


class TorchEngine:
    """The torch backend: eager, ``torch.compile``-d, or a replayed CUDA graph.

    On CUDA with Triton installed the model's hard pooling runs the fused kernel
    (:func:`~scaocc_core.deploy.pool_triton.pool_hard_fused`, handed to the model as its
    ``fused_pool`` attribute; ``fused_pool=False`` keeps the PyTorch reference). Autocast
    wraps only the networks (:data:`~scaocc_core.deploy.fp16.NETWORK_SCOPES`), so voxel
    coordinates and the scatter stay float32, as in the float16 ONNX export. A CUDA graph is
    captured on the first call (after warm-up on a side stream) and replayed with the inputs
    copied into its static buffers.
    """

    def __init__(self, model: CausalOcc, device: str = "cpu", precision: str = "fp32", compile: bool = False,
                 cuda_graph: bool = False, fused_pool: bool = True) -> None:
        if precision not in PRECISIONS:
            raise EngineError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        cuda = device.startswith("cuda")
        if (precision != "fp32" or cuda_graph) and not cuda:
            raise EngineError(f"precision {precision} / CUDA graphs need a CUDA device, got {device!r}")
        if cuda and not torch.cuda.is_available():
            raise BackendUnavailable("device 'cuda' requested but torch.cuda.is_available() is False")
        model.fused_pool = fused_pool_kernel(device, fused_pool)
        if precision != "fp32":
            dtype = torch.float16 if precision == "fp16" else torch.bfloat16
            for scope in NETWORK_SCOPES:
                name = scope.split(".")[1]
                setattr(model, name, _Autocast(getattr(model, name), dtype))
        self.output_names: tuple[str, ...] = OUTPUT_NAMES
        self.device = torch.device(device)
        self.graph = InferenceGraph(model.to(self.device).eval())
        self.forward: Any = torch.compile(self.graph) if compile else self.graph
        self.cuda_graph = cuda_graph
        self._captured: tuple[torch.cuda.CUDAGraph, list[Tensor], tuple[Tensor, ...]] | None = None

    def _capture(self, args: list[Tensor]) -> tuple[torch.cuda.CUDAGraph, list[Tensor], tuple[Tensor, ...]]:
        static = [a.clone() for a in args]
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):  # warm-up (allocator, cuDNN autotuning, compilation)
                self.forward(*static)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = self.forward(*static)
        return graph, static, tuple(outputs)

    def __call__(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        """Run eagerly, compiled, or by replaying the captured CUDA graph."""
        with torch.inference_mode():
            args = [torch.from_numpy(feeds[k]).to(self.device, non_blocking=True) for k in INPUT_NAMES]
            if not self.cuda_graph:
                return tuple(t.cpu().numpy() for t in self.forward(*args))
            if self._captured is None:
                with _closed_form_inverse():
                    self._captured = self._capture(args)
            graph, static, outputs = self._captured
            for dst, src in zip(static, args):
                dst.copy_(src)
            graph.replay()
            return tuple(t.cpu().numpy() for t in outputs)


def _closed_form_inverse() -> Any:
    """A torch-function mode mapping ``torch.linalg.inv`` of 3x3 matrices to the adjugate formula.

    ``torch.linalg.inv`` checks for singular input with a device sync, which CUDA graph
    capture forbids; the closed form is sync-free (same values to float rounding).
    """
    from torch.overrides import TorchFunctionMode

    def inverse(A: Tensor) -> Tensor:
        adj = torch.stack([A[..., (r + 1) % 3, (c + 1) % 3] * A[..., (r + 2) % 3, (c + 2) % 3]
                           - A[..., (r + 1) % 3, (c + 2) % 3] * A[..., (r + 2) % 3, (c + 1) % 3]
                           for c in range(3) for r in range(3)], dim=-1).unflatten(-1, (3, 3))  # ... 3 3
        det = (A[..., 0, :] * adj[..., :, 0]).sum(-1)  # ...
        return adj / det[..., None, None]

    class ClosedFormInverse(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            if func is torch.linalg.inv and args[0].shape[-2:] == (3, 3) and not kwargs:
                return inverse(args[0])
            return func(*args, **(kwargs or {}))

    return ClosedFormInverse()


def _tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailable(
            "backend 'tensorrt' needs the TensorRT 10 Python package and a CUDA GPU: "
            f"pip install tensorrt (import failed: {exc})"
        ) from exc
    return tensorrt


def onnx_for_checkpoint(checkpoint: Path, precision: str = "fp32") -> Path:
    """The ONNX export of ``checkpoint`` cached beside it (exported when missing or stale)."""
    from scaocc_core.deploy.export import export_model

    suffix = ".fp16.onnx" if precision == "fp16" else ".onnx"
    out = checkpoint.with_name(checkpoint.stem + suffix)
    if out.is_file() and out.stat().st_mtime >= checkpoint.stat().st_mtime:
        return out
    model, cfg = load_checkpoint(checkpoint, "cpu")
    tmp = out.with_name(out.stem + ".tmp.onnx")
    export_model(model, cfg, tmp, "labels", precision)
    tmp.replace(out)
    return out


def load_engine(path: str | Path, device: str = "cpu", backend: str = "torch", precision: str = "fp32",
                compile: bool = False, cuda_graph: bool = False, threads: int | None = None,
                fused_pool: bool = True) -> tuple[Engine, ExportMetadata]:
    """The engine for a ``.pt`` checkpoint or an ``.onnx`` export on ``backend``, and the model's metadata.

    ``precision`` (fp32/fp16/bf16), ``compile``, ``cuda_graph`` and ``fused_pool`` apply to
    ``torch``; ``precision`` fp16 also picks the float16 export when a checkpoint is given to
    an ONNX backend; ``threads`` sets ONNX Runtime's intra-op threads.
    """
    path = Path(path)
    if backend not in BACKENDS:
        raise EngineError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    if not path.is_file():
        raise EngineError(f"model file not found: {path}")
    is_onnx = path.suffix == ".onnx"
    if backend == "torch":
        if is_onnx:
            raise EngineError(f"backend 'torch' needs a .pt checkpoint, got {path}")
        model, cfg = load_checkpoint(path, "cpu")
        engine = TorchEngine(model, device, precision, compile, cuda_graph, fused_pool)
        return engine, ExportMetadata(cfg, "labels", precision)
    trt = _tensorrt() if backend == "tensorrt" else None
    if backend == "tensorrt" and not (device.startswith("cuda") and torch.cuda.is_available()):
        raise BackendUnavailable(f"backend 'tensorrt' needs a CUDA device, got {device!r}")
    onnx_path = path if is_onnx else onnx_for_checkpoint(path, "fp16" if precision == "fp16" else "fp32")
    meta = read_metadata(onnx_path)
    onnx_engine: Engine
    if trt is not None:
        from scaocc_core.deploy.trt_engine import TensorRTEngine

        onnx_engine = TensorRTEngine(onnx_path, meta, device)
    else:
        try:
            onnx_engine = OrtEngine(onnx_path, meta, device, threads)
        except OnnxModelError as exc:
            if "CUDAExecutionProvider" in str(exc):
                raise BackendUnavailable(str(exc)) from exc
            raise
    return onnx_engine, meta
