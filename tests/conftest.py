"""Shared fixtures: the real nuScenes sample and small model configs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from scaocc_core.config import (
    DepthConfig,
    EncoderConfig,
    GridConfig,
    ImageConfig,
    ModelConfig,
    OffsetConfig,
    VoxelNetConfig,
)
from scaocc_core.data.rig import default_sample_dir

torch.set_num_threads(1)  # tiny test models: one thread avoids oversubscription stalls


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    path = default_sample_dir()
    assert (path / "sample.json").is_file(), f"nuScenes sample missing at {path}"
    return path


@pytest.fixture(scope="session")
def sample(sample_dir: Path) -> dict:
    return json.loads((sample_dir / "sample.json").read_text())


@pytest.fixture(scope="session")
def lidar_points(sample_dir: Path, sample: dict) -> np.ndarray:
    pts = np.fromfile(sample_dir / sample["lidar"]["file"], dtype=np.float32).reshape(-1, 5)
    return pts[:, :3].astype(np.float64)


def micro_config(**overrides: object) -> ModelConfig:
    """A very small model: 2 cameras, 32x64 images, 16x16x4 grid over +-8 m."""
    cfg = ModelConfig(
        name="micro",
        grid=GridConfig(lower=(-8.0, -8.0, -1.0), upper=(8.0, 8.0, 3.0), size=(16, 16, 4)),
        image=ImageConfig(num_cams=2, height=32, width=64),
        encoder=EncoderConfig(depth=18, width=8, stride=16, neck_channels=16),
        depth=DepthConfig(d_min=1.0, d_max=9.0, d_step=1.0, context_channels=8, groups=2),
        offsets=OffsetConfig(enabled=False),
        voxel=VoxelNetConfig(propagation="normalized", propagation_blocks=1, channels=(8, 8)),
    )
    return dataclasses.replace(cfg, **overrides).validate()  # type: ignore[arg-type]
