"""Builders shared by the tests (the one fixtures module; test modules never import each other).

Models: :func:`micro_config` (2 cameras, for model and loss tests), :func:`front_config`
(the rig's 3 front cameras, for training and evaluation), :func:`small_tiny` and
:func:`make_model` (export and backends), :func:`tiny_config` and :func:`tiny_checkpoint`
(6 cameras, for the node and bag tools). Data: :func:`camera_inputs`, :func:`write_micro_world`,
:func:`write_manifest`.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np
import torch

from scaocc_core.batch import CameraInputs
from scaocc_core.checkpoint import save_checkpoint
from scaocc_core.config import (
    DepthConfig,
    EncoderConfig,
    GridConfig,
    ImageConfig,
    LiftConfig,
    LossConfig,
    ModelConfig,
    OffsetConfig,
    VoxelNetConfig,
    load_config,
)
from scaocc_core.data.labels import OccLabels, save_occ3d_labels
from scaocc_core.data.manifest import CameraRecord, FrameRecord, Manifest
from scaocc_core.data.rig import Rig, load_nuscenes_sample_rig
from scaocc_core.data.synthetic import SynthSpec
from scaocc_core.data.synthetic.writer import write_dataset
from scaocc_core.grid import FREE
from scaocc_core.model.causal_occ import CausalOcc
from scaocc_core.model.voxel_net import NormalizedConv3d
from scaocc_core.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
FRONT_CAMS = 3  # CAM_FRONT_LEFT, CAM_FRONT, CAM_FRONT_RIGHT
HW = (64, 176)
MANIFEST_HW = (225, 400)
MANIFEST_POINT = np.array([14.0, 1.5, 0.8])  # ego point painted as a red blob by write_manifest


# ---- model configs and models ------------------------------------------------------------
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


def front_config(full: bool = False) -> ModelConfig:
    """3 front cameras at 64x176 -> a 50x50x4 grid (1.6 m voxels); ``full`` adds the four components."""
    cfg = ModelConfig(
        name="micro_full" if full else "micro",
        grid=GridConfig(size=(50, 50, 4)),
        image=ImageConfig(FRONT_CAMS, *HW),
        encoder=EncoderConfig(depth=18, width=16, stride=8, neck_channels=32),
        depth=DepthConfig(d_min=1.0, d_max=41.0, d_step=2.0, context_channels=16, groups=4 if full else 1),
        offsets=OffsetConfig(enabled=full),
        lift=LiftConfig("soft" if full else "hard"),
        voxel=VoxelNetConfig("normalized" if full else "residual", 1, (16, 32)),
        loss=LossConfig(depth_weight=0.0, causal_weight=1.0 if full else 0.0),
    )
    return cfg.validate()


def micro_train_config(steps: int, lr: float = 3e-3, **kw: object) -> TrainConfig:
    """Constant-ish learning rate, no augmentation, no periodic validation."""
    base = dict(steps=steps, lr=lr, warmup_steps=3, amp="none", augment=False, checkpoint_every=1000,
                val_every=1000, val_frames=2, log_every=1, class_frequency_frames=20)
    base.update(kw)
    return TrainConfig(**base).validate()  # type: ignore[arg-type]


def small_tiny() -> ModelConfig:
    """scaocc_tiny with four cameras, smaller images and a coarser grid."""
    cfg = load_config(ROOT / "config/model/scaocc_tiny.yaml")
    return dataclasses.replace(
        cfg, name="scaocc_tiny_small", image=ImageConfig(num_cams=4, height=64, width=176),
        grid=GridConfig(lower=(-20.0, -20.0, -1.0), upper=(20.0, 20.0, 5.4), size=(40, 40, 8)),
    ).validate()


def make_model(cfg: ModelConfig, seed: int = 0) -> CausalOcc:
    """A random model whose logits vary across voxels and whose camera offsets move the geometry.

    Default initialisation shrinks activations layer by layer (near-constant logits, one
    label everywhere), which would make parity trivial: variance-preserving weights and
    random normalised-convolution kernels instead.
    """
    torch.manual_seed(seed)
    model = CausalOcc(cfg).eval()
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        if isinstance(module, NormalizedConv3d):
            torch.nn.init.normal_(module.spatial_logits)
            torch.nn.init.normal_(module.mix_logits)
    assert model.offset_head is not None
    for last in (model.offset_head.global_mlp[-1], model.offset_head.local[-1]):
        torch.nn.init.normal_(last.weight, std=0.05)  # type: ignore[arg-type]
        torch.nn.init.normal_(last.bias, std=0.05)  # type: ignore[arg-type]
    return model


def tiny_config() -> ModelConfig:
    """scaocc_tiny shrunk to six 64x176 cameras and a 50x50x4 grid (the node and bag tool tests)."""
    cfg = load_config(ROOT / "config" / "model" / "scaocc_tiny.yaml")
    return dataclasses.replace(cfg, image=ImageConfig(6, *HW), grid=GridConfig(size=(50, 50, 4))).validate()


def tiny_checkpoint(path: Path) -> Path:
    """A random-weight checkpoint of :func:`tiny_config` (seed 0)."""
    cfg = tiny_config()
    torch.manual_seed(0)
    return save_checkpoint(path, CausalOcc(cfg), cfg)


# ---- inputs and data ---------------------------------------------------------------------
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


def write_micro_world(out: Path, scenes: int, frames: int, val_scenes: int, seed: int = 0,
                      preset: str = "default") -> Path:
    """Render a small world with the three front cameras at 64x176 into ``out``."""
    rig = load_nuscenes_sample_rig()
    spec = SynthSpec(seed=seed, scenes=scenes, frames=frames, preset=preset, height=HW[0], width=HW[1],
                     rig=Rig(tuple(rig.cameras[:FRONT_CAMS])))
    write_dataset(out, spec, val_scenes=val_scenes)
    return out


def project(K: np.ndarray, ego_T_cam: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, float]:
    """Pixel and depth of the ego point ``p`` in a camera."""
    c = np.linalg.inv(ego_T_cam) @ np.append(p, 1.0)
    return (K @ c[:3])[:2] / c[2], float(c[2])


def _tuple(m: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(v) for v in r) for r in m)


def write_manifest(root: Path, frames: int = 3, with_2d: bool = True) -> Manifest:
    """A tiny manifest: 6 cameras at 225x400 with a blob at MANIFEST_POINT, Occ3D 200x200x16 labels."""
    rig = load_nuscenes_sample_rig().resized(*MANIFEST_HW)
    rng = np.random.default_rng(0)
    records = []
    for i in range(frames):
        cams = {}
        for cam in rig.cameras:
            img = np.full((*MANIFEST_HW, 3), 60 + 20 * i, dtype=np.uint8)
            uv, depth = project(cam.K, cam.ego_T_cam, MANIFEST_POINT)
            if depth > 0:
                cv2.circle(img, (int(round(uv[0])), int(round(uv[1]))), 5, (0, 0, 255), -1)  # BGR red
            rel = f"frame{i}/{cam.name}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / rel), img)
            sem = depth_rel = sem_rel = None
            if with_2d:
                sem = np.full(MANIFEST_HW, 255, np.uint8)
                d = np.zeros(MANIFEST_HW, np.float32)
                v, u = rng.integers(0, MANIFEST_HW[0], 300), rng.integers(0, MANIFEST_HW[1], 300)
                sem[v, u], d[v, u] = rng.integers(0, 17, 300), rng.uniform(1, 50, 300)
                sem_rel, depth_rel = f"frame{i}/{cam.name}_sem.png", f"frame{i}/{cam.name}_depth.npy"
                cv2.imwrite(str(root / sem_rel), sem)
                np.save(root / depth_rel, d)
            cams[cam.name] = CameraRecord(rel, _tuple(cam.K), _tuple(cam.ego_T_cam), sem_rel, depth_rel)
        sem3d = np.full((200, 200, 16), FREE, np.uint8)
        sem3d[100:120, 90:110, 2:6] = 4  # a car-sized block ahead
        sem3d[:, :, 0:2] = 11  # road
        mask = np.zeros_like(sem3d, dtype=bool)
        mask[:, :, :8] = True
        save_occ3d_labels(root / f"gts/frame{i}/labels.npz", OccLabels(sem3d, mask, mask.copy()))
        records.append(FrameRecord(f"tok{i}", "scene-a", float(i), _tuple(np.eye(4)), f"gts/frame{i}", cams))
    manifest = Manifest(root, "test", rig.names, records, {"train": list(range(frames - 1)), "val": [frames - 1]},
                        {"lower": [-40, -40, -1], "upper": [40, 40, 5.4], "size": [200, 200, 16]})
    manifest.save()
    return manifest
