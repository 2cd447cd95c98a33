"""Channel-grouped lifting with soft filling, fused into numba loops, with their two derivatives.

The reference (:func:`scaocc_core.model.splat.grouped_features` then
:func:`~scaocc_core.model.splat.pool_soft`) materialises the frustum features
``x = depth (x) context`` (``P C``) and scatters ``x`` times each of the 8 trilinear corner
weights. Every derivative, and the causal loss' ``autograd.grad(..., create_graph=True)`` with
its backward, adds more ``P C`` products; on CPU their time goes into allocating and first
touching that memory (EXPERIMENTS.md section 4). Here nothing of size ``P C`` exists.

The voxel rows are the partial derivative in ``g`` of the multilinear scalar

    Phi(g, d, e, w) = sum_{k, p, c} g[idx[k, p], c] w[k, p] d[grp[c], p] e[pix[p], c]

with ``d`` the depth weights (``G P``), ``e`` the context (``Q C``, ``Q`` feature pixels), ``w``
the corner weights (``8 P``) and ``g`` voxel rows (``R C``). Three loops, each one pass over
(point, corner, channel) that reads each voxel row it needs once:

* :func:`_lift_splat`: ``dPhi/dg`` (the forward);
* :func:`_lift_splat_grad`: ``dPhi/dd``, ``dPhi/de``, ``dPhi/dw`` at ``g = h`` (its backward,
  all three in one pass);
* :func:`_lift_splat_grad_grad`: the backward of that, for the causal loss' second order.

The two derivative loops gather from ``g`` only at its non-zero (``live``) rows: the causal
loss differentiates a score that lives on one class' voxels, and skipping the zero rows makes
its two passes several times cheaper (``bench/model_speed.py``) without changing a value.

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


@njit(cache=True, nogil=True, fastmath=True)
def _lift_splat(d: np.ndarray, e: np.ndarray, w: np.ndarray, idx: np.ndarray, pts: np.ndarray, pix: np.ndarray,
                grp: np.ndarray, dump: int, out_g: np.ndarray) -> None:  # pragma: no cover - numba
    K = idx.shape[0]
    C = e.shape[1]
    de = np.empty(C, dtype=e.dtype)
    for p in pts:
        q = pix[p]
        for c in range(C):
            de[c] = d[grp[c], p] * e[q, c]
        for k in range(K):
            r, wk = idx[k, p], w[k, p]
            if r == dump:
                continue
            for c in range(C):
                out_g[r, c] += wk * de[c]


@njit(cache=True, nogil=True, fastmath=True)
def _lift_splat_grad(g: np.ndarray, live: np.ndarray, d: np.ndarray, e: np.ndarray, w: np.ndarray, idx: np.ndarray,
                     pts: np.ndarray, pix: np.ndarray, grp: np.ndarray, out_d: np.ndarray, out_e: np.ndarray,
                     out_w: np.ndarray) -> None:  # pragma: no cover - numba
    K = idx.shape[0]
    C = e.shape[1]
    de = np.empty(C, dtype=e.dtype)
    s = np.empty(C, dtype=e.dtype)  # sum_k w[k, p] g[idx[k, p], c]
    for p in pts:
        hit = False
        for k in range(K):
            hit = hit or live[idx[k, p]]
        if not hit:  # every corner's row of g is zero: nothing to add
            continue
        q = pix[p]
        for c in range(C):
            de[c] = d[grp[c], p] * e[q, c]
            s[c] = 0.0
        for k in range(K):
            r, wk = idx[k, p], w[k, p]
            if not live[r]:
                continue
            acc = out_w[k, p]  # zero, in out_w's dtype
            for c in range(C):
                gv = g[r, c]
                acc += gv * de[c]
                s[c] += wk * gv
            out_w[k, p] = acc
        for c in range(C):
            out_d[grp[c], p] += e[q, c] * s[c]
            out_e[q, c] += d[grp[c], p] * s[c]


@njit(cache=True, nogil=True, fastmath=True)
def _lift_splat_grad_grad(g: np.ndarray, live: np.ndarray, d: np.ndarray, e: np.ndarray, w: np.ndarray,
                          hd: np.ndarray, he: np.ndarray, hw: np.ndarray, idx: np.ndarray, pts: np.ndarray,
                          pix: np.ndarray, grp: np.ndarray, dump: int, out_g: np.ndarray, out_d: np.ndarray,
                          out_e: np.ndarray, out_w: np.ndarray) -> None:  # pragma: no cover - numba
    """Gradients of ``F = <hd, dPhi/dd> + <he, dPhi/de> + <hw, dPhi/dw>`` in ``g, d, e, w``.

    With Phi multilinear, ``<hd, dPhi/dd> = Phi(g, hd, e, w)`` and so on, so for example
    ``dF/dg = dPhi/dg(hd, e, w) + dPhi/dg(d, he, w) + dPhi/dg(d, e, hw)``. ``dF/dg`` is
    needed at every row; the other three only gather from rows of ``g`` that are ``live``.
    """
    K = idx.shape[0]
    C = e.shape[1]
    de = np.empty(C, dtype=e.dtype)
    mixed = np.empty(C, dtype=e.dtype)  # hd e + d he
    s1 = np.empty(C, dtype=e.dtype)  # sum_k w g
    s2 = np.empty(C, dtype=e.dtype)  # sum_k hw g
    for p in pts:
        q = pix[p]
        for c in range(C):
            de[c] = d[grp[c], p] * e[q, c]
            mixed[c] = hd[grp[c], p] * e[q, c] + d[grp[c], p] * he[q, c]
            s1[c] = 0.0
            s2[c] = 0.0
        hit = False
        for k in range(K):
            r, wk, hk = idx[k, p], w[k, p], hw[k, p]
            if r == dump:
                continue
            if not live[r]:
                for c in range(C):
                    out_g[r, c] += wk * mixed[c] + hk * de[c]
                continue
            hit = True
            acc = out_w[k, p]
            for c in range(C):
                gv = g[r, c]
                acc += gv * mixed[c]
                s1[c] += wk * gv
                s2[c] += hk * gv
                out_g[r, c] += wk * mixed[c] + hk * de[c]
            out_w[k, p] = acc
        if not hit:
            continue
        for c in range(C):
            out_d[grp[c], p] += he[q, c] * s1[c] + e[q, c] * s2[c]
            out_e[q, c] += hd[grp[c], p] * s1[c] + d[grp[c], p] * s2[c]


@dataclass(frozen=True)
class Geometry:
    """What the loops index with: corner rows ``idx`` (8 P), the points ``pts`` with a corner
    off the dump row, feature pixel ``pix`` (P) of every frustum point, group ``grp`` (C) of
    every channel, and the number of voxel rows (the last is the dump)."""

    idx: np.ndarray
    pts: np.ndarray
    pix: np.ndarray
    grp: np.ndarray
    rows: int

    @property
    def dump(self) -> int:
        """The dump row: corners outside the grid, skipped by every loop."""
        return self.rows - 1


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def live_rows(g: Tensor) -> np.ndarray:
    """Which voxel rows of ``g`` (``R C``, the last the dump) hold a non-zero value: ``R`` bool.

    The causal loss hands the backward a ``g`` that is zero away from one class' voxels (a few
    per cent of the rows); the loops skip the rest, where every product they would add is zero.
    """
    live = _np(g.ne(0).any(dim=1))
    live[-1] = False  # the dump row is skipped in any case
    return live


class _LiftSplat(Function):
    @staticmethod
    def forward(ctx: Any, d: Tensor, e: Tensor, w: Tensor, geo: Geometry) -> Tensor:
        out = e.new_zeros(geo.rows, e.shape[1])
        _lift_splat(_np(d), _np(e), _np(w), geo.idx, geo.pts, geo.pix, geo.grp, geo.dump, out.numpy())
        ctx.geo = geo
        ctx.save_for_backward(d, e, w)
        return out

    @staticmethod
    def backward(ctx: Any, h: Tensor) -> tuple[Tensor | None, ...]:
        d, e, w = ctx.saved_tensors
        gd, ge, gw = _LiftSplatGrad.apply(h, d, e, w, ctx.geo)
        return (*(gr if need else None for gr, need in zip((gd, ge, gw), ctx.needs_input_grad)), None)


class _LiftSplatGrad(Function):
    @staticmethod
    def forward(ctx: Any, g: Tensor, d: Tensor, e: Tensor, w: Tensor, geo: Geometry) -> tuple[Tensor, ...]:
        out_d, out_e, out_w = torch.zeros_like(d), torch.zeros_like(e), torch.zeros_like(w)
        _lift_splat_grad(_np(g), live_rows(g), _np(d), _np(e), _np(w), geo.idx, geo.pts, geo.pix, geo.grp,
                         out_d.numpy(), out_e.numpy(), out_w.numpy())
        ctx.geo = geo
        ctx.save_for_backward(g, d, e, w)
        return out_d, out_e, out_w

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, hd: Tensor | None, he: Tensor | None, hw: Tensor | None) -> tuple[Tensor | None, ...]:
        g, d, e, w = ctx.saved_tensors
        geo = ctx.geo
        hd = torch.zeros_like(d) if hd is None else hd
        he = torch.zeros_like(e) if he is None else he
        hw = torch.zeros_like(w) if hw is None else hw
        outs = [torch.zeros_like(t) for t in (g, d, e, w)]
        _lift_splat_grad_grad(_np(g), live_rows(g), _np(d), _np(e), _np(w), _np(hd), _np(he), _np(hw), geo.idx,
                              geo.pts, geo.pix, geo.grp, geo.dump, *[o.numpy() for o in outs])
        return (*(o if need else None for o, need in zip(outs, ctx.needs_input_grad)), None)


def lift_splat_soft(depth: Tensor, context: Tensor, weight: Tensor, rows: Tensor, num_rows: int) -> Tensor:
    """Channel-grouped lifting and soft filling in one: ``(num_rows, C)`` voxel rows.

    ``depth`` b n G D h w, ``context`` b n C h w, corner ``weight`` and ``rows`` 8 (b n D h w)
    (:func:`scaocc_core.model.splat.corner_weights`). Row ``num_rows - 1`` is the dump of the
    corners outside the grid: the loops skip them (and the points with no other corner), so it
    stays zero. Differentiable twice in ``depth``, ``context`` and ``weight``; CPU only.
    """
    if context.device.type != "cpu":
        raise ValueError(f"the numba soft-filling kernel runs on CPU tensors, got {context.device}")
    b, n, G, D, h, w = depth.shape
    C = context.shape[2]
    P = b * n * D * h * w
    d = depth.permute(2, 0, 1, 3, 4, 5).reshape(G, P)  # G (b n D h w)
    e = context.permute(0, 1, 3, 4, 2).reshape(b * n * h * w, C)  # (b n h w) C
    p = np.arange(P)
    idx = _np(rows)
    geo = Geometry(idx=idx, pts=np.flatnonzero((idx != num_rows - 1).any(axis=0)),
                   pix=(p // (D * h * w)) * (h * w) + p % (h * w), grp=np.arange(C) // (C // G), rows=num_rows)
    return _LiftSplat.apply(d, e, weight.to(context.dtype), geo)


def use_kernel(values: Tensor) -> bool:
    """Whether the kernel serves ``values``' device and context: CPU, outside export and compilation."""
    return values.device.type == "cpu" and not torch.compiler.is_compiling() and not torch.jit.is_tracing()
