"""Camera extrinsics for the node: from parameters or from a static TF tree (no ROS import).

Transforms follow the core's ``A_T_B`` convention (4x4, maps points of frame B into frame A).
ROS quaternions are ``(x, y, z, w)``; the core's :func:`quaternion_to_matrix` takes
``(w, x, y, z)``, so the order is converted here, in one place.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scaocc_core.geometry import make_transform, quaternion_to_matrix


class CalibrationError(ValueError):
    """Extrinsics are missing, malformed or not a rigid transform."""


def pose_to_matrix(translation: Sequence[float], rotation_xyzw: Sequence[float]) -> np.ndarray:
    """4x4 ``parent_T_child`` from a translation (m) and a ROS ``(x, y, z, w)`` quaternion."""
    t = np.asarray(translation, dtype=np.float64)
    q = np.asarray(rotation_xyzw, dtype=np.float64)
    if t.shape != (3,) or q.shape != (4,):
        raise CalibrationError(f"expected 3 translation and 4 quaternion values, got {t.size} and {q.size}")
    if not (np.isfinite(t).all() and np.isfinite(q).all()):
        raise CalibrationError("non-finite translation or quaternion")
    if abs(np.linalg.norm(q) - 1.0) > 1e-3:
        raise CalibrationError(f"quaternion (x, y, z, w) {q.tolist()} is not unit length")
    return make_transform(quaternion_to_matrix([q[3], q[0], q[1], q[2]]), t)


def check_rigid(T: np.ndarray, what: str) -> np.ndarray:
    """Return ``T`` (4x4 float64) if it is a finite rigid transform, else raise."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.isfinite(T).all():
        raise CalibrationError(f"{what}: expected a finite 4x4 matrix")
    R = T[:3, :3]
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
        raise CalibrationError(f"{what}: rotation part is not a proper rotation")
    if not np.allclose(T[3], (0.0, 0.0, 0.0, 1.0)):
        raise CalibrationError(f"{what}: last row must be 0 0 0 1")
    return T


def extrinsics_from_values(
    camera: str, translation: Sequence[float], rotation_xyzw: Sequence[float], matrix: Sequence[float]
) -> np.ndarray:
    """``ego_T_cam`` of one camera from its parameters: a 16-value row-major ``matrix``, or
    ``translation`` + ``rotation_xyzw`` (used when ``matrix`` is empty)."""
    if len(matrix):
        if len(translation) or len(rotation_xyzw):
            raise CalibrationError(f"extrinsics.{camera}: give either matrix or translation + rotation_xyzw")
        if len(matrix) != 16:
            raise CalibrationError(f"extrinsics.{camera}.matrix needs 16 values (row-major 4x4), got {len(matrix)}")
        return check_rigid(np.asarray(matrix, dtype=np.float64).reshape(4, 4), f"extrinsics.{camera}.matrix")
    if not len(translation) and not len(rotation_xyzw):
        raise CalibrationError(
            f"no extrinsics for camera {camera!r}: set extrinsics.{camera}.translation and "
            f"extrinsics.{camera}.rotation_xyzw (or .matrix) in the parameters file, or use extrinsics_source: tf"
        )
    try:
        return pose_to_matrix(translation, rotation_xyzw)
    except CalibrationError as exc:
        raise CalibrationError(f"extrinsics.{camera}: {exc}") from exc


class StaticTransformTree:
    """A tree of static transforms (as ``/tf_static`` carries) with chained lookups."""

    def __init__(self) -> None:
        self._parent: dict[str, tuple[str, np.ndarray]] = {}  # child -> (parent, parent_T_child)
        self.version = 0  # bumped on every change, so users can cache lookups

    def set(self, parent: str, child: str, parent_T_child: np.ndarray) -> None:
        """Add or replace the transform of ``child`` (a frame has a single parent)."""
        if parent == child:
            raise CalibrationError(f"frame {child!r} cannot be its own parent")
        T = check_rigid(parent_T_child, f"transform {parent} -> {child}")
        old = self._parent.get(child)
        if old is not None and old[0] == parent and np.array_equal(old[1], T):
            return
        self._parent[child] = (parent, T)
        self.version += 1

    def parent(self, frame: str) -> tuple[str, np.ndarray] | None:
        """``(parent, parent_T_frame)`` of ``frame``, or ``None`` for a root or unknown frame."""
        return self._parent.get(frame)

    def _chain(self, frame: str) -> list[tuple[str, np.ndarray]]:
        """``[(frame, I), (parent, parent_T_frame), (grandparent, grandparent_T_frame), ...]``."""
        chain = [(frame, np.eye(4))]
        seen = {frame}
        while frame in self._parent:
            parent, T = self._parent[frame]
            if parent in seen:
                raise CalibrationError(f"transform cycle through frame {parent!r}")
            seen.add(parent)
            chain.append((parent, T @ chain[-1][1] if len(chain) > 1 else T))
            frame = parent
        return chain

    def lookup(self, target: str, source: str) -> np.ndarray | None:
        """``target_T_source`` through the tree, or ``None`` if the frames are not connected."""
        up_source = self._chain(source)
        up_target = dict(self._chain(target))
        for frame, frame_T_source in up_source:
            if frame in up_target:
                return np.linalg.inv(up_target[frame]) @ frame_T_source
        return None


def offset_magnitudes(rotation: np.ndarray, translation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per camera ``|rotation|`` in degrees and ``|translation|`` in metres (inputs ``n 3``)."""
    return np.degrees(np.linalg.norm(rotation, axis=-1)), np.linalg.norm(translation, axis=-1)
