"""Typed, frozen model configuration, loaded from small YAML files.

This module is the one home for defaults. ``load_config`` reads a YAML file under
``config/model/``; unknown keys, wrong types and impossible values raise
:class:`ConfigError` with the offending key named.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml


class ConfigError(ValueError):
    """A configuration file or dictionary is malformed."""


@dataclass(frozen=True)
class GridConfig:
    """Voxel grid in the ego frame (Occ3D: 200x200x16 voxels of 0.4 m)."""

    lower: tuple[float, float, float] = (-40.0, -40.0, -1.0)
    upper: tuple[float, float, float] = (40.0, 40.0, 5.4)
    size: tuple[int, int, int] = (200, 200, 16)

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """Edge length of one voxel along x, y, z in metres."""
        return tuple((u - lo) / n for lo, u, n in zip(self.lower, self.upper, self.size))  # type: ignore[return-value]

    def coarsened(self, factor: int) -> GridConfig:
        """The same volume with ``factor`` times fewer voxels along each axis."""
        if any(n % factor for n in self.size):
            raise ConfigError(f"grid.size {self.size} is not divisible by {factor}")
        return GridConfig(self.lower, self.upper, tuple(n // factor for n in self.size))  # type: ignore[arg-type]

    def validate(self) -> None:
        """Raise :class:`ConfigError` if the grid is empty or inverted."""
        if any(n <= 0 for n in self.size):
            raise ConfigError(f"grid.size must be positive, got {self.size}")
        if any(u <= lo for lo, u in zip(self.lower, self.upper)):
            raise ConfigError(f"grid.upper must exceed grid.lower, got {self.lower} .. {self.upper}")


@dataclass(frozen=True)
class ImageConfig:
    """Network input: ``num_cams`` images of ``height`` x ``width`` pixels."""

    num_cams: int = 6
    height: int = 256
    width: int = 704

    def validate(self) -> None:
        """Raise :class:`ConfigError` on non-positive sizes."""
        if min(self.num_cams, self.height, self.width) <= 0:
            raise ConfigError(f"image sizes must be positive, got {self}")


@dataclass(frozen=True)
class EncoderConfig:
    """ResNet backbone plus a neck that outputs features at ``stride``."""

    depth: int = 50
    width: int = 64
    stride: int = 16
    neck_channels: int = 256
    pretrained: str | None = None

    def validate(self) -> None:
        """Raise :class:`ConfigError` on an unsupported depth or stride."""
        if self.depth not in (18, 34, 50):
            raise ConfigError(f"encoder.depth must be 18, 34 or 50, got {self.depth}")
        if self.stride not in (8, 16, 32):
            raise ConfigError(f"encoder.stride must be 8, 16 or 32, got {self.stride}")


@dataclass(frozen=True)
class DepthConfig:
    """Depth bins (``d_min`` + k * ``d_step``) and the channel-grouped context head."""

    d_min: float = 1.0
    d_max: float = 45.0
    d_step: float = 0.5
    context_channels: int = 64
    groups: int = 1
    camera_aware: bool = True

    @property
    def num_bins(self) -> int:
        """Number of depth bins D."""
        return int(round((self.d_max - self.d_min) / self.d_step))

    def validate(self) -> None:
        """Raise :class:`ConfigError` on empty bins or indivisible groups."""
        if self.num_bins <= 0:
            raise ConfigError(f"depth bins empty: {self.d_min}..{self.d_max} step {self.d_step}")
        if self.groups <= 0 or self.context_channels % self.groups:
            raise ConfigError(
                f"depth.context_channels ({self.context_channels}) must be divisible by "
                f"depth.groups ({self.groups})"
            )


@dataclass(frozen=True)
class OffsetConfig:
    """Learnable camera offsets: a global pose correction and per-point (du, dv, dd)."""

    enabled: bool = False
    max_rot_deg: float = 3.0
    max_trans_m: float = 0.3
    max_uv_px: float = 8.0
    max_depth_m: float = 1.0


@dataclass(frozen=True)
class LiftConfig:
    """How frustum features are pooled into voxels, in training and at inference alike.

    ``soft`` spreads each point over its 8 neighbouring voxels with trilinear weights, so
    coordinates (and hence camera offsets) receive gradients; ``hard`` adds each point to
    the voxel containing it.
    """

    pooling: str = "soft"

    def validate(self) -> None:
        """Raise :class:`ConfigError` on an unknown pooling mode."""
        if self.pooling not in ("soft", "hard"):
            raise ConfigError(f"lift.pooling must be soft or hard, got {self.pooling!r}")


@dataclass(frozen=True)
class VoxelNetConfig:
    """3D part: propagation blocks, then an encoder-decoder and the occupancy head.

    ``upsample`` > 1 runs the whole 3D part on a grid ``upsample`` times coarser than the
    output grid; a learnt sub-voxel head (each feature voxel's ``upsample``^3 children's
    logits from its features, or from its ``head_kernel``^3 neighbourhood's) restores the
    output grid, so the model always predicts (and is scored on) ``grid``.
    """

    propagation: str = "normalized"
    propagation_blocks: int = 2
    channels: tuple[int, ...] = (64, 128, 256)
    channels_last: bool = False
    upsample: int = 1
    head_kernel: int = 1

    def validate(self) -> None:
        """Raise :class:`ConfigError` on an unknown block type, upsampling factor or head kernel."""
        if self.upsample not in (1, 2, 4):
            raise ConfigError(f"voxel.upsample must be 1, 2 or 4, got {self.upsample}")
        if self.propagation not in ("normalized", "residual"):
            raise ConfigError(
                f"voxel.propagation must be normalized or residual, got {self.propagation!r}"
            )
        if not self.channels:
            raise ConfigError("voxel.channels must not be empty")
        if self.head_kernel not in (1, 3):
            raise ConfigError(f"voxel.head_kernel must be 1 or 3, got {self.head_kernel}")
        if self.head_kernel > 1 and self.upsample == 1:
            raise ConfigError("voxel.head_kernel applies to the sub-voxel head: it needs voxel.upsample > 1")


@dataclass(frozen=True)
class LossConfig:
    """Loss weights. ``causal_feature`` picks where the causal loss reads 3D features.

    ``lovasz_voxels`` > 0 scores the Lovasz term on that many visible voxels drawn uniformly
    per step (0 = all of them); cross-entropy always uses every visible voxel.
    ``causal_warmup`` is the fraction of the training steps over which the causal weight ramps
    linearly from 0 to ``causal_weight`` (0 = full weight from the first step).
    ``causal_every`` = k > 1 is lazy regularisation (as StyleGAN2 does for its R1 penalty): the
    causal loss, a second-order term, runs on every k-th training step only, at k times its
    weight, so its expected gradient is unchanged at 1/k of its cost (EXPERIMENTS.md section 4).
    """

    ce_weight: float = 1.0
    lovasz_weight: float = 1.0
    lovasz_voxels: int = 0
    depth_weight: float = 0.0
    causal_weight: float = 0.0
    causal_feature: str = "propagated"
    causal_warmup: float = 0.0
    causal_every: int = 1
    class_balanced: bool = True

    def validate(self) -> None:
        """Raise :class:`ConfigError` on negative weights or an unknown feature tap."""
        if self.causal_feature not in ("splat", "propagated"):
            raise ConfigError(
                f"loss.causal_feature must be splat or propagated, got {self.causal_feature!r}"
            )
        for name in ("ce_weight", "lovasz_weight", "depth_weight", "causal_weight", "lovasz_voxels"):
            if getattr(self, name) < 0:
                raise ConfigError(f"loss.{name} must be >= 0")
        if not 0.0 <= self.causal_warmup <= 1.0:
            raise ConfigError(f"loss.causal_warmup must be a fraction of training in [0, 1], got {self.causal_warmup}")
        if self.causal_every < 1:
            raise ConfigError(f"loss.causal_every must be a step count >= 1, got {self.causal_every}")

    def causal_scale(self, progress: float, step: int | None = None) -> float:
        """The factor on ``causal_weight`` at ``progress`` (fraction of training done, 0..1).

        The warm-up's ramp; at training ``step`` with ``causal_every`` = k, also 0 on steps
        that are not multiples of k and k on those that are. ``step=None`` (evaluation) gives
        the ramp alone.
        """
        ramp = 1.0 if self.causal_warmup == 0 else min(1.0, max(progress, 0.0) / self.causal_warmup)
        if step is None or self.causal_every == 1:
            return ramp
        return ramp * self.causal_every if step % self.causal_every == 0 else 0.0


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; stored inside every checkpoint."""

    name: str = "scaocc"
    grid: GridConfig = field(default_factory=GridConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)
    offsets: OffsetConfig = field(default_factory=OffsetConfig)
    lift: LiftConfig = field(default_factory=LiftConfig)
    voxel: VoxelNetConfig = field(default_factory=VoxelNetConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def validate(self) -> ModelConfig:
        """Check every section; return ``self`` for chaining."""
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            if hasattr(section, "validate"):
                section.validate()
        if self.image.height % self.encoder.stride or self.image.width % self.encoder.stride:
            raise ConfigError(
                f"image {self.image.height}x{self.image.width} must be divisible by "
                f"encoder.stride {self.encoder.stride}"
            )
        self.grid.coarsened(self.voxel.upsample)  # grid.size must divide by voxel.upsample
        return self

    @property
    def feature_grid(self) -> GridConfig:
        """The grid the lifted 3D features live on (``grid`` coarsened by ``voxel.upsample``)."""
        return self.grid.coarsened(self.voxel.upsample)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML / checkpoint friendly)."""
        return to_dict(self)


T = TypeVar("T")


def to_dict(obj: Any) -> Any:
    """Convert a (nested) dataclass to plain dicts, lists and scalars."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [to_dict(v) for v in obj]
    return obj


def from_dict(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{path or cls.__name__}: unknown key(s) {sorted(unknown)}")
    kwargs = {k: _coerce(hints[k], v, f"{path}{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{path or cls.__name__}: {exc}") from exc


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path + ".")  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, path)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, path) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{path}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(a, v, path) for a, v in zip(args, value))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    return value


def read_yaml(path: str | Path, what: str = "config") -> dict[str, Any]:
    """The mapping in a YAML file; :class:`ConfigError` naming the file if it cannot be read."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path}: expected a mapping at the top level")
    return data


def load_config(path: str | Path) -> ModelConfig:
    """Load and validate a :class:`ModelConfig` from a YAML file."""
    return model_config_from_dict(read_yaml(path))


def model_config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Build and validate a :class:`ModelConfig` from a plain dict (e.g. a checkpoint)."""
    return from_dict(ModelConfig, data).validate()
