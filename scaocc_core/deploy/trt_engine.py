"""TensorRT 10 engine: build from the exported ONNX file, cache next to it, run.

Only TensorRT 10 is supported (``pip install 'scaocc_ros[tensorrt]'`` pins
``tensorrt>=10,<11``); :func:`check_version` refuses another major version with a clear
error. TensorRT 11 removes weak typing (``BuilderFlag.FP16``, ``trtexec --fp16``): every
network is strongly typed, which is how this module already builds, but the 11 API is
untested here.

The engine is cached beside the ONNX file as
``<onnx stem>.<gpu name>.trt<TensorRT version>.<precision>.engine`` and rebuilt when it is
missing or older than the ONNX file. The precision is the export's (``scaocc export
--fp16`` writes float16 convolutions with float32 geometry); the network is built
*strongly typed*, so TensorRT follows the ONNX types exactly and the camera geometry and
voxel scatter stay float32. The command-line equivalent::

    scaocc export --checkpoint best.pt --onnx best.fp16.onnx --fp16
    trtexec --onnx=best.fp16.onnx --stronglyTyped --saveEngine=best.fp16.engine

``trtexec --onnx=best.onnx --fp16 --saveEngine=best.engine`` on the float32 export also
builds, but then TensorRT may pick float16 for any layer, the geometry included (voxel
coordinates lose up to 1/8 voxel); prefer the strongly typed build.

Inputs and outputs live in torch CUDA tensors (no pycuda needed); the engine runs on the
current torch CUDA stream with ``execute_async_v3``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scaocc_core.deploy.graph import INPUT_NAMES
from scaocc_core.deploy.onnx_model import ExportMetadata

log = logging.getLogger(__name__)
WORKSPACE_BYTES = 4 << 30
SUPPORTED_MAJOR = 10


class TensorRTError(RuntimeError):
    """TensorRT could not parse, build or load an engine, or is a version this code does not support."""


def check_version(trt: Any) -> None:
    """Raise :class:`TensorRTError` unless ``trt`` (the imported module) is TensorRT 10."""
    version = str(getattr(trt, "__version__", "unknown"))
    major = version.split(".")[0]
    if major != str(SUPPORTED_MAJOR):
        raise TensorRTError(
            f"TensorRT {version} is installed but the tensorrt backend supports TensorRT {SUPPORTED_MAJOR} only "
            f"(pip install 'tensorrt>={SUPPORTED_MAJOR},<{SUPPORTED_MAJOR + 1}'; see the README's TensorRT section)"
        )


def engine_path(onnx_path: Path, gpu_name: str, trt_version: str, precision: str) -> Path:
    """Cache file for an engine: keyed by GPU name, TensorRT version and precision."""
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name).strip("-").lower()
    return onnx_path.with_name(f"{onnx_path.stem}.{gpu}.trt{trt_version}.{precision}.engine")


def build_engine(trt: Any, onnx_path: Path, out_path: Path) -> bytes:
    """Parse ``onnx_path`` into a strongly typed network and serialise the engine to ``out_path``."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TensorRTError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    log.info("building TensorRT engine from %s (minutes on first use)", onnx_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TensorRTError(f"TensorRT failed to build an engine from {onnx_path}")
    data = bytes(serialized)
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(out_path)
    return data


class TensorRTEngine:
    """A deserialised engine with its I/O bound to preallocated CUDA tensors."""

    def __init__(self, onnx_path: str | Path, meta: ExportMetadata, device: str = "cuda") -> None:
        import tensorrt as trt  # checked by the caller; see backends.load_engine

        check_version(trt)
        self.device = torch.device(device)
        onnx_path = Path(onnx_path)
        torch.cuda.set_device(self.device)
        cache = engine_path(onnx_path, torch.cuda.get_device_name(self.device), trt.__version__, meta.precision)
        if cache.is_file() and cache.stat().st_mtime >= onnx_path.stat().st_mtime:
            data = cache.read_bytes()
            log.info("using cached TensorRT engine %s", cache)
        else:
            data = build_engine(trt, onnx_path, cache)
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise TensorRTError(f"cannot deserialise {cache}; delete it to rebuild")
        self.context = self.engine.create_execution_context()
        self.output_names = meta.output_names
        self.tensors: dict[str, torch.Tensor] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            dtype = torch.from_numpy(np.empty(0, dtype=trt.nptype(self.engine.get_tensor_dtype(name)))).dtype
            shape = tuple(self.engine.get_tensor_shape(name))
            self.tensors[name] = torch.empty(shape, dtype=dtype, device=self.device)
            self.context.set_tensor_address(name, self.tensors[name].data_ptr())

    def __call__(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        """Copy the graph inputs of ``feeds`` in, run on the current stream, copy the outputs out."""
        for name in INPUT_NAMES:
            self.tensors[name].copy_(torch.from_numpy(feeds[name]), non_blocking=True)
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise TensorRTError("TensorRT execution failed")
        return tuple(self.tensors[name].cpu().numpy() for name in self.output_names)
