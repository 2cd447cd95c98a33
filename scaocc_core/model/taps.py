"""What the causal loss needs from the consumers of the image features.

The causal attention (:mod:`scaocc_core.causal`) is the *channel mean* of the score's gradient
with respect to the image features ``feat2d`` (b n C h w). Every consumer of ``feat2d`` starts
with a linear map ``z = M feat2d`` (a convolution, a spatial mean), so its share of that mean is
``mean_c (M^T u)`` for ``u = dS/dz``, and ``mean_c M^T`` is a map with a single output channel:
for a 3x3 convolution, a one-channel transposed convolution instead of a full one, and the
same saving again in the loss' backward. Same values and gradients as differentiating with
respect to ``feat2d`` (tested).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class FeatureTap:
    """``z = M feat2d`` (any shape) and ``mean_t(u)``: the channel mean of ``M^T u``, b n h w."""

    z: Tensor
    mean_t: Callable[[Tensor], Tensor]


def conv_tap(z: Tensor, weight: Tensor, padding: int, shape: tuple[int, ...], gate: Tensor | None = None) -> FeatureTap:
    """Tap of a stride-1 convolution ``z = conv2d(feat2d * gate, weight)`` on ``(b n) Cin h w``.

    ``weight`` O Cin k k; ``gate`` (b n) Cin, a per-image channel scale (or ``None``); ``shape``
    is feat2d's ``b n C h w``. ``mean_c (M^T u)`` is the transposed convolution of ``u``
    ((b n) O h w) with ``mean_c gate_c weight[:, c]``, one output channel per image.
    """
    b, n, _, h, w = shape

    def mean_t(u: Tensor) -> Tensor:
        if gate is None:
            out = F.conv_transpose2d(u, weight.mean(dim=1, keepdim=True), padding=padding)  # (b n) 1 h w
        else:
            per_image = (weight[None] * gate[:, None, :, None, None]).mean(dim=2)  # (b n) O k k
            out = F.conv_transpose2d(u.reshape(1, -1, h, w), per_image.reshape(-1, 1, *weight.shape[2:]),
                                     padding=padding, groups=b * n)  # 1 (b n) h w
        return out.view(b, n, h, w)

    return FeatureTap(z, mean_t)


def spatial_mean_tap(z: Tensor, shape: tuple[int, ...]) -> FeatureTap:
    """Tap of ``z = feat2d.mean((h, w))`` (b n C): ``M^T u`` is ``u / (h w)`` at every pixel."""
    b, n, _, h, w = shape
    return FeatureTap(z, lambda u: (u.mean(dim=-1) / (h * w))[:, :, None, None].expand(b, n, h, w))
