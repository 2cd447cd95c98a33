"""The depthwise 3x3x3 correlation of the normalised propagation, in the forms each runtime
runs fastest, and the derivative of its kernel.

:func:`depthwise3x3x3_reference` is PyTorch's grouped ``conv3d``; every other form here is
tested equal to it in values and derivatives (``tests/test_model.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit
from torch import Tensor
from torch.autograd import Function

from scaocc_core.model.soft_fill import use_kernel


@njit(cache=True, nogil=True, fastmath=True)
def _kernel_gradient(x: np.ndarray, g: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - numba
    """``out[o, c] += sum_v g[v, c] x[v + o, c]`` over the voxels ``v`` whose row of ``g`` is not
    zero, for the 27 offsets ``o`` (zero padding); ``x``, ``g`` b X Y Z C, ``out`` 27 C."""
    B, X, Y, Z, C = g.shape
    for b in range(B):
        for i in range(X):
            for j in range(Y):
                for k in range(Z):
                    live = False
                    for c in range(C):
                        if g[b, i, j, k, c] != 0:
                            live = True
                            break
                    if not live:
                        continue
                    for di in range(3):
                        ii = i + di - 1
                        if ii < 0 or ii >= X:
                            continue
                        for dj in range(3):
                            jj = j + dj - 1
                            if jj < 0 or jj >= Y:
                                continue
                            for dk in range(3):
                                kk = k + dk - 1
                                if kk < 0 or kk >= Z:
                                    continue
                                o = 9 * di + 3 * dj + dk
                                for c in range(C):
                                    out[o, c] += g[b, i, j, k, c] * x[b, ii, jj, kk, c]


def kernel_gradient(x: Tensor, grad: Tensor) -> Tensor:
    """Gradient ``C 1 3 3 3`` of the depthwise kernel, given the input ``x`` and the output's
    gradient ``grad`` (b C X Y Z, CPU): one numba pass over the voxels, which skips those where
    ``grad`` is zero (the causal loss' gradient through the propagation's transpose lives on a
    few per cent of them). Accumulates in float64; not differentiable
    (:func:`kernel_gradient_reference` is, and is what it is tested against).
    """
    C = x.shape[1]
    out = np.zeros((27, C), dtype=np.float64)
    _kernel_gradient(x.detach().permute(0, 2, 3, 4, 1).contiguous().numpy(),
                     grad.detach().permute(0, 2, 3, 4, 1).contiguous().numpy(), out)  # b X Y Z C: views
    return torch.from_numpy(out).t().reshape(C, 1, 3, 3, 3)  # o = 9 dx + 3 dy + dz


def kernel_gradient_reference(x: Tensor, grad: Tensor) -> Tensor:
    """:func:`kernel_gradient` as a differentiable correlation: the zero-padded input with the
    output gradient used as a ``X Y Z`` kernel, one group per channel."""
    b, C = x.shape[:2]
    padded = F.pad(x, (1, 1, 1, 1, 1, 1))  # b C X+2 Y+2 Z+2
    padded = padded.reshape(1, b * C, *padded.shape[2:])  # 1 (b C) X+2 Y+2 Z+2
    taps = F.conv3d(padded, grad.reshape(b * C, 1, *grad.shape[2:]), groups=b * C)  # 1 (b C) 3 3 3
    return taps.view(b, C, 1, 3, 3, 3).sum(dim=0)  # C 1 3 3 3


class _DepthwiseChannelsLast(Function):
    """Depthwise 3x3x3 correlation of channels-last CPU tensors, with its backward written out.

    oneDNN's depthwise 3D kernel runs the forward in ~1 ms at scaocc_tiny's feature grid, but
    its generic backward takes ~25 ms per derivative. Both derivatives are correlations too:
    the input's is this correlation with the kernel flipped along all three axes (the adjoint
    of a zero-padded correlation), the kernel's the correlation of the input with the output
    gradient (:func:`kernel_gradient`; :func:`kernel_gradient_reference` under
    ``create_graph``, which is differentiable again, so higher derivatives exist).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, kernel: Tensor) -> Tensor:
        ctx.save_for_backward(x, kernel)
        return F.conv3d(x, kernel, padding=1, groups=kernel.shape[0])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, kernel = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last_3d)
        gx = gk = None
        if ctx.needs_input_grad[0]:
            gx = _DepthwiseChannelsLast.apply(grad, kernel.flip(2, 3, 4))
        if ctx.needs_input_grad[1]:
            # Under create_graph the derivative must be differentiable again: the correlation.
            fn = kernel_gradient_reference if torch.is_grad_enabled() else kernel_gradient
            gk = fn(x, grad).to(kernel.dtype)
        return gx, gk


def depthwise3x3x3(x: Tensor, kernel: Tensor) -> Tensor:
    """Depthwise 3x3x3 correlation with zero padding: ``x`` b C X Y Z, ``kernel`` C 1 3 3 3.

    One of two fast forms of :func:`depthwise3x3x3_reference`, both tested equal to it in
    values and derivatives: on CPU, outside export and compilation,
    :func:`depthwise3x3x3_channels_last` (~13 ms forward and backward at scaocc_tiny's feature
    grid against ~32 ms); elsewhere and in the ONNX graph, :func:`depthwise3x3x3_banded`
    (which ONNX Runtime runs ~4x faster than a grouped 3D convolution).
    """
    if use_kernel(x):
        return depthwise3x3x3_channels_last(x, kernel)
    return depthwise3x3x3_banded(x, kernel)


def depthwise3x3x3_channels_last(x: Tensor, kernel: Tensor) -> Tensor:
    """oneDNN's depthwise 3D kernel on channels-last memory, with the backward of
    :class:`_DepthwiseChannelsLast`. Returns b C X Y Z, channels-last."""
    return _DepthwiseChannelsLast.apply(x.contiguous(memory_format=torch.channels_last_3d), kernel)


def depthwise3x3x3_banded(x: Tensor, kernel: Tensor) -> Tensor:
    """The depthwise correlation as one grouped 2D convolution.

    The Z axis is folded into the channels and, per channel ``c``, the Z taps become a banded
    ``Z x Z`` block: ``W[(c, zo), zi, kx, ky] = kernel[c, 0, kx, ky, zi - zo + 1]`` for
    ``|zi - zo| <= 1`` (zero padding in Z falls out of the band). Returns b C X Y Z.
    """
    b, C, X, Y, Z = x.shape
    z = torch.arange(Z, device=x.device)
    tap = z[None, :] - z[:, None] + 1  # zo zi -> kz
    band = ((tap >= 0) & (tap <= 2)).to(kernel.dtype)
    w = kernel[:, 0][..., tap.clamp(0, 2)] * band  # C kx ky zo zi
    w = w.permute(0, 3, 4, 1, 2).reshape(C * Z, Z, 3, 3)  # (C zo) zi kx ky
    x2 = x.permute(0, 1, 4, 2, 3).reshape(b, C * Z, X, Y)  # b (C Z) X Y
    y = F.conv2d(x2, w, padding=1, groups=C)  # b (C Z) X Y
    return y.view(b, C, Z, X, Y).permute(0, 1, 3, 4, 2)  # b C X Y Z


def depthwise3x3x3_reference(x: Tensor, kernel: Tensor) -> Tensor:
    """The plain grouped ``conv3d`` that :func:`depthwise3x3x3` is tested against."""
    return F.conv3d(x, kernel, padding=1, groups=x.shape[1])
