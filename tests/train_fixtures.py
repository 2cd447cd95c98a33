"""Micro model config and micro synthetic worlds shared by the training/evaluation tests."""

from __future__ import annotations

from pathlib import Path

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
)
from scaocc_core.data.rig import Rig, load_nuscenes_sample_rig
from scaocc_core.data.synthetic import SynthSpec
from scaocc_core.data.synthetic.writer import write_dataset
from scaocc_core.training.config import TrainConfig

FRONT_CAMS = 3  # CAM_FRONT_LEFT, CAM_FRONT, CAM_FRONT_RIGHT
HW = (64, 176)


def micro_config(full: bool = False) -> ModelConfig:
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


def write_micro_world(out: Path, scenes: int, frames: int, val_scenes: int, seed: int = 0,
                      preset: str = "default") -> Path:
    """Render a small world with the three front cameras at 64x176 into ``out``."""
    rig = load_nuscenes_sample_rig()
    spec = SynthSpec(seed=seed, scenes=scenes, frames=frames, preset=preset, height=HW[0], width=HW[1],
                     rig=Rig(tuple(rig.cameras[:FRONT_CAMS])))
    write_dataset(out, spec, val_scenes=val_scenes)
    return out
