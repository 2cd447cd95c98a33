"""Small builders shared by the core tests."""

from __future__ import annotations

import math

import torch

from scaocc_core.batch import CameraInputs
from scaocc_core.config import ModelConfig


def look_at_cameras(n: int, height: float = 1.5) -> torch.Tensor:
    """``n`` cameras at the origin looking outward at evenly spaced yaws: ``n 4 4`` ego_T_cam."""
    mats = []
    # optical (x right, y down, z forward) -> ego (x forward, y left, z up) for yaw 0
    base = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]], dtype=torch.float64)
    for i in range(n):
        yaw = 2 * math.pi * i / n
        c, s = math.cos(yaw), math.sin(yaw)
        rz = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
        T = torch.eye(4, dtype=torch.float64)
        T[:3, :3] = rz @ base
        T[2, 3] = height
        mats.append(T)
    return torch.stack(mats)


def camera_inputs(cfg: ModelConfig, batch: int = 1, dtype: torch.dtype = torch.float32, seed: int = 0) -> CameraInputs:
    """Random images with a plausible pinhole rig for ``cfg``."""
    g = torch.Generator().manual_seed(seed)
    n, H, W = cfg.image.num_cams, cfg.image.height, cfg.image.width
    K = torch.tensor([[W * 0.8, 0.0, W / 2 - 0.5], [0.0, W * 0.8, H / 2 - 0.5], [0.0, 0.0, 1.0]], dtype=dtype)
    return CameraInputs(
        images=torch.rand(batch, n, 3, H, W, generator=g, dtype=dtype),
        intrinsics=K.expand(batch, n, 3, 3).clone(),
        ego_T_cam=look_at_cameras(n).to(dtype).expand(batch, n, 4, 4).clone(),
        post_rot=torch.eye(3, dtype=dtype).expand(batch, n, 3, 3).clone(),
        post_tran=torch.zeros(batch, n, 3, dtype=dtype),
        bda=torch.eye(4, dtype=dtype).expand(batch, 4, 4).clone(),
        camera_valid=torch.ones(batch, n, dtype=torch.bool),
    )
