"""RayIoU (SparseOcc, Liu et al. 2024): occupancy scored along query rays, not per voxel.

Query rays in the pattern of a 32-beam LiDAR (pitch ``-(pi/2 - atan(k))`` for k = 1..10,
continued with the last spacing up to +0.21 rad, every degree of azimuth) are cast from
several origins in the ego frame through the ground truth and through the prediction. A
ray's answer is the class of the first occupied (non-free) voxel it enters and the distance
to that voxel; rays that meet nothing in the ground truth are not scored. For class c and
depth tolerance t, a ray is a true positive when both answers are c and the distances differ
by less than t; ``IoU_c,t = TP / (GT_c + PRED_c - TP)`` over all rays of all frames. RayIoU
is the mean over classes 0-16 (classes never seen on either side are skipped) and over the
tolerances 1, 2 and 4 m. Unlike voxel mIoU, a thick wall or a duplicated surface behind the
first one is not rewarded, and a surface predicted 0.4 m too far is not a total miss.

The walk is an exact voxel traversal (Amanatides-Woo) in numba.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from scaocc_core.config import GridConfig
from scaocc_core.grid import CLASS_NAMES, FREE
from scaocc_core.numba_threads import use_numba_workqueue

use_numba_workqueue()  # parallel loops must not change PyTorch's threads (scaocc_core/numba_threads.py)

THRESHOLDS_M = (1.0, 2.0, 4.0)
#: Ray origins in the ego frame (m): the LiDAR position of the nuScenes car and four more
#: along the driving axis, where the road is (free in most frames).
ORIGINS = np.array([[0.99, 0.0, 1.84], [-8.0, 0.0, 1.84], [-4.0, 0.0, 1.84], [4.0, 0.0, 1.84], [8.0, 0.0, 1.84]])


def ray_directions() -> np.ndarray:
    """Unit directions ``R 3`` of SparseOcc's query-ray pattern (about 38 pitches x 360)."""
    pitch = [-(math.pi / 2 - math.atan(k + 1)) for k in range(10)]
    while pitch[-1] < 0.21:
        pitch.append(2 * pitch[-1] - pitch[-2])
    p = np.asarray(pitch)[:, None]
    a = np.deg2rad(np.arange(360.0))[None, :]
    dirs = np.stack([np.cos(p) * np.cos(a), np.cos(p) * np.sin(a), np.sin(p) * np.ones_like(a)], axis=-1)
    return dirs.reshape(-1, 3)


@njit(cache=True)
def _first_hit(sem: np.ndarray, lower: np.ndarray, vs: np.ndarray, o: np.ndarray, d: np.ndarray) -> tuple[int, float]:
    """Class and distance (m) of the first non-free voxel on the ray ``o + t d``; (FREE, exit) if none."""
    X, Y, Z = sem.shape
    pos = (o - lower) / vs
    dv = d / vs
    idx = np.empty(3, np.int64)
    step = np.empty(3, np.int64)
    t_next = np.empty(3)
    t_delta = np.empty(3)
    for a in range(3):
        idx[a] = int(math.floor(pos[a]))
        if dv[a] > 1e-12:
            step[a], t_next[a], t_delta[a] = 1, (math.floor(pos[a]) + 1 - pos[a]) / dv[a], 1 / dv[a]
        elif dv[a] < -1e-12:
            step[a], t_next[a], t_delta[a] = -1, (pos[a] - math.floor(pos[a])) / -dv[a], -1 / dv[a]
        else:
            step[a], t_next[a], t_delta[a] = 0, np.inf, np.inf
    t = 0.0
    while 0 <= idx[0] < X and 0 <= idx[1] < Y and 0 <= idx[2] < Z:
        c = sem[idx[0], idx[1], idx[2]]
        if c != FREE:
            return int(c), t
        a = 0 if (t_next[0] <= t_next[1] and t_next[0] <= t_next[2]) else (1 if t_next[1] <= t_next[2] else 2)
        t = t_next[a]
        t_next[a] += t_delta[a]
        idx[a] += step[a]
    return FREE, t


@njit(cache=True, parallel=True)
def _cast(sem: np.ndarray, lower: np.ndarray, vs: np.ndarray, origins: np.ndarray, dirs: np.ndarray,
          cls: np.ndarray, dist: np.ndarray) -> None:
    R = dirs.shape[0]
    for q in prange(origins.shape[0] * R):
        cls[q], dist[q] = _first_hit(sem, lower, vs, origins[q // R], dirs[q % R])


def first_hits(sem: np.ndarray, grid: GridConfig, origins: np.ndarray,
               dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First-hit class and distance of every (origin, direction) pair: ``(O R,)`` each, origin-major."""
    cls = np.empty(len(origins) * len(dirs), np.int64)
    dist = np.empty(len(origins) * len(dirs), np.float64)
    _cast(np.ascontiguousarray(sem, np.uint8), np.asarray(grid.lower, np.float64), np.asarray(grid.voxel_size),
          np.asarray(origins, np.float64), np.asarray(dirs, np.float64), cls, dist)
    return cls, dist


class RayIoU:
    """Accumulates RayIoU counts over frames (``update``), then reports (``summary``)."""

    def __init__(self, grid: GridConfig, origins: np.ndarray = ORIGINS, dirs: np.ndarray | None = None,
                 thresholds: tuple[float, ...] = THRESHOLDS_M) -> None:
        self.grid = grid
        self.origins = np.asarray(origins, np.float64)
        self.dirs = ray_directions() if dirs is None else np.asarray(dirs, np.float64)
        self.thresholds = thresholds
        self.gt = np.zeros(FREE, np.int64)
        self.pred = np.zeros(FREE, np.int64)
        self.tp = np.zeros((len(thresholds), FREE), np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one frame: predicted and true labels ``X Y Z`` (17 = free) on ``grid``."""
        gc, gd = first_hits(gt, self.grid, self.origins, self.dirs)
        pc, pd = first_hits(pred, self.grid, self.origins, self.dirs)
        keep = gc != FREE
        gc, gd, pc, pd = gc[keep], gd[keep], pc[keep], pd[keep]
        self.gt += np.bincount(gc, minlength=FREE + 1)[:FREE]
        self.pred += np.bincount(pc, minlength=FREE + 1)[:FREE]
        same = gc == pc
        for j, t in enumerate(self.thresholds):
            hit = same & (np.abs(pd - gd) < t)
            self.tp[j] += np.bincount(gc[hit], minlength=FREE + 1)[:FREE]

    def per_class(self) -> np.ndarray:
        """``T 17`` IoU per tolerance and class (NaN where a class met no ray on either side)."""
        union = self.gt + self.pred - self.tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, self.tp / np.maximum(union, 1), np.nan)

    def summary(self) -> dict[str, object]:
        """``rayiou`` (mean over tolerances and classes), ``rayiou@T`` and per-class values."""
        iou = self.per_class()
        out: dict[str, object] = {}
        if np.isnan(iou).all():
            out["rayiou"] = float("nan")
        else:
            out["rayiou"] = float(np.nanmean(np.nanmean(iou, axis=1)))
        for j, t in enumerate(self.thresholds):
            out[f"rayiou@{t:g}"] = float(np.nanmean(iou[j])) if not np.isnan(iou[j]).all() else float("nan")
        out["rayiou_per_class"] = {CLASS_NAMES[c]: (None if np.isnan(iou[:, c]).all() else float(np.nanmean(iou[:, c])))
                                   for c in range(FREE)}
        return out
