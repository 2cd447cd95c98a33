"""Fused grouped hard pooling as a Triton kernel (forward fused; backward in PyTorch).

``voxel[v(p), c] += depth[g(c), p] * context[pix(p), c]`` for every frustum point ``p``
whose voxel ``v(p)`` lies in the grid, without materialising the ``b P C`` product that
:func:`scaocc_core.model.splat.grouped_features` builds: each program loads a block of
points' voxel indices, the depth weights of their channel groups and the context of their
pixels, multiplies in registers and adds into the voxel grid with float32 atomics (a fused
scatter; BEVPoolv2's pre-sorted intervals would need a per-frame sort here, since the
learnt per-point offsets move the frustum every frame).

The backward (when ``depth`` or ``context`` requires grad) gathers the output gradient at
each point's voxel and contracts it with the other factor (:class:`_FusedPool`); it
materialises one ``b P C`` float32 tensor, as the unfused reference's forward does.
Coordinates get no gradient (hard pooling is piecewise constant in them).

Reference: :func:`scaocc_core.model.splat.pool_hard` on ``grouped_features`` (tested in
``tests/test_pool_kernel.py``, on CPU through Triton's interpreter, ``TRITON_INTERPRET=1``,
and on realistic sizes on CUDA in ``tests/cuda/test_pool_cuda.py``).
:func:`measure_pool` reports bytes moved, time and the fraction of device bandwidth.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # the CPU-only install may lack Triton; triton_available() says so
    triton = None

BLOCK_P = 64


def triton_available() -> bool:
    """Whether the kernel can run: Triton installed, and a CUDA device or the interpreter."""
    return triton is not None


if triton is not None:

    @triton.jit
    def _pool_kernel(depth_ptr: Any, ctx_ptr: Any, index_ptr: Any, out_ptr: Any, num_points: Any, D: Any,
                     HW: Any, G: Any, C: Any, CG: Any, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr) -> None:
        """Points ``p = ((bn * D + d) * HW + hw)``; depth ``bn G D HW``; context ``bn C HW``; out ``V C``."""
        p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
        c = tl.arange(0, BLOCK_C)
        idx = tl.load(index_ptr + p, mask=p < num_points, other=-1)
        keep = (idx >= 0)[:, None] & (c < C)[None, :]  # BLOCK_P BLOCK_C
        hw = p % HW
        d = (p // HW) % D
        bn = p // (HW * D)
        g = c // CG
        depth_off = ((bn[:, None] * G + g[None, :]) * D + d[:, None]) * HW + hw[:, None]
        ctx_off = (bn[:, None] * C + c[None, :]) * HW + hw[:, None]
        w = tl.load(depth_ptr + depth_off, mask=keep, other=0.0).to(tl.float32)
        x = tl.load(ctx_ptr + ctx_off, mask=keep, other=0.0).to(tl.float32)
        tl.atomic_add(out_ptr + idx[:, None] * C + c[None, :], w * x, mask=keep)


def voxel_index(coords: Tensor, size: tuple[int, int, int]) -> Tensor:
    """Flat voxel index over the batch (``b X Y Z``) of every point, -1 outside: ``b P`` int32.

    ``coords`` b P 3 continuous voxel coordinates (voxel ``i`` spans ``[i, i + 1)``).
    """
    X, Y, Z = size
    idx = torch.floor(coords).long()
    x, y, z = idx.unbind(-1)  # b P each
    valid = (x >= 0) & (x < X) & (y >= 0) & (y < Y) & (z >= 0) & (z < Z)
    batch = torch.arange(coords.shape[0], device=coords.device).view(-1, 1) * (X * Y * Z)
    flat = batch + (x * Y + y) * Z + z
    return torch.where(valid, flat, torch.full_like(flat, -1)).to(torch.int32)


def _launch(depth: Tensor, context: Tensor, index: Tensor, size: tuple[int, int, int], block_p: int,
            num_warps: int) -> Tensor:
    """Run the kernel: ``(b X Y Z) C`` float32 sums of every point's grouped feature."""
    assert triton is not None
    b, n, G, D, h, w = depth.shape
    C = context.shape[2]
    X, Y, Z = size
    out = torch.zeros(b * X * Y * Z, C, dtype=torch.float32, device=context.device)  # (b X Y Z) C
    num_points = index.numel()
    grid = (triton.cdiv(num_points, block_p),)
    _pool_kernel[grid](depth.contiguous(), context.contiguous(), index, out, num_points, D, h * w, G, C, C // G,
                       BLOCK_P=block_p, BLOCK_C=triton.next_power_of_2(C), num_warps=num_warps)
    return out


class _FusedPool(torch.autograd.Function):
    """Autograd wrapper: fused forward, gather-and-contract backward (see the module docstring)."""

    @staticmethod
    def forward(ctx: Any, depth: Tensor, context: Tensor, index: Tensor, size: tuple[int, int, int],
                block_p: int, num_warps: int) -> Tensor:
        ctx.save_for_backward(depth, context, index)
        return _launch(depth, context, index, size, block_p, num_warps)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        depth, context, index = ctx.saved_tensors
        b, n, G, D, h, w = depth.shape
        C = context.shape[2]
        valid = (index >= 0).reshape(-1, 1)
        gathered = grad_out.float()[index.reshape(-1).long().clamp(min=0)] * valid  # P C
        gathered = gathered.view(b * n, D, h * w, G, C // G)
        dep = depth.float().reshape(b * n, G, D, h * w)
        ctx_ = context.float().reshape(b * n, G, C // G, h * w)
        grad_depth = grad_context = None
        if ctx.needs_input_grad[0]:
            grad_depth = torch.einsum("ndpgk,ngkp->ngdp", gathered, ctx_).reshape(depth.shape).to(depth.dtype)
        if ctx.needs_input_grad[1]:
            grad_context = torch.einsum("ndpgk,ngdp->ngkp", gathered, dep).reshape(context.shape).to(context.dtype)
        return grad_depth, grad_context, None, None, None, None


def pool_hard_fused(depth: Tensor, context: Tensor, coords: Tensor, size: tuple[int, int, int],
                    block_p: int = BLOCK_P, num_warps: int = 4) -> Tensor:
    """Grouped hard pooling: depth ``b n G D h w``, context ``b n C h w``, coords ``b n D h w 3``.

    Returns ``b C X Y Z`` in ``context``'s dtype (accumulated in float32). Same result as
    ``pool_hard(grouped_features(depth, context), coords.reshape(b, -1, 3), size)``, and the
    same gradients with respect to ``depth`` and ``context``. ``block_p`` (points per
    program, a power of two) and ``num_warps`` are the kernel's launch parameters.
    """
    if triton is None:
        raise RuntimeError("pool_hard_fused needs Triton (pip install triton)")
    b, n, G, D, h, w = depth.shape
    C = context.shape[2]
    if context.shape != (b, n, C, h, w) or coords.shape != (b, n, D, h, w, 3) or C % G:
        raise ValueError(f"shape mismatch: depth {tuple(depth.shape)}, context {tuple(context.shape)}, "
                         f"coords {tuple(coords.shape)}")
    X, Y, Z = size
    index = voxel_index(coords.reshape(b, -1, 3), size)  # b P
    if torch.is_grad_enabled() and (depth.requires_grad or context.requires_grad):
        out = _FusedPool.apply(depth, context, index, size, block_p, num_warps)
    else:
        out = _launch(depth, context, index, size, block_p, num_warps)
    return out.view(b, X, Y, Z, C).permute(0, 4, 1, 2, 3).to(context.dtype)  # b C X Y Z


@dataclass(frozen=True)
class PoolTraffic:
    """Bytes one fused pooling call moves, its time, and the bandwidth it reaches."""

    bytes_moved: int
    time_ms: float
    peak_gbps: float | None  # device memory bandwidth, if known

    @property
    def gbps(self) -> float:
        """Achieved bandwidth in GB/s."""
        return self.bytes_moved / (self.time_ms * 1e-3) / 1e9

    @property
    def fraction_of_peak(self) -> float | None:
        """Achieved / peak bandwidth (None when the peak is unknown)."""
        return None if self.peak_gbps is None else self.gbps / self.peak_gbps


def pool_bytes(depth: Tensor, context: Tensor, index: Tensor, channels: int, voxels: int) -> int:
    """Minimum traffic: read depth, context and indices once, zero the grid, and one atomic
    read-modify-write (8 bytes per float32 channel) per valid point and channel."""
    valid = int((index >= 0).sum())
    return (depth.numel() * depth.element_size() + context.numel() * context.element_size()
            + index.numel() * index.element_size() + voxels * channels * 4 + valid * channels * 8)


def device_bandwidth_gbps(device: torch.device) -> float | None:
    """Peak memory bandwidth from the device properties (double data rate), or None."""
    if device.type != "cuda":
        return None
    props = torch.cuda.get_device_properties(device)
    clock_khz = getattr(props, "memory_clock_rate", 0)
    bus_bits = getattr(props, "memory_bus_width", 0)
    return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9 if clock_khz and bus_bits else None


def measure_pool(depth: Tensor, context: Tensor, coords: Tensor, size: tuple[int, int, int],
                 repeats: int = 20) -> PoolTraffic:
    """Time :func:`pool_hard_fused` (after one warm-up call) and relate it to the bandwidth."""
    b, C = depth.shape[0], context.shape[2]
    index = voxel_index(coords.reshape(b, -1, 3), size)
    moved = pool_bytes(depth, context, index, C, b * size[0] * size[1] * size[2])
    pool_hard_fused(depth, context, coords, size)
    sync = torch.cuda.synchronize if depth.is_cuda else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        pool_hard_fused(depth, context, coords, size)
    sync()
    ms = 1e3 * (time.perf_counter() - t0) / repeats
    return PoolTraffic(moved, ms, device_bandwidth_gbps(depth.device))
