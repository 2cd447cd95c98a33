"""Ego motion from ``/tf``: poses at any stamp, and cameras expressed at one reference stamp (no rclpy).

Cameras of one set fire at different instants (nuScenes: up to ~45 ms apart, 1.3 m at 30 m/s).
BEVDet-style training on nuScenes expresses every camera in the ego frame at one key stamp
using the ego pose at each image's own stamp:

    ego(t_ref)_T_cam_i = inv(odom_T_ego(t_ref)) @ odom_T_ego(t_i) @ ego_T_cam_i

:class:`TransformHistory` keeps the time-stamped transforms of ``/tf`` and interpolates them
(linear translation, spherical rotation) at any stamp inside the kept window, or a little
past its newest sample (``tolerance_ns``, extrapolated at constant velocity), walking up from
the source frame through dynamic edges and, where a frame has none, the static tree
(``/tf_static``). :func:`compensate` applies the formula above to a set; :class:`EgoMotion`
is what the pipeline holds (history, compensation, fixed-frame lookups, a diagnostics status).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from scaocc_core.geometry import make_transform, quaternion_to_matrix
from scaocc_ros.calibration import StaticTransformTree


def rotation_to_xyzw(R: np.ndarray) -> np.ndarray:
    """A unit ROS quaternion ``(x, y, z, w)`` (w >= 0) of a 3x3 rotation matrix."""
    m = np.asarray(R, dtype=np.float64)
    K = np.array([
        [m[0, 0] - m[1, 1] - m[2, 2], m[1, 0] + m[0, 1], m[2, 0] + m[0, 2], m[2, 1] - m[1, 2]],
        [m[1, 0] + m[0, 1], m[1, 1] - m[0, 0] - m[2, 2], m[2, 1] + m[1, 2], m[0, 2] - m[2, 0]],
        [m[2, 0] + m[0, 2], m[2, 1] + m[1, 2], m[2, 2] - m[0, 0] - m[1, 1], m[1, 0] - m[0, 1]],
        [m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1], m[0, 0] + m[1, 1] + m[2, 2]],
    ]) / 3.0
    q = np.linalg.eigh(K)[1][:, -1]  # eigenvector of the largest eigenvalue (Bar-Itzhack)
    return q if q[3] >= 0 else -q


def _slerp(q0: np.ndarray, q1: np.ndarray, a: float) -> np.ndarray:
    """Spherical interpolation of unit quaternions; ``a`` outside [0, 1] extrapolates."""
    d = float(np.dot(q0, q1))
    if d < 0.0:
        q1, d = -q1, -d
    theta = np.arccos(min(d, 1.0))
    if theta < 1e-9:
        q = q0 + a * (q1 - q0)
    else:
        q = (np.sin((1 - a) * theta) * q0 + np.sin(a * theta) * q1) / np.sin(theta)
    return q / np.linalg.norm(q)


def interpolate(T0: np.ndarray, T1: np.ndarray, a: float) -> np.ndarray:
    """The rigid transform a fraction ``a`` of the way from ``T0`` to ``T1`` (``a`` > 1 extrapolates)."""
    q = _slerp(rotation_to_xyzw(T0[:3, :3]), rotation_to_xyzw(T1[:3, :3]), a)
    t = T0[:3, 3] + a * (T1[:3, 3] - T0[:3, 3])
    return make_transform(quaternion_to_matrix([q[3], q[0], q[1], q[2]]), t)


class _Edge:
    """Time-stamped ``parent_T_child`` samples of one ``/tf`` edge, sorted by stamp."""

    def __init__(self, parent: str) -> None:
        self.parent = parent
        self.stamps: list[int] = []
        self.poses: list[np.ndarray] = []

    def at(self, stamp_ns: int, tolerance_ns: int) -> np.ndarray | None:
        s = self.stamps
        if not s or stamp_ns < s[0] or stamp_ns > s[-1] + tolerance_ns:
            return None
        i = bisect.bisect_left(s, stamp_ns)
        if i < len(s) and s[i] == stamp_ns:
            return self.poses[i]
        if i == len(s):  # past the newest sample: constant velocity from the last two
            if len(s) == 1:
                return self.poses[-1]
            i -= 1
        return interpolate(self.poses[i - 1], self.poses[i], (stamp_ns - s[i - 1]) / (s[i] - s[i - 1]))


class TransformHistory:
    """``/tf`` samples kept for ``keep_ns`` behind the newest one of each edge (thread-safe)."""

    def __init__(self, keep_ns: int = 10 * 10**9) -> None:
        self.keep_ns = keep_ns
        self._edges: dict[str, _Edge] = {}  # child -> edge
        self._lock = threading.Lock()

    def add(self, parent: str, child: str, stamp_ns: int, parent_T_child: np.ndarray) -> None:
        """Add one sample; a frame's parent change restarts its history."""
        with self._lock:
            edge = self._edges.get(child)
            if edge is None or edge.parent != parent:
                edge = self._edges[child] = _Edge(parent)
            i = bisect.bisect_left(edge.stamps, stamp_ns)
            if i < len(edge.stamps) and edge.stamps[i] == stamp_ns:
                edge.poses[i] = parent_T_child
            else:
                edge.stamps.insert(i, stamp_ns)
                edge.poses.insert(i, parent_T_child)
            drop = bisect.bisect_left(edge.stamps, edge.stamps[-1] - self.keep_ns)
            del edge.stamps[:drop], edge.poses[:drop]

    def clear(self) -> None:
        """Forget every sample (e.g. after a clock jump)."""
        with self._lock:
            self._edges.clear()

    def lookup(self, target: str, source: str, stamp_ns: int, static: StaticTransformTree | None = None,
               tolerance_ns: int = 0) -> np.ndarray | None:
        """``target_T_source`` at ``stamp_ns`` when ``target`` is an ancestor of ``source``
        (through ``/tf`` edges and the static tree), else ``None``."""
        T = np.eye(4)
        frame, seen = source, {source}
        with self._lock:
            while frame != target:
                edge = self._edges.get(frame)
                if edge is not None:
                    pose = edge.at(stamp_ns, tolerance_ns)
                    if pose is None:
                        return None
                    parent = edge.parent
                else:
                    up = static.parent(frame) if static is not None else None
                    if up is None:
                        return None
                    parent, pose = up
                if parent in seen:
                    return None
                seen.add(parent)
                T = pose @ T
                frame = parent
        return T


def compensate(ego_T_cams: np.ndarray, stamps_ns: Sequence[int | None], ref_ns: int,
               history: TransformHistory, odom_frame: str, ego_frame: str,
               static: StaticTransformTree | None = None, tolerance_ns: int = 0) -> np.ndarray | None:
    """``n 4 4`` extrinsics of the cameras expressed in the ego frame at ``ref_ns`` (see the
    module docstring); ``None`` when the ego pose is unknown at ``ref_ns`` or at the stamp of a
    present camera (``None`` stamps, missing cameras, keep their extrinsics)."""
    ref = history.lookup(odom_frame, ego_frame, ref_ns, static, tolerance_ns)
    if ref is None:
        return None
    ref_inv = np.linalg.inv(ref)
    out = np.array(ego_T_cams, dtype=np.float64, copy=True)
    for i, t in enumerate(stamps_ns):
        if t is None:
            continue
        pose = history.lookup(odom_frame, ego_frame, t, static, tolerance_ns)
        if pose is None:
            return None
        out[i] = ref_inv @ pose @ out[i]
    return out


class EgoMotion:
    """The pipeline's view of ``/tf``: pose history, per-set compensation and fixed-frame
    lookups, with the counts its diagnostics status reports (thread-safe counters)."""

    def __init__(self, static: StaticTransformTree) -> None:
        self.history = TransformHistory()
        self.static = static
        self.counts = {"compensated": 0, "static": 0, "output_frame_missing": 0}
        self._lock = threading.Lock()

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def add(self, parent: str, child: str, stamp_ns: int, parent_T_child: np.ndarray) -> None:
        """One ``/tf`` sample."""
        self.history.add(parent, child, stamp_ns, parent_T_child)

    def lookup(self, target: str, source: str, stamp_ns: int, tolerance_ns: int) -> np.ndarray | None:
        """``target_T_source`` at ``stamp_ns`` (``/tf``, then ``/tf_static`` where a frame has no ``/tf`` parent)."""
        return self.history.lookup(target, source, stamp_ns, self.static, tolerance_ns)

    def compensate(self, ego_T_cams: np.ndarray, stamps_ns: Sequence[int | None], ref_ns: int, odom_frame: str,
                   ego_frame: str, tolerance_ns: int) -> np.ndarray | None:
        """:func:`compensate`, counted as compensated or static."""
        out = compensate(ego_T_cams, stamps_ns, ref_ns, self.history, odom_frame, ego_frame, self.static,
                         tolerance_ns)
        self._count("static" if out is None else "compensated")
        return out

    def fixed_T_ego(self, frame: str, ego_frame: str, stamp_ns: int, tolerance_ns: int) -> np.ndarray | None:
        """``frame_T_ego`` at ``stamp_ns``; a miss is counted."""
        T = self.lookup(frame, ego_frame, stamp_ns, tolerance_ns)
        if T is None:
            self._count("output_frame_missing")
        return T

    def status(self, enabled: bool, odom_frame: str, ego_frame: str, output_frame: str,
               prefix: str) -> DiagnosticStatus:
        """The ``<prefix>: motion`` diagnostics status: compensated sets, static fallbacks, output frame misses."""
        with self._lock:
            counts = dict(self.counts)
        values = [KeyValue(key=k, value=str(v)) for k, v in counts.items()]
        values.append(KeyValue(key="chain", value=f"{odom_frame} -> {ego_frame}"))
        name = f"{prefix}: motion"
        problems = []
        if not enabled:
            message = "motion compensation off (parameter): static extrinsics"
        elif counts["static"]:
            problems.append(f"{counts['static']} of {counts['static'] + counts['compensated']} sets with static "
                            f"extrinsics: no /tf {odom_frame} -> {ego_frame} at their stamps")
            message = ""
        else:
            message = f"{counts['compensated']} sets compensated ({odom_frame} -> {ego_frame})"
        if output_frame and counts["output_frame_missing"]:
            problems.append(f"{counts['output_frame_missing']} sets published in {ego_frame}: no /tf "
                            f"{output_frame} -> {ego_frame}")
        level = DiagnosticStatus.WARN if problems else DiagnosticStatus.OK
        return DiagnosticStatus(level=level, name=name, message="; ".join(problems) or message, values=values)
