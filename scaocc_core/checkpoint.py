"""Checkpoints that carry their config, so a model is rebuilt from the file alone.

Format (a plain dict; loaded with ``torch.load(weights_only=True)``)::

    {"format": "scaocc-checkpoint", "version": 1, "config": ModelConfig as dict,
     "model": state_dict, "meta": {...}, "train_state": {...} (optional)}
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from scaocc_core.config import ConfigError, ModelConfig, model_config_from_dict
from scaocc_core.model.causal_occ import CausalOcc

log = logging.getLogger(__name__)
FORMAT = "scaocc-checkpoint"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, or not a scaocc checkpoint."""


def save_checkpoint(path: str | Path, model: torch.nn.Module, cfg: ModelConfig, meta: dict[str, Any] | None = None,
                    train_state: dict[str, Any] | None = None) -> Path:
    """Write atomically (temp file + rename) so an interrupted save never corrupts ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "config": cfg.to_dict(),
        "model": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        "meta": meta or {},
    }
    if train_state is not None:
        payload["train_state"] = train_state
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate the raw checkpoint dict (weights_only, on CPU)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        first = (str(exc).strip().splitlines() or [""])[0].split(". ")[0]
        raise CheckpointError(f"cannot read checkpoint {path}: corrupt, truncated or not a PyTorch file "
                              f"({type(exc).__name__}: {first})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a scaocc checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint version {payload.get('version')!r}")
    return payload


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[CausalOcc, ModelConfig]:
    """Rebuild the model from the checkpoint's own config and load its weights (eval mode)."""
    payload = read_checkpoint(path)
    try:
        cfg = model_config_from_dict(payload["config"])
    except (ConfigError, KeyError) as exc:
        raise CheckpointError(f"{path}: invalid stored config: {exc}") from exc
    model = CausalOcc(cfg)
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path}: weights do not match the stored config: {exc}") from exc
    log.info("loaded %s (%s)", path, cfg.name)
    return model.to(device).eval(), cfg
