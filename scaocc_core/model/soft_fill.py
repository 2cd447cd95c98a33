"""Soft filling's fast CPU kernel: three numba loops closed under differentiation.

Trilinear soft filling (:func:`scaocc_core.model.splat.pool_soft_reference`) is bilinear
in the frustum features ``x`` (``P C``) and the corner weights ``w`` (``8 P``); ``idx`` (``8 P``)
holds each corner's output row (batch folded in, one dump row for points outside):

    SPLAT(x, w)[r, c]  = sum over (k, p) with idx[k, p] = r of w[k, p] x[p, c]
    GATHER(g, w)[p, c] = sum_k w[k, p] g[idx[k, p], c]      (d SPLAT / d x, transposed)
    CDOT(x, g)[k, p]   = sum_c x[p, c] g[idx[k, p], c]      (d SPLAT / d w, transposed)

The derivatives of GATHER and CDOT are again these three maps, so gradients of any order,
and the causal loss' ``autograd.grad(..., create_graph=True)`` with its backward, run as
these loops. PyTorch's autograd of the reference instead materialises a ``P C`` product per
corner and per derivative, and on CPU the time goes into allocating and first touching those
(EXPERIMENTS.md section 4). Values equal the reference up to float summation order
(``tests/test_model.py`` holds them and both derivative orders equal).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numba import njit
from torch import Tensor
from torch.autograd import Function


@njit(cache=True, nogil=True)
def _splat(x: np.ndarray, w: np.ndarray, idx: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - numba
    P, C = x.shape
    for p in range(P):
        for k in range(idx.shape[0]):
            r, wk = idx[k, p], w[k, p]
            for c in range(C):
                out[r, c] += wk * x[p, c]


@njit(cache=True, nogil=True)
def _gather(g: np.ndarray, w: np.ndarray, idx: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - numba
    P, C = out.shape
    for p in range(P):
        for k in range(idx.shape[0]):
            r, wk = idx[k, p], w[k, p]
            for c in range(C):
                out[p, c] += wk * g[r, c]


@njit(cache=True, nogil=True)
def _cdot(x: np.ndarray, g: np.ndarray, idx: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - numba
    P, C = x.shape
    for p in range(P):
        for k in range(idx.shape[0]):
            r = idx[k, p]
            acc = 0.0
            for c in range(C):
                acc += x[p, c] * g[r, c]
            out[k, p] = acc


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


class _Splat(Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, idx: Tensor, rows: int) -> Tensor:
        out = x.new_zeros(rows, x.shape[1])
        _splat(_np(x), _np(w), _np(idx), out.numpy())
        ctx.save_for_backward(x, w, idx)
        return out

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        x, w, idx = ctx.saved_tensors
        gx = _Gather.apply(g, w, idx) if ctx.needs_input_grad[0] else None
        gw = _CDot.apply(x, g, idx) if ctx.needs_input_grad[1] else None
        return gx, gw, None, None


class _Gather(Function):
    @staticmethod
    def forward(ctx: Any, g: Tensor, w: Tensor, idx: Tensor) -> Tensor:
        out = g.new_zeros(w.shape[1], g.shape[1])
        _gather(_np(g), _np(w), _np(idx), out.numpy())
        ctx.save_for_backward(g, w, idx)
        return out

    @staticmethod
    def backward(ctx: Any, h: Tensor) -> tuple[Tensor | None, ...]:
        g, w, idx = ctx.saved_tensors
        dg = _Splat.apply(h, w, idx, g.shape[0]) if ctx.needs_input_grad[0] else None
        dw = _CDot.apply(h, g, idx) if ctx.needs_input_grad[1] else None
        return dg, dw, None


class _CDot(Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, g: Tensor, idx: Tensor) -> Tensor:
        out = x.new_empty(idx.shape)
        _cdot(_np(x), _np(g), _np(idx), out.numpy())
        ctx.save_for_backward(x, g, idx)
        return out

    @staticmethod
    def backward(ctx: Any, h: Tensor) -> tuple[Tensor | None, ...]:
        x, g, idx = ctx.saved_tensors
        dx = _Gather.apply(g, h, idx) if ctx.needs_input_grad[0] else None
        dg = _Splat.apply(x, h, idx, g.shape[0]) if ctx.needs_input_grad[1] else None
        return dx, dg, None


def splat_rows(x: Tensor, w: Tensor, idx: Tensor, rows: int) -> Tensor:
    """``SPLAT``: ``x`` P C and ``w`` K P (float, CPU) at rows ``idx`` K P (int64) -> ``rows C``.

    Differentiable to any order in ``x`` and ``w``.
    """
    if x.device.type != "cpu":
        raise ValueError(f"the numba soft-filling kernel runs on CPU tensors, got {x.device}")
    return _Splat.apply(x.contiguous(), w.to(x.dtype).contiguous(), idx.contiguous(), rows)


def use_kernel(values: Tensor) -> bool:
    """Whether :func:`splat_rows` serves ``values``: CPU tensors, outside export and compilation."""
    return values.device.type == "cpu" and not torch.compiler.is_compiling() and not torch.jit.is_tracing()
