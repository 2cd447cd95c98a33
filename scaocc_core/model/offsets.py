"""Stage 3: learnable camera offsets.

(a) A global correction per camera, predicted from pooled image features and the current
pose (R, t): a small rotation (axis-angle, composed as ``exp(w) @ R``) and a translation
added to t. (b) A per-location correction (du, dv, dd) for every frustum point.

Both last layers are zero-initialised and bounded with ``tanh``, so an untrained module
returns exactly zero corrections and the model equals the plain one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from scaocc_core.config import DepthConfig, OffsetConfig
from scaocc_core.geometry import axis_angle_to_matrix
from scaocc_core.model.taps import FeatureTap, conv_tap, spatial_mean_tap


@dataclass
class CameraOffsets:
    """Corrections applied to the geometry (all zero when offsets are disabled)."""

    rotation: Tensor  # b n 3, axis-angle in radians, left-multiplied onto R of ego_T_cam
    translation: Tensor  # b n 3, metres, added to t of ego_T_cam
    frustum_delta: Tensor | None  # b n D h w 3, (du, dv) pixels and dd metres; None if disabled
    taps: tuple[FeatureTap, ...] = ()  # the linear first layers on the image features

    def apply(self, ego_T_cam: Tensor) -> Tensor:
        """Corrected ``ego_T_cam`` (b n 4 4)."""
        rot = axis_angle_to_matrix(self.rotation) @ ego_T_cam[..., :3, :3]
        top = torch.cat([rot, (ego_T_cam[..., :3, 3] + self.translation)[..., None]], dim=-1)
        return torch.cat([top, ego_T_cam[..., 3:, :]], dim=-2)


class CameraOffsetHead(nn.Module):
    """Predicts :class:`CameraOffsets` from image features ``b n C h w`` and ``ego_T_cam``."""

    def __init__(self, in_channels: int, depth: DepthConfig, image_stride: int, cfg: OffsetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_bins = depth.num_bins
        self.max_uv = cfg.max_uv_px
        self.global_mlp = nn.Sequential(
            nn.Linear(in_channels + 12, 128), nn.ReLU(inplace=True), nn.Linear(128, 6)
        )
        self.local = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 3, 1, 1), nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, 3 * depth.num_bins, 1),
        )
        for last in (self.global_mlp[-1], self.local[-1]):
            assert isinstance(last, (nn.Linear, nn.Conv2d))
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)  # type: ignore[arg-type]

    def forward(self, feat: Tensor, ego_T_cam: Tensor) -> CameraOffsets:
        """``feat``: b n C h w; ``ego_T_cam``: b n 4 4."""
        b, n, _, h, w = feat.shape
        pooled = feat.mean(dim=(-2, -1))  # b n C
        pose = ego_T_cam[..., :3, :4].flatten(-2).to(feat.dtype)  # b n 12
        g = self.global_mlp(torch.cat([pooled, pose], dim=-1))  # b n 6
        rotation = math.radians(self.cfg.max_rot_deg) * torch.tanh(g[..., :3])
        translation = self.cfg.max_trans_m * torch.tanh(g[..., 3:])
        conv, _, out = self.local
        assert isinstance(conv, nn.Conv2d)
        z = conv(feat.flatten(0, 1))  # (b n) C h w, kept: not through the in-place ReLU
        raw = out(torch.relu(z)).view(b, n, self.num_bins, 3, h, w).permute(0, 1, 2, 4, 5, 3)  # b n D h w 3
        scale = raw.new_tensor([self.max_uv, self.max_uv, self.cfg.max_depth_m])
        taps = (spatial_mean_tap(pooled, tuple(feat.shape)), conv_tap(z, conv.weight, 1, tuple(feat.shape)))
        return CameraOffsets(rotation, translation, torch.tanh(raw) * scale, taps)


def zero_offsets(ego_T_cam: Tensor) -> CameraOffsets:
    """Identity corrections for models without learnable offsets."""
    zeros = ego_T_cam.new_zeros(*ego_T_cam.shape[:2], 3)
    return CameraOffsets(zeros, zeros, None)
