"""The exported ONNX file: its metadata (enough to rebuild a predictor) and ORT sessions.

``scaocc export`` writes :class:`ExportMetadata` into the model's ``metadata_props`` (keys
prefixed ``scaocc.``), so a predictor is rebuilt from the ``.onnx`` file alone: config,
grid, class names, input/output names and shapes, output kind and precision.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from scaocc_core.config import ConfigError, GridConfig, ModelConfig, model_config_from_dict
from scaocc_core.deploy.graph import INPUT_NAMES, LOGITS_OUTPUT_NAMES, OUTPUT_NAMES
from scaocc_core.grid import CLASS_NAMES

log = logging.getLogger(__name__)
PREFIX = "scaocc."


class OnnxModelError(RuntimeError):
    """An ONNX file is missing, corrupt, or lacks the scaocc export metadata."""


def input_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Static graph input shapes (batch 1) for a config; keys follow :data:`INPUT_NAMES`."""
    n, H, W = cfg.image.num_cams, cfg.image.height, cfg.image.width
    return {"images": (1, n, 3, H, W), "intrinsics": (1, n, 3, 3), "ego_T_cam": (1, n, 4, 4),
            "post_rot": (1, n, 3, 3), "post_tran": (1, n, 3), "camera_valid": (1, n)}


@dataclass(frozen=True)
class ExportMetadata:
    """What the ONNX file carries besides the graph."""

    config: ModelConfig
    outputs: str  # "labels" (labels, confidence, offsets) or "logits" (logits, offsets)
    precision: str  # "fp32" or "fp16" (network weights; inputs and outputs stay fp32/uint8)
    class_names: tuple[str, ...] = CLASS_NAMES

    @property
    def grid(self) -> GridConfig:
        """The voxel grid of the exported model."""
        return self.config.grid

    @property
    def output_names(self) -> tuple[str, ...]:
        """Graph output names for :attr:`outputs`."""
        return OUTPUT_NAMES if self.outputs == "labels" else LOGITS_OUTPUT_NAMES

    def to_props(self) -> dict[str, str]:
        """String key/value pairs for ``ModelProto.metadata_props``."""
        values: dict[str, Any] = {
            "format": "scaocc-onnx",
            "config": self.config.to_dict(),
            "outputs": self.outputs,
            "precision": self.precision,
            "class_names": list(self.class_names),
            "grid": {"lower": self.grid.lower, "upper": self.grid.upper, "size": self.grid.size},
            "input_names": list(INPUT_NAMES),
            "input_shapes": {k: list(v) for k, v in input_shapes(self.config).items()},
            "output_names": list(self.output_names),
        }
        return {PREFIX + k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}

    @classmethod
    def from_props(cls, props: dict[str, str], source: str = "<onnx>") -> ExportMetadata:
        """Parse ``metadata_props``; raises :class:`OnnxModelError` naming what is wrong."""
        if props.get(PREFIX + "format") != "scaocc-onnx":
            raise OnnxModelError(f"{source}: not a scaocc ONNX export (no '{PREFIX}format' metadata)")
        try:
            cfg = model_config_from_dict(json.loads(props[PREFIX + "config"]))
            meta = cls(cfg, props[PREFIX + "outputs"], props[PREFIX + "precision"],
                       tuple(json.loads(props[PREFIX + "class_names"])))
        except (KeyError, json.JSONDecodeError, ConfigError) as exc:
            raise OnnxModelError(f"{source}: invalid scaocc metadata: {exc}") from exc
        if meta.outputs not in ("labels", "logits") or meta.precision not in ("fp32", "fp16"):
            raise OnnxModelError(f"{source}: unknown outputs/precision {meta.outputs!r}/{meta.precision!r}")
        return meta


def write_metadata(model: onnx.ModelProto, meta: ExportMetadata) -> None:
    """Replace the ``scaocc.*`` entries of ``model.metadata_props`` by ``meta``."""
    keep = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    for key, value in [*keep, *meta.to_props().items()]:
        model.metadata_props.add(key=key, value=value)


def load_onnx(path: str | Path, load_weights: bool = True) -> onnx.ModelProto:
    """Load and structurally check an ONNX file; raises :class:`OnnxModelError` on failure."""
    path = Path(path)
    if not path.is_file():
        raise OnnxModelError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=load_weights)
        if load_weights:
            onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, OSError...
        raise OnnxModelError(f"cannot read ONNX file {path}: {type(exc).__name__}: {exc}") from exc
    return model


def read_metadata(path: str | Path) -> ExportMetadata:
    """The :class:`ExportMetadata` stored in an ONNX file."""
    model = load_onnx(path, load_weights=False)
    return ExportMetadata.from_props({p.key: p.value for p in model.metadata_props}, str(path))


def default_threads() -> int:
    """Intra-op threads: the CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def reducing_scatters(model: onnx.ModelProto) -> list[str]:
    """The ScatterND / ScatterElements nodes of ``model`` that add (or otherwise reduce) into
    their output: the pooling of every exported scaocc graph."""
    return [
        node.name or node.op_type
        for node in model.graph.node
        if node.op_type in ("ScatterND", "ScatterElements")
        and any(a.name == "reduction" and a.s not in (b"", b"none") for a in node.attribute)
    ]


def ort_session(path: str | Path, device: str = "cpu", threads: int | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` with all graph optimisations.

    ``device`` ``cuda[:i]`` uses the CUDA execution provider (raises
    :class:`OnnxModelError` if this onnxruntime build lacks it).

    On the CPU a graph with a reducing scatter (:func:`reducing_scatters`) runs on one intra-op
    thread, whatever ``threads`` asks: ONNX Runtime's CPU ScatterND with ``reduction="add"``
    splits the updates over threads without atomic adds, so updates to the same voxel are
    lost (measured with onnxruntime 1.32: 185,856 rows of ones into 2,000 rows lost 0.2 % of
    the sum on 2 threads, up to 83 in one cell on 4; known upstream as microsoft/onnxruntime
    issues 18048 and 23396). One thread is exact and slower (scaocc_tiny on the 2-core VM:
    147 -> 225 ms).
    """
    import onnxruntime as ort

    path = Path(path)
    model = load_onnx(path, load_weights=True)  # clear error for missing/corrupt files
    threads = threads or default_threads()
    scatters = reducing_scatters(model)
    if scatters and threads > 1 and not device.startswith("cuda"):
        log.warning("%s: %d reducing scatter(s) (%s); ONNX Runtime's CPU kernel loses updates on several "
                    "threads, so this session runs on 1 intra-op thread instead of %d",
                    path.name, len(scatters), scatters[0], threads)
        threads = 1
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    providers: list[Any] = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise OnnxModelError("device 'cuda' requested but this onnxruntime has no CUDAExecutionProvider "
                                 "(install onnxruntime-gpu)")
        index = int(device.split(":")[1]) if ":" in device else 0
        providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    try:
        return ort.InferenceSession(str(path), opts, providers=providers)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
        raise OnnxModelError(f"onnxruntime cannot load {path}: {exc}") from exc
