"""Channel-grouped lifting with soft filling, fused into numba loops, with their two derivatives.

The reference (:func:`scaocc_core.model.splat.grouped_features` then
:func:`~scaocc_core.model.splat.pool_soft` on the weights of
:func:`~scaocc_core.model.splat.corner_weights`) materialises the frustum features
``x = depth (x) context`` (``P C``) and the 8 trilinear corner weights of every point, and
scatters ``x`` times each weight. Every derivative, and the causal loss'
``autograd.grad(..., create_graph=True)`` with its backward, adds more ``P C`` and ``8 P``
products; on CPU their time goes into allocating and first touching that memory
(EXPERIMENTS.md section 4). Here nothing of size ``P C`` or ``8 P`` exists but the corner rows.

The voxel rows are the partial derivative in ``g`` of the scalar

    Phi(g, d, e, f) = sum_{k, p, c} g[idx[k, p], c] w_k(f[:, p]) d[grp[c], p] e[pix[p], c]

with ``d`` the depth weights (``G P``), ``e`` the context (``Q C``, ``Q`` feature pixels), ``f``
the position of each point inside its cell of 8 voxel centres (``3 P``, in [0, 1)), ``w_k`` the
trilinear weight of corner ``k = 4 dx + 2 dy + dz``, ``prod_a (f_a if bit_a else 1 - f_a)``, and
``g`` voxel rows (``R C``). Phi is linear in ``g``, ``d`` and ``e``, and each ``w_k`` is linear
in each ``f_a``, so every derivative is a sum of such products. Three loops, each one pass over
(point, corner, channel) that reads each voxel row it needs once:

* :func:`_lift_splat`: ``dPhi/dg`` (the forward);
* :func:`_lift_splat_grad`: ``dPhi/dd``, ``dPhi/de``, ``dPhi/df`` at ``g = h`` (its backward,
  all three in one pass);
* :func:`_lift_splat_grad_grad`: the backward of that, for the causal loss' second order.

The two derivative loops gather from ``g`` only at its non-zero (``live``) rows: the causal
loss differentiates a score that lives on one class' voxels, and skipping the zero rows makes
its two passes several times cheaper (``bench/model_speed.py``) without changing a value.
Through :class:`SplatVjp` the causal loss also skips the second-order pass' derivative with
respect to ``g`` at those rows, which it never needs (exact for its ``g``; see the class).

Derivatives of third order are not provided (``once_differentiable``). Values equal the
reference up to float summation order; ``tests/test_pooling.py`` holds values and both
derivative orders equal, and gradcheck / gradgradcheck pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numba import njit
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _corner_weights(f: np.ndarray, p: int, a: np.ndarray, w: np.ndarray) -> None:  # pragma: no cover - numba
    """Point ``p``'s per-axis weights ``a`` (3 2: ``1 - f``, ``f``) and corner weights ``w`` (8)."""
    for axis in range(3):
        a[axis, 1] = f[axis, p]
        a[axis, 0] = 1.0 - a[axis, 1]
    for k in range(8):
        w[k] = a[0, k >> 2] * a[1, (k >> 1) & 1] * a[2, k & 1]


@njit(cache=True, nogil=True, fastmath=True)
def _corner_rows(lo: np.ndarray, per: int, X: int, Y: int, Z: int, pts: np.ndarray,
                 idx: np.ndarray) -> None:  # pragma: no cover - numba
    """The 8 corner rows (``idx``, 8 P) of the points ``pts`` in the batch-folded grid, -1 outside
    it; as :func:`corner_rows`: corner ``k = 4 dx + 2 dy + dz`` is ``lo[:, p] + (dx, dy, dz)``."""
    for p in pts:
        base = (p // per) * (X * Y * Z)
        for dx in range(2):
            x = lo[0, p] + dx
            for dy in range(2):
                y = lo[1, p] + dy
                inside_xy = 0 <= x < X and 0 <= y < Y
                r_xy = base + (x * Y + y) * Z
                for dz in range(2):
                    z = lo[2, p] + dz
                    idx[4 * dx + 2 * dy + dz, p] = r_xy + z if inside_xy and 0 <= z < Z else -1


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _slopes(a: np.ndarray, k: int) -> tuple[float, float, float, float, float, float]:  # pragma: no cover - numba
    """Corner ``k``'s per-axis weights and slopes (+-1): ``dw_k/df_0 = s0 a1 a2`` and so on."""
    b0, b1, b2 = k >> 2, (k >> 1) & 1, k & 1
    return a[0, b0], a[1, b1], a[2, b2], 2.0 * b0 - 1.0, 2.0 * b1 - 1.0, 2.0 * b2 - 1.0


@njit(cache=True, nogil=True, fastmath=True)
def _lift_splat(d: np.ndarray, e: np.ndarray, f: np.ndarray, idx: np.ndarray, pts: np.ndarray, pix: np.ndarray,
                grp: np.ndarray, out_g: np.ndarray) -> None:  # pragma: no cover - numba
    C = e.shape[1]
    de = np.empty(C, dtype=e.dtype)
    a = np.empty((3, 2), dtype=f.dtype)
    w = np.empty(8, dtype=f.dtype)
    for p in pts:
        q = pix[p]
        for c in range(C):
            de[c] = d[grp[c], p] * e[q, c]
        _corner_weights(f, p, a, w)
        for k in range(8):
            r = idx[k, p]
            if r < 0:
                continue
            wk = w[k]
            for c in range(C):
                out_g[r, c] += wk * de[c]


@njit(cache=True, nogil=True, fastmath=True)
def _lift_splat_grad(g: np.ndarray, live: np.ndarray, d: np.ndarray, e: np.ndarray, f: np.ndarray, idx: np.ndarray,
                     pts: np.ndarray, pix: np.ndarray, grp: np.ndarray, out_d: np.ndarray, out_e: np.ndarray,
                     out_f: np.ndarray) -> None:  # pragma: no cover - numba
    C = e.shape[1]
    de = np.empty(C, dtype=e.dtype)
    s = np.empty(C, dtype=e.dtype)  # sum_k w_k g[row_k, c]
    a = np.empty((3, 2), dtype=f.dtype)
    w = np.empty(8, dtype=f.dtype)
    for p in pts:
        hit = False
        for k in range(8):
            hit = hit or (idx[k, p] >= 0 and live[idx[k, p]])
        if not hit:  # every corner's row of g is zero: nothing to add
            continue
        q = pix[p]
        for c in range(C):
            de[c] = d[grp[c], p] * e[q, c]
            s[c] = 0.0
        _corner_weights(f, p, a, w)
        f0 = f1 = f2 = 0.0  # dPhi/df at this point
        for k in range(8):
            r = idx[k, p]
            if r < 0 or not live[r]:
                continue
            a0, a1, a2, s0, s1, s2 = _slopes(a, k)
            wk = w[k]
            acc = 0.0  # g[r] . de
            for c in range(C):
                gv = g[r, c]
                acc += gv * de[c]
                s[c] += wk * gv
            f0 += acc * s0 * a1 * a2
            f1 += acc * a0 * s1 * a2
            f2 += acc * a0 * a1 * s2
        out_f[0, p], out_f[1, p], out_f[2, p] = f0, f1, f2
        for c in range(C):
            out_d[grp[c], p] += e[q, c] * s[c]
            out_e[q, c] += d[grp[c], p] * s[c]


@njit(cache=True, nogil=True, fastmath=True)
def _lift_splat_grad_grad(g: np.ndarray, live: np.ndarray, support_only: bool, d: np.ndarray, e: np.ndarray,
                          f: np.ndarray, hd: np.ndarray, he: np.ndarray, hf: np.ndarray, idx: np.ndarray,
                          pts: np.ndarray, pix: np.ndarray, grp: np.ndarray, out_g: np.ndarray, out_d: np.ndarray,
                          out_e: np.ndarray, out_f: np.ndarray) -> None:  # pragma: no cover - numba
    """Gradients of ``F = <hd, dPhi/dd> + <he, dPhi/de> + <hf, dPhi/df>`` in ``g, d, e, f``.

    Per corner, with ``hw_k = <hf[:, p], dw_k/df>``: ``F = sum w_k g.(hd e + d he) + hw_k g.(d e)``,
    so ``dF/dg``, ``dF/dd`` and ``dF/de`` are three lifts like Phi's, and ``dF/df`` takes the
    slopes of ``w_k`` and of ``hw_k`` (the off-diagonal second derivatives of ``w_k``; its
    diagonal ones are zero). ``dF/dd``, ``dF/de`` and ``dF/df`` only gather from rows of ``g``
    that are ``live``; ``dF/dg`` is written at every row, or with ``support_only`` at the live
    rows alone, and then the points with no live corner are skipped altogether.
    """
    C = e.shape[1]
    de = np.empty(C, dtype=e.dtype)
    mixed = np.empty(C, dtype=e.dtype)  # hd e + d he
    s1 = np.empty(C, dtype=e.dtype)  # sum_k w g
    s2 = np.empty(C, dtype=e.dtype)  # sum_k hw g
    a = np.empty((3, 2), dtype=f.dtype)
    w = np.empty(8, dtype=f.dtype)
    for p in pts:
        if support_only:
            hit = False
            for k in range(8):
                hit = hit or (idx[k, p] >= 0 and live[idx[k, p]])
            if not hit:
                continue
        q = pix[p]
        for c in range(C):
            de[c] = d[grp[c], p] * e[q, c]
            mixed[c] = hd[grp[c], p] * e[q, c] + d[grp[c], p] * he[q, c]
            s1[c] = 0.0
            s2[c] = 0.0
        h0, h1, h2 = hf[0, p], hf[1, p], hf[2, p]
        _corner_weights(f, p, a, w)
        f0 = f1 = f2 = 0.0
        hit = False
        for k in range(8):
            r = idx[k, p]
            if r < 0:
                continue
            a0, a1, a2, t0, t1, t2 = _slopes(a, k)
            wk = w[k]
            d0, d1, d2 = t0 * a1 * a2, a0 * t1 * a2, a0 * a1 * t2  # dw_k/df
            hk = h0 * d0 + h1 * d1 + h2 * d2
            if not live[r]:
                if not support_only:
                    for c in range(C):
                        out_g[r, c] += wk * mixed[c] + hk * de[c]
                continue
            hit = True
            gm = 0.0  # g[r] . mixed
            gd = 0.0  # g[r] . de
            for c in range(C):
                gv = g[r, c]
                gm += gv * mixed[c]
                gd += gv * de[c]
                s1[c] += wk * gv
                s2[c] += hk * gv
                out_g[r, c] += wk * mixed[c] + hk * de[c]
            # d/df of w_k gm + hw_k gd; d(hw_k)/df_a = sum_b hf_b d2w_k/df_b df_a (b != a)
            f0 += d0 * gm + (h1 * t0 * t1 * a2 + h2 * t0 * a1 * t2) * gd
            f1 += d1 * gm + (h0 * t0 * t1 * a2 + h2 * a0 * t1 * t2) * gd
            f2 += d2 * gm + (h0 * t0 * a1 * t2 + h1 * a0 * t1 * t2) * gd
        if not hit:
            continue
        out_f[0, p], out_f[1, p], out_f[2, p] = f0, f1, f2
        for c in range(C):
            out_d[grp[c], p] += he[q, c] * s1[c] + e[q, c] * s2[c]
            out_e[q, c] += hd[grp[c], p] * s1[c] + d[grp[c], p] * s2[c]


@dataclass(frozen=True)
class Geometry:
    """What the loops index with: the corner rows ``idx`` (8 P, -1 outside the grid), the points
    ``pts`` with a corner inside the grid, feature pixel ``pix`` (P) of every frustum point,
    group ``grp`` (C) of every channel, and the number of voxel rows (``b X Y Z``, then a dump
    row kept at zero)."""

    idx: np.ndarray
    pts: np.ndarray
    pix: np.ndarray
    grp: np.ndarray
    rows: int


def corner_cells(coords: Tensor) -> tuple[Tensor, Tensor]:
    """Each point's cell of 8 voxel centres: its position in it and its lower corner.

    ``coords`` b P 3 (continuous voxel coordinates; voxel centres sit at integer + 0.5) ->
    ``frac`` 3 (b P) in [0, 1), differentiable in ``coords``, and the lower corner's voxel
    indices ``lo`` 3 (b P) (``floor(coords - 0.5)``). Per-axis vectors, contiguous: elementwise
    ops on them are several times faster on CPU than a broadcast over size-2 axes.
    """
    b, P, _ = coords.shape
    pt = coords.reshape(b * P, 3).t().contiguous() - 0.5  # 3 (b P)
    base = torch.floor(pt.detach())
    return pt - base, base.long()


def corner_rows(lo: Tensor, b: int, size: tuple[int, int, int]) -> Tensor:
    """Rows ``8 (b P)`` of the corners of :func:`corner_cells` in the batch-folded grid of
    ``b X Y Z + 1`` rows, the last a dump for corners outside the grid; corner
    ``k = 4 dx + 2 dy + dz`` is ``lo + (dx, dy, dz)``. (The kernel builds the same rows in numba.)"""
    X, Y, Z = size
    index = [(lo[a], lo[a] + 1) for a in range(3)]
    inside = [tuple((i >= 0) & (i < n) for i in index[a]) for a, n in enumerate(size)]
    batch = torch.arange(b, device=lo.device).repeat_interleave(lo.shape[1] // b) * (X * Y * Z)  # b P
    rows, valid = [], []
    for dx in (0, 1):
        for dy in (0, 1):
            r_xy = batch + (index[0][dx] * Y + index[1][dy]) * Z
            ok_xy = inside[0][dx] & inside[1][dy]
            for dz in (0, 1):
                rows.append(r_xy + index[2][dz])
                valid.append(ok_xy & inside[2][dz])
    flat = torch.stack(rows)  # 8 (b P)
    return torch.where(torch.stack(valid), flat, torch.full_like(flat, b * X * Y * Z))


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def live_rows(g: Tensor) -> np.ndarray:
    """Which voxel rows of ``g`` (``R C``) hold a non-zero value: ``R`` bool.

    The causal loss hands the backward a ``g`` that is zero away from one class' voxels (a few
    per cent of the rows); the loops skip the rest, where every product they would add is zero.
    """
    return _np(g.ne(0).any(dim=1))


class _LiftSplat(Function):
    @staticmethod
    def forward(ctx: Any, d: Tensor, e: Tensor, f: Tensor, geo: Geometry) -> Tensor:
        out = e.new_zeros(geo.rows, e.shape[1])
        _lift_splat(_np(d), _np(e), _np(f), geo.idx, geo.pts, geo.pix, geo.grp, out.numpy())
        ctx.geo = geo
        ctx.save_for_backward(d, e, f)
        return out

    @staticmethod
    def backward(ctx: Any, h: Tensor) -> tuple[Tensor | None, ...]:
        d, e, f = ctx.saved_tensors
        gd, ge, gf = _LiftSplatGrad.apply(h, d, e, f, ctx.geo, False)
        return (*(gr if need else None for gr, need in zip((gd, ge, gf), ctx.needs_input_grad)), None)


class _LiftSplatGrad(Function):
    @staticmethod
    def forward(ctx: Any, g: Tensor, d: Tensor, e: Tensor, f: Tensor, geo: Geometry,
                support_only: bool) -> tuple[Tensor, ...]:
        out_d, out_e, out_f = torch.zeros_like(d), torch.zeros_like(e), torch.zeros_like(f)
        live = live_rows(g)
        _lift_splat_grad(_np(g), live, _np(d), _np(e), _np(f), geo.idx, geo.pts, geo.pix, geo.grp,
                         out_d.numpy(), out_e.numpy(), out_f.numpy())
        ctx.geo, ctx.live, ctx.support_only = geo, live, support_only
        ctx.save_for_backward(g, d, e, f)
        return out_d, out_e, out_f

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, hd: Tensor | None, he: Tensor | None, hf: Tensor | None) -> tuple[Tensor | None, ...]:
        g, d, e, f = ctx.saved_tensors
        geo = ctx.geo
        hd = torch.zeros_like(d) if hd is None else hd
        he = torch.zeros_like(e) if he is None else he
        hf = torch.zeros_like(f) if hf is None else hf
        outs = [torch.zeros_like(t) for t in (g, d, e, f)]
        _lift_splat_grad_grad(_np(g), ctx.live, ctx.support_only, _np(d), _np(e), _np(f), _np(hd), _np(he),
                              _np(hf), geo.idx, geo.pts, geo.pix, geo.grp, *[o.numpy() for o in outs])
        return (*(o if need else None for o, need in zip(outs, ctx.needs_input_grad)), None, None)


@dataclass(frozen=True)
class SplatVjp:
    """The kernel's vector-Jacobian product at the splat's inputs, for a backward input whose own
    gradient is needed only at its non-zero voxels.

    ``vjp(g)``, ``g`` b C X Y Z (the gradient at the splat's output), returns ``(inputs, grads)``:
    the kernel's inputs that require a gradient (depth weights, context, positions in the cell;
    nodes of the forward's graph) and ``g``'s gradient at each, for ``torch.autograd.grad(inputs,
    ..., grad_outputs=grads)``. The values are those of the splat's backward, and so are their
    derivatives but one: with respect to ``g`` they are left zero where ``g`` is zero, and the
    points with no corner where it is not are skipped. That is exact wherever those voxels of
    ``g`` cannot move: ``g`` a constant, or ``L^T s`` with ``s >= 0`` and ``L`` linear with
    non-negative weights (the causal loss' score through the normalised propagation), whose zero
    voxels see only zeros of ``s``, so no parameter of ``L`` reaches them. The causal loss uses
    it to skip most points in its second-order pass, which visited every one for them.
    """

    d: Tensor
    e: Tensor
    f: Tensor
    geo: Geometry

    def __call__(self, g: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """``g`` b C X Y Z -> the inputs that require a gradient and their gradients."""
        rows = g.permute(0, 2, 3, 4, 1).reshape(-1, g.shape[1])  # (b X Y Z) C, no dump row
        grads = _LiftSplatGrad.apply(rows, self.d, self.e, self.f, self.geo, True)
        pairs = [(t, gr) for t, gr in zip((self.d, self.e, self.f), grads) if t.requires_grad]
        return [t for t, _ in pairs], [gr for _, gr in pairs]


def lift_splat_soft(depth: Tensor, context: Tensor, coords: Tensor,
                    size: tuple[int, int, int]) -> tuple[Tensor, SplatVjp]:
    """Channel-grouped lifting and soft filling in one: ``(b X Y Z + 1, C)`` voxel rows, and
    their :class:`SplatVjp`.

    ``depth`` b n G D h w, ``context`` b n C h w, ``coords`` b n D h w 3 (continuous voxel
    coordinates). The corners and their rows are those of :func:`corner_rows`; the last row is
    the dump of the corners outside the grid, which the loops skip (and the points with no
    other corner), so it stays zero. Differentiable twice in ``depth``, ``context`` and
    ``coords``; CPU only.
    """
    if context.device.type != "cpu":
        raise ValueError(f"the numba soft-filling kernel runs on CPU tensors, got {context.device}")
    b, n, G, D, h, w = depth.shape
    C = context.shape[2]
    P = b * n * D * h * w
    d = depth.permute(2, 0, 1, 3, 4, 5).reshape(G, P)  # G (b n D h w)
    e = context.permute(0, 1, 3, 4, 2).reshape(b * n * h * w, C)  # (b n h w) C
    frac, lo = corner_cells(coords.reshape(b, P // b, 3))  # 3 (b n D h w) each
    touches = ((lo >= -1) & (lo < torch.tensor(size)[:, None])).all(dim=0)  # some corner inside
    pts = _np(touches.nonzero()[:, 0])
    idx = np.full((8, P), -1, dtype=np.int32)
    _corner_rows(_np(lo), P // b, *size, pts, idx)
    p = np.arange(P)
    geo = Geometry(idx=idx, pts=pts, pix=(p // (D * h * w)) * (h * w) + p % (h * w), grp=np.arange(C) // (C // G),
                   rows=b * size[0] * size[1] * size[2] + 1)
    f = frac.to(context.dtype)
    return _LiftSplat.apply(d, e, f, geo), SplatVjp(d, e, f, geo)


def use_kernel(values: Tensor) -> bool:
    """Whether the kernel serves ``values``' device and context: CPU, outside export and compilation."""
    return values.device.type == "cpu" and not torch.compiler.is_compiling() and not torch.jit.is_tracing()
