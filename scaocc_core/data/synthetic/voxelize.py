"""Occ3D ground truth from the analytic world: semantics by sub-voxel sampling, and the
camera / LiDAR visibility masks by ray casting through the labelled grid.

Each voxel is sampled on a 4 x 4 x 4 lattice. A sample is solid if it lies inside a
primitive or in the top ``GROUND_SKIN`` metres of the flat ground. A voxel is occupied when
at least ``OCCUPIED_SAMPLES`` of its 64 samples are solid (about 10 %, the way a voxel with a
few LiDAR returns is occupied in Occ3D); its label is the class with most solid samples.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numba import njit, prange

from scaocc_core.config import GridConfig
from scaocc_core.data.synthetic.layout import FLAT_TOP, RES, Layout
from scaocc_core.data.synthetic.prims import Prims
from scaocc_core.numba_threads import use_numba_workqueue

use_numba_workqueue()  # parallel loops must not change PyTorch's threads (scaocc_core/numba_threads.py)

SUB = 4  # samples per voxel edge
GROUND_SKIN = 0.2  # metres of solid ground below the surface
OCCUPIED_SAMPLES = 16  # of 64
NUM_SOLID = 17
FREE = 17
LIDAR_ORIGIN = (0.94, 0.0, 1.84)  # ego frame, like nuScenes LIDAR_TOP
LIDAR_ELEVATIONS_DEG = np.linspace(-30.67, 10.67, 32)
LIDAR_AZIMUTH_STEP_DEG = 0.2


@njit(cache=True)
def _add_interval(counts: np.ndarray, touched: np.ndarray, i: int, j: int, c: int, zlo: float, zhi: float,
                  lz: float, vz: float, nz: int, weight: int) -> None:
    """Add ``weight`` times the z samples of column ``(i, j)`` in ``[zlo, zhi)`` to class ``c`` (flagging
    the voxels it adds to in ``touched``)."""
    k0 = max(0, int(math.floor((zlo - lz) / vz)))
    k1 = min(nz - 1, int(math.floor((zhi - lz) / vz)))
    for k in range(k0, k1 + 1):
        n = 0
        for q in range(SUB):
            z = lz + (k + (q + 0.5) / SUB) * vz
            if zlo <= z < zhi:
                n += 1
        if n:
            counts[i, j, k, c] = min(255, counts[i, j, k, c] + n * weight)
            touched[i, j, k] = True


@njit(cache=True)
def accumulate_objects(kind: np.ndarray, geo: np.ndarray, cls: np.ndarray, lower: np.ndarray, vs: np.ndarray,
                       size: np.ndarray, counts: np.ndarray, touched: np.ndarray) -> None:
    """Count solid samples of every primitive (ego frame) into ``counts`` (X Y Z 17 uint8).

    ``touched`` (X Y Z bool) flags every voxel whose counts were raised.
    """
    for p in range(kind.shape[0]):
        cx, cy, z0, z1 = geo[p, 0], geo[p, 1], geo[p, 2], geo[p, 3]
        a, b, c, s = geo[p, 4], geo[p, 5], geo[p, 6], geo[p, 7]
        if kind[p] == 1:
            ex = ey = max(a, b)
        else:
            ex, ey = abs(c) * a + abs(s) * b, abs(s) * a + abs(c) * b
        i0, i1 = max(0, int((cx - ex - lower[0]) // vs[0])), min(size[0] - 1, int((cx + ex - lower[0]) // vs[0]))
        j0, j1 = max(0, int((cy - ey - lower[1]) // vs[1])), min(size[1] - 1, int((cy + ey - lower[1]) // vs[1]))
        if i0 > i1 or j0 > j1 or z1 <= lower[2] or z0 >= lower[2] + size[2] * vs[2]:
            continue
        for i in range(i0, i1 + 1):
            for j in range(j0, j1 + 1):
                inside = 0  # boxes: count xy samples, then add the shared z interval once
                for qa in range(SUB):
                    sx = lower[0] + (i + (qa + 0.5) / SUB) * vs[0] - cx
                    for qb in range(SUB):
                        sy = lower[1] + (j + (qb + 0.5) / SUB) * vs[1] - cy
                        lx, ly = c * sx + s * sy, -s * sx + c * sy
                        if kind[p] == 0:
                            if abs(lx) <= a and abs(ly) <= b:
                                inside += 1
                            continue
                        if kind[p] == 1:
                            r = math.sqrt(sx * sx + sy * sy)
                            if r > max(a, b):
                                continue
                            slope = (b - a) / (z1 - z0)
                            if abs(slope) < 1e-9:
                                zlo, zhi = z0, z1
                            elif slope < 0:  # narrowing upwards: inside below the crossing
                                zlo, zhi = z0, min(z1, z0 + (r - a) / slope)
                            else:
                                zlo, zhi = max(z0, z0 + (r - a) / slope), z1
                        else:
                            q = (lx / a) ** 2 + (ly / b) ** 2
                            if q > 1:
                                continue
                            half = 0.5 * (z1 - z0) * math.sqrt(1 - q)
                            zlo, zhi = 0.5 * (z0 + z1) - half, 0.5 * (z0 + z1) + half
                        if zhi > zlo:
                            _add_interval(counts, touched, i, j, cls[p], zlo, zhi, lower[2], vs[2], size[2], 1)
                if inside:
                    _add_interval(counts, touched, i, j, cls[p], z0, z1, lower[2], vs[2], size[2], inside)


@njit(cache=True)
def accumulate_ground(raster: np.ndarray, rx0: float, ry0: float, res: float, flat_top: np.ndarray, skin: float,
                      cos_e: float, sin_e: float, ex: float, ey: float, lower: np.ndarray, vs: np.ndarray,
                      size: np.ndarray, counts: np.ndarray, touched: np.ndarray) -> None:
    """Count the flat ground's top ``skin`` metres (raster in the global frame, ego pose given) into
    ``counts``, flagging raised voxels in ``touched`` (as :func:`accumulate_objects`)."""
    ny, nx = raster.shape
    per_class = np.zeros(16, np.int64)
    for i in range(size[0]):
        for j in range(size[1]):
            per_class[:] = 0
            for qa in range(SUB):
                sx = lower[0] + (i + (qa + 0.5) / SUB) * vs[0]
                for qb in range(SUB):
                    sy = lower[1] + (j + (qb + 0.5) / SUB) * vs[1]
                    gx, gy = ex + cos_e * sx - sin_e * sy, ey + sin_e * sx + cos_e * sy
                    ci, cj = int(math.floor((gx - rx0) / res)), int(math.floor((gy - ry0) / res))
                    per_class[raster[cj, ci] & 15 if (0 <= ci < nx and 0 <= cj < ny) else 14] += 1
            for code in range(16):
                if per_class[code]:
                    h = flat_top[code]
                    _add_interval(counts, touched, i, j, code, h - skin, h, lower[2], vs[2], size[2],
                                  per_class[code])


@njit(cache=True)
def finalize(counts: np.ndarray, touched: np.ndarray, threshold: int, out: np.ndarray) -> None:
    """Label = most-sampled class where at least ``threshold`` samples are solid, else free.

    Voxels not ``touched`` have no samples at all and are free without reading their counts.
    """
    X, Y, Z, C = counts.shape
    for i in range(X):
        for j in range(Y):
            for k in range(Z):
                if not touched[i, j, k]:
                    out[i, j, k] = FREE
                    continue
                total, best, arg = 0, 0, FREE
                for c in range(C):
                    n = int(counts[i, j, k, c])
                    total += n
                    if n > best:
                        best, arg = n, c
                out[i, j, k] = arg if total >= threshold else FREE


@njit(cache=True)
def _axis(pos: float, d: float) -> tuple[int, float, float]:
    """DDA step, parameter of the first boundary crossing and crossing spacing on one axis."""
    if d > 1e-12:
        return 1, (math.floor(pos) + 1 - pos) / d, 1 / d
    if d < -1e-12:
        return -1, (pos - math.floor(pos)) / -d, -1 / d
    return 0, np.inf, np.inf


@njit(cache=True)
def _steps_left(pos: int, step: int, size: int) -> int:
    """How many steps of ``step`` (-1, 0, 1) keep index ``pos`` inside ``0..size-1``."""
    if step > 0:
        return size - 1 - pos
    if step < 0:
        return pos
    return 1 << 62


@njit(cache=True, inline="always")
def _walk_ray(r: int, flat_sem: np.ndarray, shape: tuple[int, int, int], lower: np.ndarray, vs: np.ndarray,
              origins: np.ndarray, dirs: np.ndarray, flat_mask: np.ndarray) -> None:
    """Mark the voxels ray ``r`` traverses up to and including its first occupied one."""
    X, Y, Z = shape
    px = (origins[r, 0] - lower[0]) / vs[0]
    py = (origins[r, 1] - lower[1]) / vs[1]
    pz = (origins[r, 2] - lower[2]) / vs[2]
    i, j, k = int(math.floor(px)), int(math.floor(py)), int(math.floor(pz))
    if not (0 <= i < X and 0 <= j < Y and 0 <= k < Z):
        return
    si, ti, di = _axis(px, dirs[r, 0] / vs[0])
    sj, tj, dj = _axis(py, dirs[r, 1] / vs[1])
    sk, tk, dk = _axis(pz, dirs[r, 2] / vs[2])
    left_i, left_j, left_k = _steps_left(i, si, X), _steps_left(j, sj, Y), _steps_left(k, sk, Z)
    step_i, step_j = si * Y * Z, sj * Z
    idx = (i * Y + j) * Z + k
    while True:
        flat_mask[idx] = True
        if flat_sem[idx] != FREE:
            return
        if ti <= tj and ti <= tk:
            if left_i == 0:
                return
            left_i -= 1
            idx += step_i
            ti += di
        elif tj <= tk:
            if left_j == 0:
                return
            left_j -= 1
            idx += step_j
            tj += dj
        else:
            if left_k == 0:
                return
            left_k -= 1
            idx += sk
            tk += dk


@njit(cache=True)
def cast_visibility(sem: np.ndarray, lower: np.ndarray, vs: np.ndarray, origins: np.ndarray, dirs: np.ndarray,
                    mask: np.ndarray) -> None:
    """Mark voxels traversed by each ray up to and including its first occupied voxel.

    ``sem`` and ``mask`` are C-contiguous ``X Y Z``; ``origins`` and ``dirs`` are ``R 3`` (ego
    frame); rays starting outside the grid are skipped. The walk runs on flat indices and only
    checks the bound of the axis it steps along.
    """
    flat_sem, flat_mask = sem.reshape(-1), mask.reshape(-1)  # (X Y Z)
    for r in range(origins.shape[0]):
        _walk_ray(r, flat_sem, sem.shape, lower, vs, origins, dirs, flat_mask)


@njit(cache=True, parallel=True)
def cast_visibility_parallel(sem: np.ndarray, lower: np.ndarray, vs: np.ndarray, origins: np.ndarray,
                             dirs: np.ndarray, mask: np.ndarray) -> None:
    """:func:`cast_visibility` with the rays spread over numba threads (same mask: every
    thread only ever stores ``True``)."""
    flat_sem, flat_mask = sem.reshape(-1), mask.reshape(-1)  # (X Y Z)
    for r in prange(origins.shape[0]):
        _walk_ray(r, flat_sem, sem.shape, lower, vs, origins, dirs, flat_mask)


def _grid_arrays(grid: GridConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.asarray(grid.lower, np.float64), np.asarray(grid.voxel_size, np.float64),
            np.asarray(grid.size, np.int64))


def voxelize(prims_ego: Prims, layout: Layout, ego_pose: tuple[float, float, float], grid: GridConfig) -> np.ndarray:
    """Occ3D semantics ``X Y Z`` uint8 (17 = free) of the world seen from ``ego_pose`` (x, y, yaw)."""
    lower, vs, size = _grid_arrays(grid)
    counts = np.zeros((*grid.size, NUM_SOLID), np.uint8)  # X Y Z C
    touched = np.zeros(grid.size, bool)  # X Y Z
    x, y, yaw = ego_pose
    accumulate_ground(layout.raster, float(layout.origin[0]), float(layout.origin[1]), RES, FLAT_TOP, GROUND_SKIN,
                      math.cos(yaw), math.sin(yaw), x, y, lower, vs, size, counts, touched)
    accumulate_objects(prims_ego.kind, prims_ego.geo, prims_ego.cls, lower, vs, size, counts, touched)
    sem = np.empty(grid.size, np.uint8)
    finalize(counts, touched, OCCUPIED_SAMPLES, sem)
    return sem


def camera_mask(sem: np.ndarray, grid: GridConfig, K: np.ndarray, ego_T_cam: np.ndarray, height: int, width: int,
                step_rad: float = 0.007, parallel: bool = False) -> np.ndarray:
    """Voxels observed by the cameras (``K`` n 3 3, ``ego_T_cam`` n 4 4): ``X Y Z`` bool.

    Rays are cast on a pixel lattice spaced about ``step_rad`` apart (a voxel seen from the
    grid's far corner), Occ3D style: each ray observes voxels up to its first occupied one.
    ``parallel`` casts on numba's threads (same mask).
    """
    lower, vs, _ = _grid_arrays(grid)
    sem = np.ascontiguousarray(sem)
    mask = np.zeros(sem.shape, bool)
    origins, dirs = _lattice_rays(np.asarray(K, np.float64).tobytes(), np.asarray(ego_T_cam, np.float64).tobytes(),
                                  height, width, step_rad)
    (cast_visibility_parallel if parallel else cast_visibility)(sem, lower, vs, origins, dirs, mask)
    return mask


@lru_cache(maxsize=16)
def _lattice_rays(K_bytes: bytes, T_bytes: bytes, height: int, width: int,
                  step_rad: float) -> tuple[np.ndarray, np.ndarray]:
    """Origins and directions (``R 3`` each, read-only) of the visibility rays of all cameras.

    They depend on the calibration only, so they are built once per rig (``K`` n 3 3 and
    ``ego_T_cam`` n 4 4 come as float64 bytes to be hashable).
    """
    origins, dirs = [], []
    for Kc, T in zip(np.frombuffer(K_bytes, np.float64).reshape(-1, 3, 3),
                     np.frombuffer(T_bytes, np.float64).reshape(-1, 4, 4)):
        step = float(min(Kc[0, 0], Kc[1, 1]) * step_rad)
        us = np.arange(-0.5 + step / 2, width - 0.5, step)
        vs_px = np.arange(-0.5 + step / 2, height - 0.5, step)
        uu, vv = np.meshgrid(us, vs_px)  # h w
        pix = np.stack([uu, vv, np.ones_like(uu)], axis=-1).reshape(-1, 3)  # (h w) 3
        dirs.append(pix @ np.linalg.inv(Kc).T @ T[:3, :3].T)  # (h w) 3
        origins.append(np.broadcast_to(T[:3, 3], dirs[-1].shape))
    o, d = np.ascontiguousarray(np.concatenate(origins)), np.ascontiguousarray(np.concatenate(dirs))  # R 3
    o.setflags(write=False)
    d.setflags(write=False)
    return o, d


def lidar_mask(sem: np.ndarray, grid: GridConfig, parallel: bool = False) -> np.ndarray:
    """Voxels observed by a simulated 32-beam top LiDAR: ``X Y Z`` bool (``parallel``: numba threads)."""
    lower, vs, _ = _grid_arrays(grid)
    origins, dirs = _lidar_rays()
    mask = np.zeros(sem.shape, bool)
    (cast_visibility_parallel if parallel else cast_visibility)(np.ascontiguousarray(sem), lower, vs, origins, dirs,
                                                                mask)
    return mask


@lru_cache(maxsize=1)
def _lidar_rays() -> tuple[np.ndarray, np.ndarray]:
    """Origins and unit directions (``R 3`` each, read-only) of the LiDAR's beams, built once."""
    elev = np.radians(LIDAR_ELEVATIONS_DEG)
    azim = np.radians(np.arange(0.0, 360.0, LIDAR_AZIMUTH_STEP_DEG))
    ee, aa = np.meshgrid(elev, azim, indexing="ij")  # beams azimuths
    dirs = np.stack([np.cos(ee) * np.cos(aa), np.cos(ee) * np.sin(aa), np.sin(ee)], axis=-1).reshape(-1, 3)
    origins = np.broadcast_to(np.asarray(LIDAR_ORIGIN), dirs.shape).copy()
    origins.setflags(write=False)
    dirs.setflags(write=False)
    return origins, dirs
