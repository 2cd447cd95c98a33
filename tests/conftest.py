"""pytest fixtures of the real nuScenes sample (the builders shared by tests live in tests/fixtures.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

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
