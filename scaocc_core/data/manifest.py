"""One JSON manifest format for every data source (synthetic world or Occ3D-nuScenes).

A manifest lists frames; each frame names its Occ3D label file and, per camera, the image,
the intrinsics ``intrinsics_K`` (img_T_cam, pixels of the stored image), ``ego_T_cam`` and
optional 2D ground truth (semantic label PNG with 255 = no label; depth in float32 metres
with 0 = no depth, as a dense ``.npy`` / ``.npz`` or a sparse ``.npz`` with ``shape``, ``v``,
``u``, ``values`` as written for LiDAR-projected depth). Paths are relative to the manifest's directory unless absolute.

Layout on disk::

    manifest.json
    {"version": 1, "source": "synthetic", "classes": [...],
     "grid": {"lower": [...], "upper": [...], "size": [...]},
     "camera_names": ["CAM_FRONT", ...],
     "splits": {"train": [frame index, ...], "val": [...]},
     "frames": [{"token", "scene", "timestamp", "global_T_ego", "occ_path",
                 "cameras": {"CAM_FRONT": {"image", "intrinsics_K", "ego_T_cam",
                                           "sem2d", "depth2d"}}}]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST_VERSION = 1


class ManifestError(ValueError):
    """A manifest is malformed or refers to missing data."""


@dataclass(frozen=True)
class CameraRecord:
    """One camera of one frame."""

    image: str
    intrinsics_K: tuple[tuple[float, ...], ...]
    ego_T_cam: tuple[tuple[float, ...], ...]
    sem2d: str | None = None
    depth2d: str | None = None

    def K(self) -> np.ndarray:
        """Intrinsics as a 3x3 float64 array."""
        return np.asarray(self.intrinsics_K, dtype=np.float64)

    def T(self) -> np.ndarray:
        """``ego_T_cam`` as a 4x4 float64 array."""
        return np.asarray(self.ego_T_cam, dtype=np.float64)


@dataclass(frozen=True)
class FrameRecord:
    """One synchronised frame: Occ3D labels plus every camera."""

    token: str
    scene: str
    timestamp: float
    global_T_ego: tuple[tuple[float, ...], ...]
    occ_path: str | None
    cameras: dict[str, CameraRecord]


@dataclass
class Manifest:
    """A dataset description; see the module docstring for the JSON layout."""

    root: Path
    source: str
    camera_names: list[str]
    frames: list[FrameRecord]
    splits: dict[str, list[int]] = field(default_factory=dict)
    grid: dict[str, list[float]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def resolve(self, rel: str) -> Path:
        """Absolute path of a manifest-relative path."""
        p = Path(rel)
        return p if p.is_absolute() else self.root / p

    def split(self, name: str) -> list[FrameRecord]:
        """Frames of split ``name`` (``all`` for every frame)."""
        if name == "all":
            return list(self.frames)
        if name not in self.splits:
            raise ManifestError(f"split {name!r} not in manifest (have {sorted(self.splits)})")
        return [self.frames[i] for i in self.splits[name]]

    def save(self, path: str | Path | None = None) -> Path:
        """Write ``manifest.json`` (into ``root`` unless a path is given)."""
        path = Path(path) if path is not None else self.root / "manifest.json"
        data = {
            "version": MANIFEST_VERSION,
            "source": self.source,
            "camera_names": self.camera_names,
            "grid": self.grid,
            "splits": self.splits,
            "extra": self.extra,
            "frames": [_frame_to_json(f) for f in self.frames],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        """Read a manifest file (or a directory holding ``manifest.json``)."""
        path = Path(path)
        if path.is_dir():
            path = path / "manifest.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ManifestError(f"cannot read manifest {path}: {exc}") from exc
        if data.get("version") != MANIFEST_VERSION:
            raise ManifestError(f"{path}: unsupported manifest version {data.get('version')!r}")
        try:
            frames = [_frame_from_json(f) for f in data["frames"]]
            manifest = cls(
                root=path.parent,
                source=str(data["source"]),
                camera_names=list(data["camera_names"]),
                frames=frames,
                splits={k: [int(i) for i in v] for k, v in data.get("splits", {}).items()},
                grid=data.get("grid"),
                extra=dict(data.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"{path}: malformed manifest ({exc!r})") from exc
        for name, idx in manifest.splits.items():
            if any(i < 0 or i >= len(frames) for i in idx):
                raise ManifestError(f"{path}: split {name!r} indexes outside 0..{len(frames) - 1}")
        for f in frames:
            missing = set(manifest.camera_names) - set(f.cameras)
            if missing:
                raise ManifestError(f"{path}: frame {f.token} lacks cameras {sorted(missing)}")
        return manifest


def _matrix(m: Any, shape: tuple[int, int], what: str) -> tuple[tuple[float, ...], ...]:
    arr = np.asarray(m, dtype=np.float64)
    if arr.shape != shape or not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} must be a finite {shape[0]}x{shape[1]} matrix")
    return tuple(tuple(float(v) for v in row) for row in arr)


def _frame_to_json(f: FrameRecord) -> dict[str, Any]:
    return {
        "token": f.token,
        "scene": f.scene,
        "timestamp": f.timestamp,
        "global_T_ego": [list(r) for r in f.global_T_ego],
        "occ_path": f.occ_path,
        "cameras": {
            name: {
                "image": c.image,
                "intrinsics_K": [list(r) for r in c.intrinsics_K],
                "ego_T_cam": [list(r) for r in c.ego_T_cam],
                "sem2d": c.sem2d,
                "depth2d": c.depth2d,
            }
            for name, c in f.cameras.items()
        },
    }


def _frame_from_json(d: dict[str, Any]) -> FrameRecord:
    cams = {
        name: CameraRecord(
            image=str(c["image"]),
            intrinsics_K=_matrix(c["intrinsics_K"], (3, 3), f"{name}.intrinsics_K"),
            ego_T_cam=_matrix(c["ego_T_cam"], (4, 4), f"{name}.ego_T_cam"),
            sem2d=c.get("sem2d"),
            depth2d=c.get("depth2d"),
        )
        for name, c in d["cameras"].items()
    }
    return FrameRecord(
        token=str(d["token"]),
        scene=str(d["scene"]),
        timestamp=float(d["timestamp"]),
        global_T_ego=_matrix(d["global_T_ego"], (4, 4), "global_T_ego"),
        occ_path=d.get("occ_path"),
        cameras=cams,
    )
