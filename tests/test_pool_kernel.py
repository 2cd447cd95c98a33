"""The fused Triton pooling kernel vs the PyTorch reference (CPU: Triton's interpreter)."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest
import torch

from scaocc_core.model.splat import grouped_features, pool_hard, pool_hard_reference, splat


@pytest.fixture(scope="module")
def kernel() -> ModuleType:
    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"  # read when the kernel is decorated, i.e. on import
    module = importlib.import_module("scaocc_core.deploy.pool_triton")
    assert module.triton_available(), "Triton is in requirements.txt; install it"
    return module


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def inputs(seed: int, b: int = 2, n: int = 2, G: int = 2, D: int = 5, h: int = 3, w: int = 4, C: int = 6,
           size: tuple[int, int, int] = (5, 4, 3)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    depth = torch.rand(b, n, G, D, h, w, generator=g).softmax(dim=3)
    context = torch.randn(b, n, C, h, w, generator=g)
    hi = torch.tensor(size, dtype=torch.float32)
    coords = torch.rand(b, n, D, h, w, 3, generator=g) * (hi + 2) - 1  # about a third outside
    return depth.to(device()), context.to(device()), coords.to(device())


@pytest.mark.parametrize("seed", [0, 1])
def test_fused_matches_reference(kernel: ModuleType, seed: int) -> None:
    size = (5, 4, 3)
    depth, context, coords = inputs(seed, size=size)
    fused = kernel.pool_hard_fused(depth, context, coords, size)
    values = grouped_features(depth, context).cpu().double()
    ref = pool_hard_reference(values, coords.reshape(2, -1, 3).cpu().double(), size)
    assert fused.shape == ref.shape == (2, 6, *size)
    torch.testing.assert_close(fused.cpu().double(), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused, splat(depth, context, coords, size, "hard")[0], atol=1e-5, rtol=1e-5)
    assert ref.abs().sum() > 0


def test_fused_plain_lss_and_uneven_channels(kernel: ModuleType) -> None:
    size = (4, 4, 2)
    depth, context, coords = inputs(2, G=1, C=5, size=size)  # G = 1, C not a power of two
    fused = kernel.pool_hard_fused(depth, context, coords, size)
    ref = pool_hard(grouped_features(depth, context), coords.reshape(2, -1, 3), size)
    torch.testing.assert_close(fused, ref, atol=1e-5, rtol=1e-5)


def test_shape_mismatch_is_clear(kernel: ModuleType) -> None:
    depth, context, coords = inputs(3)
    with pytest.raises(ValueError, match="shape mismatch"):
        kernel.pool_hard_fused(depth, context[..., :2], coords, (5, 4, 3))  # h w disagree


def test_traffic_report(kernel: ModuleType) -> None:
    size = (5, 4, 3)
    depth, context, coords = inputs(4, size=size)
    report = kernel.measure_pool(depth, context, coords, size, repeats=1)
    index = kernel.voxel_index(coords.reshape(2, -1, 3), size)
    valid = int((index >= 0).sum())
    assert 0 < valid < index.numel()
    expected = (depth.numel() + context.numel() + index.numel()) * 4 + 2 * 60 * 6 * 4 + valid * 6 * 8
    assert report.bytes_moved == expected and report.time_ms > 0 and report.gbps > 0
