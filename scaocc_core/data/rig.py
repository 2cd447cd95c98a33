"""Camera rigs: names, intrinsics and ``ego_T_cam`` extrinsics.

The default rig is the real nuScenes calibration of the sample frame in
``../shared/data/nuscenes_sample/sample.json``, with intrinsics scaled to a render size.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NUSCENES_CAMERAS: tuple[str, ...] = (
    "CAM_FRONT_LEFT",
    "CAM_FRONT",
    "CAM_FRONT_RIGHT",
    "CAM_BACK_LEFT",
    "CAM_BACK",
    "CAM_BACK_RIGHT",
)


@dataclass(frozen=True)
class Camera:
    """One pinhole camera: ``K`` (img_T_cam, 3x3) for a ``height`` x ``width`` image."""

    name: str
    K: np.ndarray
    ego_T_cam: np.ndarray
    height: int
    width: int

    def resized(self, height: int, width: int) -> Camera:
        """The same camera rendered at another resolution (intrinsics scaled)."""
        sx, sy = width / self.width, height / self.height
        S = np.diag([sx, sy, 1.0])
        K = S @ self.K
        # Pixel-centre convention: pixel j spans [j - 0.5, j + 0.5].
        K[0, 2] = (self.K[0, 2] + 0.5) * sx - 0.5
        K[1, 2] = (self.K[1, 2] + 0.5) * sy - 0.5
        return Camera(self.name, K, self.ego_T_cam.copy(), height, width)


@dataclass(frozen=True)
class Rig:
    """An ordered set of cameras."""

    cameras: tuple[Camera, ...]

    @property
    def names(self) -> list[str]:
        """Camera names in rig order."""
        return [c.name for c in self.cameras]

    def resized(self, height: int, width: int) -> Rig:
        """Every camera at ``height`` x ``width``."""
        return Rig(tuple(c.resized(height, width) for c in self.cameras))


def default_sample_dir() -> Path:
    """Where the real nuScenes sample frame lives (``SCAOCC_NUSCENES_SAMPLE`` overrides)."""
    env = os.environ.get("SCAOCC_NUSCENES_SAMPLE")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nuscenes_sample"


def load_nuscenes_sample_rig(sample_dir: str | Path | None = None) -> Rig:
    """The six-camera nuScenes rig of ``sample.json`` at its native 1600x900."""
    sample_dir = Path(sample_dir) if sample_dir is not None else default_sample_dir()
    data = json.loads((sample_dir / "sample.json").read_text())
    cams = []
    for name in NUSCENES_CAMERAS:
        c = data["cameras"][name]
        cams.append(
            Camera(
                name=name,
                K=np.asarray(c["intrinsics_K"], dtype=np.float64),
                ego_T_cam=np.asarray(c["cam2ego"], dtype=np.float64),
                height=int(c["height"]),
                width=int(c["width"]),
            )
        )
    return Rig(tuple(cams))
