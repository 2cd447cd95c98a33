"""Hard pooling vs its naive reference; soft filling's kernel vs its reference, and its gradients
vs finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scaocc_core.batch import CameraInputs
from scaocc_core.config import DepthConfig, GridConfig
from scaocc_core.model.lift import FrustumLifter
from scaocc_core.model.offsets import CameraOffsets
from scaocc_core.model.soft_fill import _corner_rows, corner_cells, corner_rows, lift_splat_soft
from scaocc_core.model.splat import (
    corner_weights,
    grouped_features,
    pool_hard,
    pool_hard_reference,
    pool_soft,
    splat,
)

from .fixtures import look_at_cameras

SIZE = (6, 5, 4)


def _points(seed: int, b: int = 2, P: int = 300, C: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(b, P, C, generator=g, dtype=torch.float64)
    coords = torch.rand(b, P, 3, generator=g, dtype=torch.float64) * 8 - 1  # some outside the grid
    return values, coords


def test_hard_pooling_matches_reference_values_and_gradients():
    values, coords = _points(0)
    a = values.clone().requires_grad_()
    r = values.clone().requires_grad_()
    fast = pool_hard(a, coords, SIZE)
    ref = pool_hard_reference(r, coords, SIZE)
    assert fast.shape == (2, 3, *SIZE)
    assert torch.allclose(fast, ref, atol=1e-12)
    weight = torch.randn_like(fast)
    (fast * weight).sum().backward()
    (ref * weight).sum().backward()
    assert a.grad is not None and r.grad is not None
    assert torch.allclose(a.grad, r.grad, atol=1e-12)
    outside = ((coords < 0) | (coords >= torch.tensor(SIZE))).any(-1)
    assert outside.any() and torch.all(a.grad[outside] == 0)


def test_soft_pooling_conserves_mass_inside_and_is_trilinear():
    values = torch.ones(1, 1, 1, dtype=torch.float64)
    coords = torch.tensor([[[2.75, 2.5, 1.5]]], dtype=torch.float64)  # 0.25 voxel right of a centre
    out = pool_soft(values, coords, SIZE)[0, 0]
    assert torch.isclose(out.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.isclose(out[2, 2, 1], torch.tensor(0.75, dtype=torch.float64))
    assert torch.isclose(out[3, 2, 1], torch.tensor(0.25, dtype=torch.float64))


def _lift_inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """depth b n G D h w (softmax over D), context b n C h w, coords b n D h w 3 (some outside)."""
    g = torch.Generator().manual_seed(seed)
    b, n, G, D, h, w, C = 2, 2, 2, 3, 2, 3, 4
    depth = torch.randn(b, n, G, D, h, w, generator=g, dtype=torch.float64).softmax(3)
    context = torch.randn(b, n, C, h, w, generator=g, dtype=torch.float64)
    coords = torch.rand(b, n, D, h, w, 3, generator=g, dtype=torch.float64) * 8 - 1
    return depth, context, coords


def _reference_lift_splat(depth: torch.Tensor, context: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    return pool_soft(grouped_features(depth, context), coords.reshape(coords.shape[0], -1, 3), SIZE)


@pytest.mark.parametrize("sparse", [False, True])
def test_fused_soft_filling_kernel_equals_reference_to_second_order(sparse: bool):
    """Values, gradients and the gradient of a gradient (the causal loss' create_graph path),
    also when the backward's ``g`` is zero at most voxels (as the causal loss' is); the
    second-order gradient reaches ``g`` too, at its zero voxels as well."""
    inputs = _lift_inputs(2)
    results = []
    for fn in (lambda d, e, c: splat(d, e, c, SIZE, "soft")[0], _reference_lift_splat):
        args = [t.clone().requires_grad_() for t in inputs]
        out = fn(*args)
        weight = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
        if sparse:
            weight = weight * (torch.arange(out[0, 0].numel()).view(SIZE) % 7 == 0)  # 1 voxel in 7
        weight.requires_grad_()
        grads = torch.autograd.grad((out * weight).sum(), args, create_graph=True)
        inner = sum((gr.sum(-1) ** 2).sum() for gr in grads)  # non-linear in the first gradients
        results.append((out, grads, torch.autograd.grad(inner, [*args, weight])))
    (out_k, g_k, gg_k), (out_r, g_r, gg_r) = results
    assert out_k.shape == (2, 4, *SIZE) and torch.allclose(out_k, out_r, atol=1e-12)
    for fast, ref in [*zip(g_k, g_r), *zip(gg_k, gg_r)]:
        assert ref.abs().sum() > 0 and torch.allclose(fast, ref, atol=1e-10)


def test_splat_vjp_equals_the_backward_and_skips_only_the_zero_voxels_of_its_input():
    """:class:`SplatVjp` gives the splat's gradients at its inputs, and the gradient of a loss on
    them in depth, context, coordinates and the backward's input ``g``, as autograd's double
    backward through the reference does, except that ``g``'s gradient is left zero at the voxels
    where ``g`` is zero (and only there)."""
    inputs = _lift_inputs(6)
    results = []
    for kernel in (True, False):
        args = [t.clone().requires_grad_() for t in inputs]
        grid, vjp = splat(*args, SIZE, "soft") if kernel else (_reference_lift_splat(*args), None)
        assert (vjp is not None) == kernel
        weight = torch.linspace(-1, 1, grid.numel(), dtype=grid.dtype).view_as(grid)
        weight = (weight * (torch.arange(grid[0, 0].numel()).view(SIZE) % 7 == 0)).requires_grad_()
        if vjp is not None:
            outputs, grad_outputs = vjp(weight)
            grads = torch.autograd.grad(outputs, args, grad_outputs=grad_outputs, create_graph=True)
        else:
            grads = torch.autograd.grad((grid * weight).sum(), args, create_graph=True)
        inner = sum((gr.sum(-1) ** 2).sum() for gr in grads)
        results.append((grads, torch.autograd.grad(inner, [*args, weight])))
    (g_k, gg_k), (g_r, gg_r) = results
    for fast, ref in [*zip(g_k, g_r), *zip(gg_k[:3], gg_r[:3])]:
        assert ref.abs().sum() > 0 and torch.allclose(fast, ref, atol=1e-10)
    live = weight.detach() != 0
    assert (gg_r[3][~live] != 0).any()  # the dense gradient the VJP skips
    assert torch.allclose(gg_k[3], torch.where(live, gg_r[3], 0.0), atol=1e-10)


def test_fused_soft_filling_kernel_passes_gradcheck_of_both_orders():
    """In depth, context and the coordinates (the trilinear weights' slopes and their mixed
    second derivatives are the kernel's own)."""
    args = tuple(t.requires_grad_() for t in _lift_inputs(3))
    assert torch.autograd.gradcheck(lambda d, e, c: lift_splat_soft(d, e, c, SIZE)[0], args)
    assert torch.autograd.gradgradcheck(lambda d, e, c: lift_splat_soft(d, e, c, SIZE)[0], args)


def test_fused_soft_filling_kernel_skips_corners_outside_the_grid():
    """Corners outside the grid go to the dump row, which the loops skip: it stays zero, and
    points with no corner inside change nothing, in values or in gradients."""
    depth, context, coords = _lift_inputs(4)
    coords = coords.clone()
    coords[:, :, 0] = -5.0  # every point of depth bin 0 lies outside the grid
    _, rows = corner_weights(coords.reshape(2, -1, 3), SIZE)
    outside = (rows == 2 * SIZE[0] * SIZE[1] * SIZE[2]).all(0).view(coords.shape[:-1])  # b n D h w
    assert outside.any() and not outside.all()
    args = [t.clone().requires_grad_() for t in (depth, context, coords)]
    out, _ = lift_splat_soft(*args, SIZE)
    assert out[-1].abs().sum() == 0 and out[:-1].abs().sum() > 0
    gd, _, gc = torch.autograd.grad((out * torch.randn_like(out)).sum(), args)
    assert gc[outside].abs().sum() == 0 and gd[:, :, :, 0].abs().sum() == 0 and gd.abs().sum() > 0


def test_grouped_features_pair_each_group_with_its_depth():
    b, n, G, D, h, w, C = 1, 1, 2, 3, 1, 1, 4
    depth = torch.zeros(b, n, G, D, h, w)
    depth[0, 0, 0, 0] = 1.0  # group 0 -> bin 0
    depth[0, 0, 1, 2] = 1.0  # group 1 -> bin 2
    context = torch.arange(1.0, C + 1).view(b, n, C, h, w)
    vals = grouped_features(depth, context).view(D, C)
    assert torch.equal(vals[0], torch.tensor([1.0, 2.0, 0.0, 0.0]))
    assert torch.equal(vals[2], torch.tensor([0.0, 0.0, 3.0, 4.0]))
    assert torch.equal(vals[1], torch.zeros(4))


def _soft_objective(translation: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Soft-filled voxels from one camera as a function of its translation and offsets."""
    grid = GridConfig(lower=(-8.0, -8.0, -1.0), upper=(8.0, 8.0, 3.0), size=(8, 8, 4))
    depth = DepthConfig(d_min=1.0, d_max=7.0, d_step=2.0)
    lifter = FrustumLifter((32, 64), 16, depth, grid).double()
    T = look_at_cameras(1)[None]  # 1 1 4 4
    inputs = CameraInputs(
        images=torch.zeros(1, 1, 3, 32, 64, dtype=torch.float64),
        intrinsics=torch.tensor([[50.0, 0, 31.5], [0, 50.0, 15.5], [0, 0, 1]], dtype=torch.float64)[None, None],
        ego_T_cam=T, post_rot=torch.eye(3, dtype=torch.float64)[None, None],
        post_tran=torch.zeros(1, 1, 3, dtype=torch.float64), bda=torch.eye(4, dtype=torch.float64)[None],
        camera_valid=torch.ones(1, 1, dtype=torch.bool),
    )
    offsets = CameraOffsets(torch.zeros(1, 1, 3, dtype=torch.float64), translation.view(1, 1, 3), delta)
    coords = lifter(inputs, offsets.apply(inputs.ego_T_cam), offsets.frustum_delta).reshape(1, -1, 3)
    g = torch.Generator().manual_seed(1)
    values = torch.rand(1, coords.shape[1], 2, generator=g, dtype=torch.float64)
    weight = torch.rand(1, 2, *grid.size, generator=g, dtype=torch.float64)
    return (pool_soft(values, coords, grid.size) * weight).sum()


def test_soft_filling_gradients_match_finite_differences():
    translation = torch.tensor([0.13, -0.07, 0.05], dtype=torch.float64, requires_grad=True)
    delta = (0.1 * torch.randn(1, 1, 3, 2, 4, 3, dtype=torch.float64)).requires_grad_()  # b n D h w 3
    value = _soft_objective(translation, delta)
    g_t, g_d = torch.autograd.grad(value, (translation, delta))
    assert g_t.abs().sum() > 0 and g_d.abs().sum() > 0
    eps = 1e-6
    for i in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[i] = eps
        fd = (_soft_objective(translation + e, delta) - _soft_objective(translation - e, delta)) / (2 * eps)
        assert torch.isclose(g_t[i], fd, rtol=1e-4, atol=1e-7), (i, g_t[i], fd)
    for idx in [(0, 0, 0, 0, 1, 0), (0, 0, 1, 1, 2, 1), (0, 0, 2, 0, 3, 2)]:
        e = torch.zeros_like(delta)
        e[idx] = eps
        fd = (_soft_objective(translation, delta + e) - _soft_objective(translation, delta - e)) / (2 * eps)
        assert torch.isclose(g_d[idx], fd, rtol=1e-4, atol=1e-7), (idx, g_d[idx], fd)


def test_kernel_corner_rows_equal_the_reference_rows():
    """The numba loop that builds the kernel's corner rows (-1 outside the grid) against
    :func:`corner_rows` (the dump row outside), points inside, on the edges and far outside."""
    coords = torch.rand(2, 400, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 12 - 3
    _, lo = corner_cells(coords)
    idx = np.full((8, 800), -1, dtype=np.int32)
    _corner_rows(lo.numpy(), 400, *SIZE, np.arange(800), idx)
    ref = corner_rows(lo, 2, SIZE).numpy()
    dump = 2 * SIZE[0] * SIZE[1] * SIZE[2]
    assert (ref == dump).any() and (ref != dump).any()
    assert np.array_equal(np.where(ref == dump, -1, ref), idx)
