"""Stage 6: 3D feature propagation, encoder-decoder and the occupancy head.

Propagation turns the sparse lifted features into dense ones. The paper's **normalised
3D convolution** block: a depthwise 3x3x3 kernel made non-negative and summing to one
(softmax over its 27 taps, per channel), then a pointwise channel mix whose weights are
non-negative and sum to one per output channel (softmax over inputs), then residual
averaging ``(x + f(x)) / 2``. Every step is a convex combination, so feature magnitudes
are preserved while evidence spreads to empty neighbours. The baseline uses standard
3D residual blocks instead.

The normalised stack is linear in its input, ``y = L x``; :meth:`Propagation.transpose`
returns ``L^T`` built from the same weights, which the causal loss uses to carry its score's
gradient back to the splatted features as a plain (once-differentiated) computation instead
of a backward pass that it would then have to differentiate again.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scaocc_core.config import VoxelNetConfig
from scaocc_core.grid import NUM_CLASSES
from scaocc_core.model.depthwise import depthwise3x3x3


def channel_mix(x: Tensor, weight: Tensor) -> Tensor:
    """Pointwise channel mix: ``weight`` (Cout Cin) at every voxel of ``x`` (b Cin X Y Z).

    One matrix product over the voxels' channel vectors, with no copy when ``x`` is stored
    channels-last (the layout the normalised blocks keep, :func:`channels_last`). It replaces
    a 1x1x1 ``conv3d`` whose double backward fell back to PyTorch's slow 3D convolution on
    CPU. Returns ``b Cout X Y Z``, channels-last.
    """
    return F.linear(x.permute(0, 2, 3, 4, 1), weight).permute(0, 4, 1, 2, 3)  # b X Y Z Cout -> b Cout X Y Z


def channels_last(x: Tensor) -> Tensor:
    """``x`` (b C X Y Z) stored channels-last (memory order b X Y Z C), the layout the
    normalised blocks compute in; a view when it already is (the soft-filling kernel's output)."""
    return x.contiguous(memory_format=torch.channels_last_3d)


class NormalizedConv3d(nn.Module):
    """Normalised depthwise 3x3x3 + normalised pointwise mix, residual-averaged.

    Initialisation: the spatial kernel keeps ``centre_weight`` of each voxel and spreads the
    rest evenly over its 26 neighbours (the point of the block); the channel mix keeps
    ``self_weight`` of each channel. A softmax with equal logits would average all channels,
    and logits move only ~lr per step, so a mix that starts as a channel average stays one for
    thousands of steps and washes out what the channels mean (see EXPERIMENTS.md).
    """

    def __init__(self, channels: int, centre_weight: float = 0.2, self_weight: float = 0.9) -> None:
        super().__init__()
        logits = torch.zeros(channels, 27)
        logits[:, 13] = _peak_logit(centre_weight, 27)
        self.spatial_logits = nn.Parameter(logits)
        mix = torch.zeros(channels, channels)
        mix.fill_diagonal_(_peak_logit(self_weight, channels))
        self.mix_logits = nn.Parameter(mix)

    def spatial_kernel(self) -> Tensor:
        """Depthwise kernel ``C 1 3 3 3``: non-negative, each channel sums to 1."""
        return self.spatial_logits.softmax(dim=-1).view(-1, 1, 3, 3, 3)

    def mix_weight(self) -> Tensor:
        """Pointwise weights ``Cout Cin``: non-negative, each output row sums to 1."""
        return self.mix_logits.softmax(dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: b C X Y Z (fastest stored channels-last, see :func:`channels_last`)."""
        y = depthwise3x3x3(x, self.spatial_kernel().to(x.dtype))
        y = channel_mix(y, self.mix_weight().to(x.dtype))
        return 0.5 * (x + y)

    def transpose(self) -> Callable[[Tensor], Tensor]:
        """The block's transpose ``g -> (g + K^T W^T g) / 2``: ``g`` b C X Y Z, or b 1 X Y Z for the
        same values in every channel; channels-last (:func:`channels_last`).

        ``W^T`` is the channel mix by the transposed weights (for a channel-constant ``g``, its
        row sums times ``g``); ``K^T``, the adjoint of a zero-padded 3x3x3 correlation, is the
        correlation with the kernel flipped along all three axes. The weights are taken now, so
        the result stays tied to the parameters of this forward pass.
        """
        kernel = self.spatial_kernel().flip(2, 3, 4)  # C 1 3 3 3
        mix_t = self.mix_weight().t()  # Cin Cout

        def apply(g: Tensor) -> Tensor:
            if g.shape[1] == 1:
                sums = mix_t.sum(dim=1).to(g.dtype)  # C
                y = (g.permute(0, 2, 3, 4, 1) * sums).permute(0, 4, 1, 2, 3)  # b C X Y Z, channels-last
            else:
                y = channel_mix(g, mix_t.to(g.dtype))
            return 0.5 * (g + depthwise3x3x3(y, kernel.to(g.dtype)))

        return apply


def _peak_logit(weight: float, n: int) -> float:
    """The logit that gives one of ``n`` softmax entries ``weight`` when the others are 0."""
    if n == 1:
        return 0.0
    return math.log(weight * (n - 1) / (1 - weight))


class ResBlock3d(nn.Module):
    """Standard 3D residual block (conv-BN-ReLU-conv-BN + skip)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(cout)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(nn.Conv3d(cin, cout, 1, stride, bias=False), nn.BatchNorm3d(cout))

    def forward(self, x: Tensor) -> Tensor:
        """``x``: b C X Y Z."""
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.skip(x))


class Propagation(nn.Module):
    """The block stack applied right after splatting (normalised or residual)."""

    def __init__(self, channels: int, cfg: VoxelNetConfig) -> None:
        super().__init__()
        make = (lambda: NormalizedConv3d(channels)) if cfg.propagation == "normalized" else (
            lambda: ResBlock3d(channels, channels)
        )
        self.blocks = nn.Sequential(*[make() for _ in range(cfg.propagation_blocks)])
        self.normalized = cfg.propagation == "normalized"

    def forward(self, x: Tensor) -> Tensor:
        """``x``: b C X Y Z -> b C X Y Z."""
        return self.blocks(channels_last(x) if self.normalized else x)

    def transpose(self) -> Callable[[Tensor], Tensor] | None:
        """``L^T`` of the normalised stack ``y = L x`` with the current weights: b C X Y Z (or
        b 1 X Y Z, the same in every channel) -> b C X Y Z; ``None`` for the residual blocks,
        which are not linear."""
        if not self.normalized:
            return None
        blocks = [block.transpose() for block in reversed(self.blocks) if isinstance(block, NormalizedConv3d)]

        def apply(g: Tensor) -> Tensor:
            g = channels_last(g)
            for block in blocks:
                g = block(g)
            return g

        return apply


def conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv3d (no bias) + BatchNorm3d + ReLU."""
    conv = nn.Conv3d(cin, cout, k, stride, k // 2, bias=False)
    return nn.Sequential(conv, nn.BatchNorm3d(cout), nn.ReLU(inplace=True))


class SubVoxelHead(nn.Module):
    """Class logits of the f^3 output voxels inside every feature voxel, from its features.

    A per-voxel MLP (``Cin -> hidden -> f^3 K``, FlashOcc's channel-to-height in 3D) run as
    matrix products on channels-last features, so sub-voxel structure (a road surface in the
    lower half of a coarse voxel) is learnt, not interpolated, and nothing runs at the output
    resolution but one reshape. ``b Cin X' Y' Z'`` -> ``b K fX' fY' fZ'``, laid out
    channels-last (``torch.channels_last_3d``): each voxel's K logits are adjacent, and the
    loss gathers visible voxels as contiguous rows. The last layer's rows are reordered from
    their stored ``(K f f f)`` to ``(f f f K)`` before the product (a 144-row permute of the
    weights, not of the activations), so the interleaving copy and its backward move blocks of
    K adjacent floats instead of single floats.

    ``kernel`` > 1 makes the first layer a ``kernel``^3 convolution: each voxel's children are
    then told apart from its neighbours' features as well as its own (where a car's side runs
    through the voxel). With only the centre tap non-zero it equals the pointwise head.
    """

    def __init__(self, in_channels: int, num_classes: int, factor: int, hidden: int = 32, kernel: int = 1) -> None:
        super().__init__()
        self.factor, self.num_classes = factor, num_classes
        first: nn.Module = (nn.Linear(in_channels, hidden) if kernel == 1
                            else nn.Conv3d(in_channels, hidden, kernel, padding=kernel // 2))
        self.mlp = nn.Sequential(first, nn.ReLU(inplace=True), nn.Linear(hidden, factor**3 * num_classes))

    def forward(self, x: Tensor) -> Tensor:
        """``x``: b Cin X' Y' Z' -> logits b K X Y Z."""
        b, _, X, Y, Z = x.shape
        f, K = self.factor, self.num_classes
        if isinstance(self.mlp[0], nn.Conv3d):
            hidden = self.mlp[:2](x).permute(0, 2, 3, 4, 1)  # b X' Y' Z' hidden
        else:
            hidden = self.mlp[:2](x.permute(0, 2, 3, 4, 1))  # b X' Y' Z' hidden
        out = self.mlp[2]  # its rows are ordered (K f f f), as the checkpoints store them
        assert isinstance(out, nn.Linear)
        weight = out.weight.view(K, f**3, -1).transpose(0, 1).reshape(f**3 * K, -1)  # rows (f f f K)
        bias = out.bias.view(K, f**3).t().reshape(-1)
        y = F.linear(hidden, weight, bias)  # b X' Y' Z' (f f f K)
        y = y.view(b, X, Y, Z, f, f, f, K).permute(0, 1, 4, 2, 5, 3, 6, 7)  # b X' f Y' f Z' f K
        return y.reshape(b, X * f, Y * f, Z * f, K).permute(0, 4, 1, 2, 3)  # b K X Y Z (channels-last)


class VoxelEncoderDecoder(nn.Module):
    """A light 3D U-Net followed by the per-voxel class head.

    The feature grid only gets a 1x1x1 projection and one 3x3x3 fusion convolution; the
    residual blocks run at strides 2, 4, ... where they are 8x, 64x cheaper. With
    ``upsample`` = f > 1 the head is :class:`SubVoxelHead`. Input ``b Cin X' Y' Z'`` ->
    logits ``b K X Y Z`` (X = f X', K = 18 classes).
    """

    def __init__(self, in_channels: int, cfg: VoxelNetConfig, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        ch = cfg.channels
        self.stem = conv_bn_relu(in_channels, ch[0], k=1)
        self.down = nn.ModuleList(
            nn.Sequential(ResBlock3d(ch[i], ch[i + 1], stride=2), ResBlock3d(ch[i + 1], ch[i + 1]))
            for i in range(len(ch) - 1)
        )
        self.up = nn.ModuleList(
            nn.Sequential(nn.Conv3d(ch[i + 1], ch[i], 1, bias=False), nn.BatchNorm3d(ch[i]))
            for i in range(len(ch) - 1)
        )
        self.fuse = nn.ModuleList(conv_bn_relu(ch[i], ch[i]) for i in range(len(ch) - 1))
        f = cfg.upsample
        self.head: nn.Module = (nn.Conv3d(ch[0], num_classes, 1) if f == 1
                                else SubVoxelHead(ch[0], num_classes, f, kernel=cfg.head_kernel))
        self.channels_last = cfg.channels_last

    def forward(self, x: Tensor) -> Tensor:
        """``x``: b Cin X' Y' Z' -> class logits b K X Y Z."""
        x = x.contiguous(memory_format=torch.channels_last_3d if self.channels_last else torch.contiguous_format)
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for i in reversed(range(len(self.up))):
            skip = skips.pop()
            y = F.interpolate(self.up[i](y), size=skip.shape[-3:], mode="trilinear", align_corners=False)
            y = self.fuse[i](F.relu(y + skip))
        return self.head(y)
