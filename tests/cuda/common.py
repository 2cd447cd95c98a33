"""Shared pieces of the CUDA suite (``conftest.py`` says how it runs): mode, configs, inputs.

``DRY``: no GPU and ``SCAOCC_CUDA_DRY=1``: the tests run on the CPU at reduced sizes.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from scaocc_core.batch import CameraInputs, Targets
from scaocc_core.config import GridConfig, ImageConfig, ModelConfig, load_config
from scaocc_core.grid import FREE

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ("baseline_tiny", "scaocc_tiny", "baseline_r50", "scaocc_r50")
#: The trained checkpoint the label-agreement tests run (``SCAOCC_CUDA_CHECKPOINT`` overrides it).
TRAINED = Path(os.environ.get("SCAOCC_CUDA_CHECKPOINT", ROOT / "models" / "scaocc_tiny.pt"))

ON_CUDA = torch.cuda.is_available()
DRY = not ON_CUDA and os.environ.get("SCAOCC_CUDA_DRY") == "1"

if not ON_CUDA:
    # Read when the kernel is decorated, i.e. on import: without a GPU the kernel module must be
    # the interpreter's, also for tests/test_pool_kernel.py when it runs after this suite is collected.
    os.environ.setdefault("TRITON_INTERPRET", "1")


def needs_cuda() -> None:
    """Skip a test of a CUDA-only feature in the CPU dry run."""
    if not ON_CUDA:
        pytest.skip("CUDA-only feature (dry run on the CPU)")


def model_config(name: str) -> ModelConfig:
    """A shipped config; in the dry run shrunk to 2 cameras, 64x176 images and a 20x20x4 grid."""
    cfg = load_config(ROOT / "config" / "model" / f"{name}.yaml")
    if not DRY:
        return cfg
    return dataclasses.replace(
        cfg, image=ImageConfig(num_cams=2, height=64, width=176),
        grid=GridConfig(lower=cfg.grid.lower, upper=cfg.grid.upper, size=(20, 20, 4)),
    ).validate()


def pool_grid(cfg: ModelConfig) -> GridConfig:
    """The grid the lifted features are pooled into (coarser than the output when ``voxel.upsample`` > 1)."""
    return getattr(cfg, "feature_grid", cfg.grid)


def ring_inputs(cfg: ModelConfig, device: torch.device, seed: int = 0, batch: int = 1) -> CameraInputs:
    """Random images on an outward-looking ring rig (70 degree field of view)."""
    from scaocc_core.deploy.parity import ring_rig

    n, H, W = cfg.image.num_cams, cfg.image.height, cfg.image.width
    K, T = ring_rig(n, (H, W))
    g = torch.Generator().manual_seed(seed)
    rep = (batch, 1, 1, 1)
    return CameraInputs(
        torch.rand(batch, n, 3, H, W, generator=g),
        torch.from_numpy(K).float()[None].repeat(rep), torch.from_numpy(T).float()[None].repeat(rep),
        torch.eye(3).expand(batch, n, 3, 3).clone(), torch.zeros(batch, n, 3), torch.eye(4).expand(batch, 4, 4).clone(),
        torch.ones(batch, n, dtype=torch.bool),
    ).to(device)


def synthetic_targets(cfg: ModelConfig, device: torch.device, seed: int = 0, batch: int = 1) -> Targets:
    """A road plane, random objects and 2D masks with several classes (so the causal loss has classes)."""
    rng = np.random.default_rng(seed)
    X, Y, Z = cfg.grid.size
    n, H, W = cfg.image.num_cams, cfg.image.height, cfg.image.width
    sem = np.full((batch, X, Y, Z), FREE, dtype=np.int64)
    sem[:, :, :, 0] = 11  # driveable surface
    for cls in (1, 4, 9, 15):
        x, y = rng.integers(0, X - 4), rng.integers(0, Y - 4)
        sem[:, x : x + 4, y : y + 4, 1 : max(2, Z // 3)] = cls
    sem2d = rng.choice(np.array([11, 4, 15, 255]), size=(batch, n, H, W)).astype(np.int64)
    depth2d = (rng.random((batch, n, H, W)) * 40 + 1).astype(np.float32)
    return Targets(torch.from_numpy(sem), torch.ones(batch, X, Y, Z, dtype=torch.bool), None,
                   torch.from_numpy(sem2d), torch.from_numpy(depth2d)).to(device)


def varied_model(cfg: ModelConfig, seed: int) -> torch.nn.Module:
    """A random model whose labels vary (variance-preserving weights), so agreement is not trivial."""
    from scaocc_core.model.causal_occ import CausalOcc

    torch.manual_seed(seed)
    model = CausalOcc(cfg).eval()
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return model
