"""Typed, frozen training configuration (optimiser, schedule, checkpoints), loaded from YAML.

Files live under ``config/train/``; unknown keys, wrong types and impossible values raise
:class:`~scaocc_core.config.ConfigError` naming the key (the same loader as the model config).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scaocc_core.config import ConfigError, from_dict, read_yaml

AMP_MODES = ("none", "bf16", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: AdamW with linear warm-up then cosine decay to ``min_lr_ratio * lr``.

    ``amp`` only takes effect on CUDA. ``checkpoint_every`` and ``val_every`` count optimiser
    steps; ``val_frames`` caps the validation frames (0 = the whole split).
    ``extrinsic_noise_prob`` is the share of training items whose ``ego_T_cam`` the model gets
    perturbed (:func:`scaocc_core.data.augment.sample_extrinsic_noise`; needs ``augment``);
    ``lowres_prob`` the share whose images are degraded to half resolution
    (:func:`scaocc_core.data.augment.halve_resolution`; needs ``augment``).
    """

    steps: int = 2000
    batch_size: int = 1
    lr: float = 2e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    grad_clip: float = 5.0
    amp: str = "bf16"
    augment: bool = True
    extrinsic_noise_prob: float = 0.0
    lowres_prob: float = 0.0
    num_workers: int = 0
    checkpoint_every: int = 500
    val_every: int = 500
    val_frames: int = 0
    log_every: int = 10
    class_frequency_frames: int = 200
    seed: int = 0

    def validate(self) -> TrainConfig:
        """Raise :class:`ConfigError` on impossible values; return ``self``."""
        positive = ("steps", "batch_size", "checkpoint_every", "val_every", "log_every")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"train.{name} must be > 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        for name in ("weight_decay", "warmup_steps", "grad_clip", "num_workers", "val_frames",
                     "class_frequency_frames"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("extrinsic_noise_prob", "lowres_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"train.{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"train.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.amp not in AMP_MODES:
            raise ConfigError(f"train.amp must be one of {AMP_MODES}, got {self.amp!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML / JSON friendly)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def train_config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from a plain dict."""
    return from_dict(TrainConfig, data).validate()


def load_train_config(path: str | Path) -> TrainConfig:
    """Load and validate a :class:`TrainConfig` from a YAML file."""
    return train_config_from_dict(read_yaml(path, "training config"))


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Learning-rate multiplier at optimiser step ``step`` (0-based): warm-up, then cosine."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(cfg.steps - cfg.warmup_steps, 1)
    progress = min(max(step - cfg.warmup_steps, 0) / span, 1.0)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
