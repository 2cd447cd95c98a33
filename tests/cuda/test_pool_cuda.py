"""The Triton pooling kernel against the PyTorch reference at r50 sizes: forward and gradients.

r50: 6 cameras, 88 depth bins, 16x44 features, 64 channels in 8 groups, a 200x200x16 grid,
frustum coordinates from the model's geometry on a ring rig (so the many-points-per-voxel
collisions near the car are real). References run in float64 (``pool_hard`` on
``grouped_features``, its index_add path).
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from scaocc_core.config import ModelConfig
from scaocc_core.deploy import pool_triton
from scaocc_core.geometry import frustum_to_voxel, make_frustum
from scaocc_core.model.splat import grouped_features, pool_hard
from tests.cuda.common import model_config, pool_grid, ring_inputs

pytestmark = pytest.mark.cuda


def frustum_inputs(cfg: ModelConfig, device: torch.device, seed: int, batch: int = 2
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """Depth ``b n G D h w`` (softmax), context ``b n C h w`` and the lifter's coords ``b n D h w 3``."""
    n, G, D, C = cfg.image.num_cams, cfg.depth.groups, cfg.depth.num_bins, cfg.depth.context_channels
    h, w = cfg.image.height // cfg.encoder.stride, cfg.image.width // cfg.encoder.stride
    g = torch.Generator().manual_seed(seed)
    depth = torch.randn(batch, n, G, D, h, w, generator=g).mul(2).softmax(dim=3).to(device)
    context = torch.randn(batch, n, C, h, w, generator=g).to(device)
    cam = ring_inputs(cfg, device, seed, batch)
    frustum = make_frustum((cfg.image.height, cfg.image.width), (h, w), cfg.depth).to(device)  # D h w 3
    coords = frustum_to_voxel(frustum, cam.intrinsics, cam.ego_T_cam, cam.post_rot, cam.post_tran, cam.bda,
                              pool_grid(cfg))  # b n D h w 3, as the lifter computes them
    return depth, context, coords


def reference(depth: Tensor, context: Tensor, coords: Tensor, size: tuple[int, int, int]) -> Tensor:
    """The unfused index_add pooling of the model."""
    return pool_hard(grouped_features(depth, context), coords.reshape(coords.shape[0], -1, 3), size)


def rel_err(a: Tensor, ref: Tensor) -> float:
    """``|a - ref| / |ref|`` in float64 (NaN never passes)."""
    err = float((a.double() - ref.double()).norm() / ref.double().norm())
    assert err == err, "NaN in the output"
    return err


@pytest.mark.parametrize("seed", [0, 1])
def test_forward_matches_reference_r50(device: torch.device, seed: int) -> None:
    cfg = model_config("scaocc_r50")
    size = pool_grid(cfg).size
    depth, context, coords = frustum_inputs(cfg, device, seed)
    index = pool_triton.voxel_index(coords.reshape(2, -1, 3), size)
    inside = float((index >= 0).float().mean())
    assert 0.05 < inside < 0.95, f"{inside:.2f} of the frustum inside the grid: not a realistic case"
    fused = pool_triton.pool_hard_fused(depth, context, coords, size)
    ref = reference(depth.double(), context.double(), coords, size)
    assert fused.shape == ref.shape == (2, cfg.depth.context_channels, *size) and fused.dtype == torch.float32
    assert rel_err(fused, ref) < 1e-5
    # every voxel no point falls into is exactly zero, and every voxel one falls into was written
    assert torch.equal(fused.abs().sum(1) > 0, ref.abs().sum(1) > 0)


def test_gradients_match_reference_r50(device: torch.device) -> None:
    cfg = model_config("scaocc_r50")
    size = pool_grid(cfg).size
    depth, context, coords = frustum_inputs(cfg, device, seed=2)
    weight = torch.randn(2, cfg.depth.context_channels, *size, generator=torch.Generator().manual_seed(3)).to(device)
    d1, c1 = depth.clone().requires_grad_(), context.clone().requires_grad_()
    (pool_triton.pool_hard_fused(d1, c1, coords, size) * weight).sum().backward()
    d2, c2 = depth.double().requires_grad_(), context.double().requires_grad_()
    (reference(d2, c2, coords, size) * weight.double()).sum().backward()
    assert d1.grad is not None and c1.grad is not None and d2.grad is not None and c2.grad is not None
    assert d1.grad.dtype == depth.dtype and c1.grad.shape == context.shape
    assert rel_err(d1.grad, d2.grad) < 1e-5
    assert rel_err(c1.grad, c2.grad) < 1e-5
    assert d2.grad.abs().sum() > 0 and c2.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_accumulate_in_float32(device: torch.device, dtype: torch.dtype) -> None:
    cfg = model_config("scaocc_r50")
    size = pool_grid(cfg).size
    depth, context, coords = frustum_inputs(cfg, device, seed=4, batch=1)
    depth, context = depth.to(dtype), context.to(dtype)
    fused = pool_triton.pool_hard_fused(depth, context, coords, size)
    assert fused.dtype == dtype
    ref = reference(depth.double(), context.double(), coords, size)
    assert rel_err(fused, ref) < (2e-3 if dtype == torch.float16 else 1e-2)  # one rounding of the sum


def test_points_outside_the_grid_write_nothing(device: torch.device) -> None:
    cfg = model_config("scaocc_r50")
    size = pool_grid(cfg).size
    depth, context, coords = frustum_inputs(cfg, device, seed=5, batch=1)
    fused = pool_triton.pool_hard_fused(depth, context, coords - 1e4, size)
    assert fused.abs().max() == 0


def test_launch_parameters_agree(device: torch.device) -> None:
    cfg = model_config("scaocc_r50")
    size = pool_grid(cfg).size
    depth, context, coords = frustum_inputs(cfg, device, seed=6, batch=1)
    base = pool_triton.pool_hard_fused(depth, context, coords, size)
    for block_p, warps in ((32, 2), (128, 8)):
        other = pool_triton.pool_hard_fused(depth, context, coords, size, block_p=block_p, num_warps=warps)
        assert rel_err(other, base) < 1e-5
