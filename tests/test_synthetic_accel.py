"""The synthetic renderer's acceleration structures skip only work that cannot change a result:
each is compared with a brute-force reference on random scenes."""

from __future__ import annotations

import math

import numpy as np

from scaocc_core.data.synthetic.prims import PrimBuilder, Prims
from scaocc_core.data.synthetic.raycast import (
    build_buckets,
    footprint_radius,
    intersect,
    rising_tops,
    trace_objects,
)
from scaocc_core.data.synthetic.voxelize import FREE, cast_visibility, cast_visibility_parallel

N_CELLS = 16
CELL = 4.0


def _random_prims(rng: np.random.Generator, count: int) -> Prims:
    """Boxes, cones and ellipsoids of random size and heading well inside the 64 m bucket grid."""
    b = PrimBuilder()
    for _ in range(count):
        cx, cy = rng.uniform(8, 56, 2)
        z0 = float(rng.uniform(-0.5, 3))
        z1 = z0 + float(rng.uniform(0.3, 12))
        kind = int(rng.integers(3))
        sa, sb = (float(v) for v in rng.uniform(0.3, 9, 2) / (1 if kind == 0 else 3.5 if kind == 1 else 1.5))
        yaw = float(rng.uniform(-3, 3))
        if kind == 0:
            b.box(cx, cy, z0, z1, sa, sb, yaw, 1, (0.5, 0.5, 0.5), 0)
        elif kind == 1:
            b.cone(cx, cy, z0, z1, sa, sb, 1, (0.5, 0.5, 0.5), 0)
        else:
            b.ellipsoid(cx, cy, z0, z1, sa, sb, yaw, 1, (0.5, 0.5, 0.5), 0)
    return b.build()


def test_rising_tops_bounds_every_monotone_walk() -> None:
    rng = np.random.default_rng(0)
    n = 7
    cell_top = np.where(rng.random(n * n) < 0.3, -np.inf, rng.uniform(0, 20, n * n))
    tops = rising_tops(cell_top, n)
    for q in range(4):
        si, sj = (1 if q % 2 == 0 else -1), (1 if q < 2 else -1)
        for i in range(n):
            for j in range(n):
                ii = [a for a in range(n) if (a - i) * si >= 0]
                jj = [b for b in range(n) if (b - j) * sj >= 0]
                expected = max(cell_top[a * n + b] for a in ii for b in jj)
                assert tops[q, i * n + j] == expected


def test_trace_objects_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    prims = _random_prims(rng, 60)
    start, items, cell_top = build_buckets(prims.xy_bounds(), prims.geo[:, 3].copy(), 0.0, 0.0, CELL, N_CELLS)
    tops = rising_tops(cell_top, N_CELLS)
    radius = footprint_radius(prims.kind, prims.geo)
    ztop = float(prims.geo[:, 3].max())
    seen = np.full(len(prims), -1, np.int64)
    hits = 0
    for ray in range(3000):
        ox, oy, oz = (float(v) for v in rng.uniform([8, 8, 0.2], [56, 56, 6]))
        dx, dy, dz = (float(v) for v in rng.normal(size=3))
        any_hit = ray % 2 == 1
        t, p, _, _, _ = trace_objects(prims.kind, prims.geo, radius, start, items, cell_top, tops, ztop, 0.0, 0.0,
                                      CELL, N_CELLS, ox, oy, oz, dx, dy, dz, 1e9, any_hit, seen, ray)
        ts = np.array([intersect(int(prims.kind[k]), prims.geo[k], ox, oy, oz, dx, dy, dz, 1e9)[0]
                       for k in range(len(prims))])
        if not np.isfinite(ts.min()):
            assert p == -1
            continue
        hits += 1
        assert p >= 0
        if any_hit:
            assert math.isfinite(t)
        else:
            assert t == ts.min() and ts[p] == t
    assert hits > 500  # the random scene is dense enough to exercise the pruning


def _axis(pos: float, d: float) -> tuple[int, float, float]:
    if d > 1e-12:
        return 1, (math.floor(pos) + 1 - pos) / d, 1 / d
    if d < -1e-12:
        return -1, (pos - math.floor(pos)) / -d, -1 / d
    return 0, math.inf, math.inf


def _reference_visibility(sem: np.ndarray, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Plain 3D DDA in unit voxels from the grid origin (the behaviour before acceleration)."""
    X, Y, Z = sem.shape
    mask = np.zeros(sem.shape, bool)
    for o, d in zip(origins, dirs):
        pos = [int(math.floor(v)) for v in o]
        axes = [_axis(float(o[a]), float(d[a])) for a in range(3)]
        step = [a[0] for a in axes]
        t_next = [a[1] for a in axes]
        t_delta = [a[2] for a in axes]
        while 0 <= pos[0] < X and 0 <= pos[1] < Y and 0 <= pos[2] < Z:
            mask[pos[0], pos[1], pos[2]] = True
            if sem[pos[0], pos[1], pos[2]] != FREE:
                break
            if t_next[0] <= t_next[1] and t_next[0] <= t_next[2]:
                a = 0
            elif t_next[1] <= t_next[2]:
                a = 1
            else:
                a = 2
            pos[a] += step[a]
            t_next[a] += t_delta[a]
    return mask


def test_cast_visibility_matches_reference_dda() -> None:
    rng = np.random.default_rng(2)
    sem = np.where(rng.random((20, 18, 8)) < 0.04, 3, FREE).astype(np.uint8)
    origins = rng.uniform([0, 0, 0], [20, 18, 8], (400, 3))
    origins[:20] = [-1.0, 5.0, 3.0]  # outside the grid: skipped
    dirs = rng.normal(size=(400, 3))
    dirs[20:40, 2] = 0.0  # exactly horizontal rays
    expected = _reference_visibility(sem, origins, dirs)
    assert expected.sum() > 100
    for cast in (cast_visibility, cast_visibility_parallel):
        mask = np.zeros(sem.shape, bool)
        cast(sem, np.zeros(3), np.ones(3), origins, dirs, mask)
        np.testing.assert_array_equal(mask, expected, err_msg=cast.__name__)
