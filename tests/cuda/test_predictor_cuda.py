"""The Predictor on CUDA: a synthetic frame, half precision, CUDA graphs and torch.compile.

Everything runs the trained demo checkpoint (``models/scaocc_tiny.pt``) on held-out
synthetic frames (another world seed than its training data), so labels are meaningful:
a random model labels almost everything one class and agreement would be trivial.
"""

from __future__ import annotations

import copy
from functools import cache

import numpy as np
import pytest
import torch

from scaocc_core.data.synthetic import SynthFrame, SynthSpec, render_frame
from scaocc_core.deploy.backends import TorchEngine
from scaocc_core.deploy.onnx_model import ExportMetadata
from scaocc_core.deploy.parity import ring_rig
from scaocc_core.predictor import Prediction, Predictor, PredictorInput, make_predictor
from tests.cuda.common import TRAINED, model_config, needs_cuda, varied_model

pytestmark = pytest.mark.cuda
FREE = 17


@cache
def frame(seed: int) -> SynthFrame:
    """A held-out synthetic frame at the checkpoint's input size and output grid."""
    cpu = make_predictor(TRAINED, "cpu", "torch")
    H, W = cpu.image_hw
    return render_frame(SynthSpec(seed=seed, scenes=1, frames=1, height=H, width=W, grid=cpu.grid), 0, 0)


def frame_input(seed: int) -> PredictorInput:
    f = frame(seed)
    return PredictorInput(list(f.images), f.intrinsics, f.ego_T_cam, np.ones(len(f.images), dtype=bool))


def predictor(device: torch.device, **options: object) -> Predictor:
    """The trained checkpoint on the torch engine with ``options`` (precision, compile, cuda_graph)."""
    if not TRAINED.is_file():
        pytest.skip(f"trained checkpoint {TRAINED} not present")
    return make_predictor(TRAINED, str(device), "torch", **options)  # type: ignore[arg-type]


def agreement(a: Prediction, b: Prediction) -> float:
    return float((a.labels == b.labels).mean())


def geometric_iou(pred: Prediction, f: SynthFrame) -> float:
    """Occupied-vs-free IoU over camera-visible voxels."""
    p, t = pred.labels[f.mask_camera] != FREE, f.semantics[f.mask_camera] != FREE
    return float((p & t).sum() / max((p | t).sum(), 1))


def test_predictor_on_device_matches_cpu(device: torch.device) -> None:
    inp = frame_input(101)
    gpu = predictor(device).predict(inp)
    cpu = predictor(torch.device("cpu")).predict(inp)
    assert gpu.labels.shape == tuple(frame(101).semantics.shape) and gpu.labels.dtype == np.uint8
    assert gpu.confidence.dtype == np.uint8 and gpu.labels.max() <= FREE
    assert agreement(gpu, cpu) >= 0.995  # TF32 convolutions on CUDA by default
    np.testing.assert_allclose(gpu.rotation_offsets, cpu.rotation_offsets, atol=1e-3)
    iou_gpu, iou_cpu = geometric_iou(gpu, frame(101)), geometric_iou(cpu, frame(101))
    assert abs(iou_gpu - iou_cpu) < 0.01 and iou_gpu > 0.2, (iou_gpu, iou_cpu)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_agrees_with_fp32(device: torch.device, precision: str) -> None:
    needs_cuda()
    ref, half = predictor(device), predictor(device, precision=precision)
    for seed in (101, 102):
        inp = frame_input(seed)
        a, b = ref.predict(inp), half.predict(inp)
        assert agreement(a, b) >= 0.995, f"{precision} labels agree on {agreement(a, b):.4f} of the voxels"
        assert np.abs(a.confidence.astype(int) - b.confidence.astype(int)).mean() < 3


def test_cuda_graph_matches_eager(device: torch.device) -> None:
    needs_cuda()
    eager, graph = predictor(device), predictor(device, cuda_graph=True)
    for seed in (101, 102, 101):  # replays with new inputs copied into the captured buffers
        inp = frame_input(seed)
        assert agreement(eager.predict(inp), graph.predict(inp)) >= 0.999
    half_eager, half_graph = predictor(device, precision="fp16"), predictor(device, precision="fp16", cuda_graph=True)
    inp = frame_input(102)
    assert agreement(half_eager.predict(inp), half_graph.predict(inp)) >= 0.999


def test_compiled_matches_eager(device: torch.device) -> None:
    eager, compiled = predictor(device), predictor(device, compile=True)
    for seed in (101, 102):
        inp = frame_input(seed)
        assert agreement(eager.predict(inp), compiled.predict(inp)) >= 0.999


def test_fused_pool_matches_reference_end_to_end(device: torch.device) -> None:
    """The Triton kernel inside a whole model: a hard-pooling config (the scaocc ones pool softly)."""
    needs_cuda()  # the fused kernel is the CUDA default; on the CPU both are the reference
    cfg = model_config("baseline_tiny")
    assert cfg.lift.pooling == "hard"
    model = varied_model(cfg, seed=3)
    meta = ExportMetadata(cfg, "labels", "fp32")
    fused = Predictor(TorchEngine(copy.deepcopy(model), str(device)), meta)
    plain = Predictor(TorchEngine(copy.deepcopy(model), str(device), fused_pool=False), meta)
    assert fused.engine.graph.model.fused_pool is not None  # type: ignore[attr-defined]
    assert plain.engine.graph.model.fused_pool is None  # type: ignore[attr-defined]
    n, H, W = cfg.image.num_cams, cfg.image.height, cfg.image.width
    K, T = ring_rig(n, (H, W))
    rng = np.random.default_rng(5)
    inp = PredictorInput([rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(n)], K, T,
                         np.ones(n, dtype=bool))
    a, b = fused.predict(inp), plain.predict(inp)
    assert len(np.unique(b.labels)) > 2, "degenerate model: agreement would be trivial"
    assert agreement(a, b) >= 0.999
