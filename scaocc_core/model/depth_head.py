"""Stage 2: camera-aware depth and context head (BEVDepth-style camera conditioning).

For every image feature cell it predicts G depth distributions over D bins (one per
context channel group) and C context channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scaocc_core.config import DepthConfig
from scaocc_core.model.taps import FeatureTap, conv_tap

CAMERA_PARAMS = 22  # fx fy cx cy, post_rot 2x2, post_tran xy, ego_T_cam 3x4


def camera_parameters(intrinsics: Tensor, post_rot: Tensor, post_tran: Tensor, ego_T_cam: Tensor,
                      image_hw: tuple[int, int]) -> Tensor:
    """Flatten the camera into the MLP input vector, ``b n 22``.

    Intrinsics are divided by the image size so the numbers stay O(1).
    """
    H, W = image_hw
    k = torch.stack(
        [intrinsics[..., 0, 0] / W, intrinsics[..., 1, 1] / H, intrinsics[..., 0, 2] / W, intrinsics[..., 1, 2] / H],
        dim=-1,
    )
    aug = torch.cat([post_rot[..., :2, :2].flatten(-2), post_tran[..., :2] / max(H, W)], dim=-1)
    ext = ego_T_cam[..., :3, :4].flatten(-2)
    return torch.cat([k, aug, ext], dim=-1)


class DepthContextHead(nn.Module):
    """``b n Cin h w`` image features -> depth ``b n G D h w`` and context ``b n C h w``."""

    def __init__(self, in_channels: int, cfg: DepthConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.camera_mlp: nn.Module | None = None
        if cfg.camera_aware:
            self.camera_mlp = nn.Sequential(
                nn.Linear(CAMERA_PARAMS, in_channels), nn.ReLU(inplace=True), nn.Linear(in_channels, in_channels)
            )
        self.trunk = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
        )
        self.out = nn.Conv2d(in_channels, cfg.groups * cfg.num_bins + cfg.context_channels, 1)

    def forward(self, feat: Tensor, camera: Tensor) -> tuple[Tensor, Tensor, FeatureTap]:
        """``feat``: b n Cin h w; ``camera``: b n 22 (see :func:`camera_parameters`).

        Returns depth, context and the :class:`FeatureTap` of the first convolution."""
        b, n = feat.shape[:2]
        x = feat.flatten(0, 1)  # (b n) Cin h w
        gate = None
        if self.camera_mlp is not None:
            gate = torch.sigmoid(self.camera_mlp(camera.flatten(0, 1).to(x.dtype)))  # (b n) Cin
            x = x * gate[:, :, None, None]
        conv, bn, relu = self.trunk
        assert isinstance(conv, nn.Conv2d)
        z = conv(x)  # (b n) Cin h w
        y = relu(bn(z))
        # The output convolution's two parts applied apart: slicing one (b n) (G D + C) h w
        # output would cost each backward a zero-filled copy of it.
        GD = self.cfg.groups * self.cfg.num_bins
        weight, bias = self.out.weight, self.out.bias
        assert bias is not None
        depth = F.conv2d(y, weight[:GD], bias[:GD]).unflatten(1, (self.cfg.groups, -1)).softmax(dim=2)  # (b n) G D h w
        context = F.conv2d(y, weight[GD:], bias[GD:])  # (b n) C h w
        tap = conv_tap(z, conv.weight, 1, tuple(feat.shape), gate)
        return depth.unflatten(0, (b, n)), context.unflatten(0, (b, n)), tap
