"""Specification, presets and output container of the synthetic driving world."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any

import numpy as np

from scaocc_core.config import GridConfig
from scaocc_core.data.rig import Rig, load_nuscenes_sample_rig


@dataclass(frozen=True)
class Preset:
    """Difficulty knobs of one preset (multipliers are relative to ``default``)."""

    object_density: float  # static street furniture, buildings' gaps, vegetation
    traffic_density: float  # vehicles per metre of lane
    pedestrian_density: float  # pedestrians and bicycles per metre of sidewalk
    texture_noise: float  # amplitude of procedural albedo noise (0..1)
    lighting_variation: float  # 0 = fixed noon sun; 1 = low sun, exposure and tint jitter
    pixel_noise: float  # std of per-pixel sensor noise (fraction of full scale)
    shadows: bool  # cast sun shadows (one extra ray per pixel)


PRESETS: dict[str, Preset] = {
    "easy": Preset(0.6, 0.5, 0.5, 0.06, 0.0, 0.0, False),
    "default": Preset(1.0, 1.0, 1.0, 0.15, 0.5, 0.01, True),
    "hard": Preset(1.5, 1.6, 1.8, 0.3, 1.0, 0.025, True),
}


@dataclass(frozen=True)
class SynthSpec:
    """What to render: ``scenes`` sequences of ``frames`` frames each.

    ``rig`` defaults to the real nuScenes six-camera calibration; any :class:`Rig` (fewer
    cameras, other intrinsics) may be given and is rendered at ``height`` x ``width``.
    """

    seed: int = 0
    scenes: int = 8
    frames: int = 10
    preset: str = "default"
    height: int = 128
    width: int = 352
    rate_hz: float = 2.0
    grid: GridConfig = field(default_factory=GridConfig)
    rig: Rig | None = None

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown synthetic preset {self.preset!r}; choose from {sorted(PRESETS)}")
        if self.scenes <= 0 or self.frames <= 0:
            raise ValueError(f"scenes and frames must be positive, got {self.scenes} and {self.frames}")
        if self.height < 8 or self.width < 8:
            raise ValueError(f"render resolution must be at least 8x8, got {self.height}x{self.width}")
        if not self.rate_hz > 0:
            raise ValueError(f"rate_hz must be positive, got {self.rate_hz}")
        self.grid.validate()

    @property
    def preset_params(self) -> Preset:
        """The :class:`Preset` named by ``preset``."""
        return PRESETS[self.preset]

    def camera_rig(self) -> Rig:
        """The rig rendered at ``height`` x ``width`` (the nuScenes rig unless ``rig`` is set)."""
        base = self.rig if self.rig is not None else _nuscenes_rig()
        if not base.cameras:
            raise ValueError("SynthSpec.rig has no cameras")
        return base.resized(self.height, self.width)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description (stored in the manifest's ``extra``)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "grid":
                out["grid"] = {"lower": list(value.lower), "upper": list(value.upper), "size": list(value.size)}
            elif f.name == "rig":
                out["rig"] = None if value is None else [
                    {"name": c.name, "K": c.K.tolist(), "ego_T_cam": c.ego_T_cam.tolist(),
                     "height": c.height, "width": c.width}
                    for c in value.cameras
                ]
            else:
                out[f.name] = value
        return out


@lru_cache(maxsize=1)
def _nuscenes_rig() -> Rig:
    return load_nuscenes_sample_rig()


@dataclass
class SynthFrame:
    """One rendered frame: ``n`` camera images with 2D truth plus Occ3D voxel truth."""

    token: str
    scene: str
    timestamp: float
    global_T_ego: np.ndarray  # 4 4 float64
    camera_names: list[str]
    intrinsics: np.ndarray  # n 3 3 float64, K at the render resolution
    ego_T_cam: np.ndarray  # n 4 4 float64
    images: np.ndarray  # n H W 3 uint8 RGB
    sem2d: np.ndarray  # n H W uint8 class id, 17 = sky / no surface
    depth2d: np.ndarray  # n H W float32 metres along the optical axis, 0 = sky
    semantics: np.ndarray  # X Y Z uint8, 17 = free
    mask_camera: np.ndarray  # X Y Z bool
    mask_lidar: np.ndarray  # X Y Z bool


def scene_name(seed: int, scene_index: int) -> str:
    """Name of scene ``scene_index`` of the world with ``seed``."""
    return f"synth{seed}-scene{scene_index:03d}"


def frame_token(seed: int, scene_index: int, frame_index: int) -> str:
    """Unique token of one frame."""
    return f"{scene_name(seed, scene_index)}-f{frame_index:03d}"
