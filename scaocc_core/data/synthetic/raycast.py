"""numba ray casting against the analytic world: primitives through a 2D bucket grid and
the flat-ground raster (whose raised cells form kerbs). All kernels are ``cache=True``.

Rays are ``o + t d`` with unnormalised ``d``; returned ``t`` are in units of ``d`` (for
camera rays built from ``K^-1 [u v 1]`` that is the depth along the optical axis).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

INF = np.inf
EPS = 1e-6
TERRAIN_CODE = 14
KERB = 64  # cell-code bit: the hit is a kerb face
SLACK = 1e-6  # metres: margin of the conservative "ray misses this primitive" tests


def footprint_radius(kind: np.ndarray, geo: np.ndarray) -> np.ndarray:
    """Horizontal radius around ``(cx, cy)`` containing each primitive (``P``, float64)."""
    a, b = geo[:, 4], geo[:, 5]
    return np.where(kind == 0, np.sqrt(a * a + b * b), np.maximum(a, b))


@njit(cache=True)
def intersect(kind: int, g: np.ndarray, ox: float, oy: float, oz: float, dx: float, dy: float, dz: float,
              tmax: float) -> tuple[float, float, float, float]:
    """First entry of the ray into primitive ``g`` before ``tmax``: ``(t, nx, ny, nz)``; ``t = inf`` if none."""
    cx, cy, z0, z1, a, b, c, s = g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]
    px, py = ox - cx, oy - cy
    lx, ly = c * px + s * py, -s * px + c * py
    ldx, ldy = c * dx + s * dy, -s * dx + c * dy
    if kind == 0:  # box: slab test in the box frame
        tn, tf = -INF, INF
        axis, sign = -1, 0.0
        for k in range(3):
            if k == 0:
                o, d, lo, hi = lx, ldx, -a, a
            elif k == 1:
                o, d, lo, hi = ly, ldy, -b, b
            else:
                o, d, lo, hi = oz, dz, z0, z1
            if abs(d) < 1e-12:
                if o < lo or o > hi:
                    return INF, 0.0, 0.0, 0.0
                continue
            t1, t2 = (lo - o) / d, (hi - o) / d
            sg = -1.0 if d > 0 else 1.0
            if t1 > t2:
                t1, t2 = t2, t1
            if t1 > tn:
                tn, axis, sign = t1, k, sg
            tf = min(tf, t2)
        if tn > tf or tn < EPS or tn >= tmax:
            return INF, 0.0, 0.0, 0.0
        if axis == 0:
            return tn, c * sign, s * sign, 0.0
        if axis == 1:
            return tn, -s * sign, c * sign, 0.0
        return tn, 0.0, 0.0, sign
    if kind == 1:  # vertical truncated cone: r(z) = a + k (z - z0)
        k = (b - a) / (z1 - z0)
        a0, a1 = a + k * (oz - z0), k * dz
        qa = dx * dx + dy * dy - a1 * a1
        qb = 2.0 * (px * dx + py * dy - a0 * a1)
        qc = px * px + py * py - a0 * a0
        best, nx, ny, nz = tmax, 0.0, 0.0, 0.0
        roots = (INF, INF)
        if abs(qa) > 1e-12:
            disc = qb * qb - 4 * qa * qc
            if disc >= 0:
                sq = math.sqrt(disc)
                roots = ((-qb - sq) / (2 * qa), (-qb + sq) / (2 * qa))
        elif abs(qb) > 1e-12:
            roots = (-qc / qb, INF)
        for t in roots:
            if EPS < t < best:
                z = oz + t * dz
                r = a0 + a1 * t
                if z0 <= z <= z1 and r >= 0:
                    best, nx, ny, nz = t, px + t * dx, py + t * dy, -r * k
        if abs(dz) > 1e-12:
            for zc, rc, sg in ((z0, a, -1.0), (z1, b, 1.0)):
                t = (zc - oz) / dz
                if EPS < t < best:
                    qx, qy = px + t * dx, py + t * dy
                    if qx * qx + qy * qy <= rc * rc:
                        best, nx, ny, nz = t, 0.0, 0.0, sg
        if best >= tmax:
            return INF, 0.0, 0.0, 0.0
        norm = math.sqrt(nx * nx + ny * ny + nz * nz) + 1e-12
        return best, nx / norm, ny / norm, nz / norm
    # ellipsoid: scale to the unit sphere
    rz, cz = 0.5 * (z1 - z0), 0.5 * (z0 + z1)
    X, Y, Z = lx / a, ly / b, (oz - cz) / rz
    DX, DY, DZ = ldx / a, ldy / b, dz / rz
    qa = DX * DX + DY * DY + DZ * DZ
    qb = 2.0 * (X * DX + Y * DY + Z * DZ)
    qc = X * X + Y * Y + Z * Z - 1.0
    disc = qb * qb - 4 * qa * qc
    if disc < 0:
        return INF, 0.0, 0.0, 0.0
    t = (-qb - math.sqrt(disc)) / (2 * qa)
    if t < EPS or t >= tmax:
        return INF, 0.0, 0.0, 0.0
    hx, hy, hz = (X + t * DX) / a, (Y + t * DY) / b, (Z + t * DZ) / rz
    nx, ny = c * hx - s * hy, s * hx + c * hy
    norm = math.sqrt(nx * nx + ny * ny + hz * hz) + 1e-12
    return t, nx / norm, ny / norm, hz / norm


@njit(cache=True)
def build_buckets(bounds: np.ndarray, ztop: np.ndarray, x0: float, y0: float, cell: float,
                  n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR lists of the primitives overlapping each cell of an ``n`` x ``n`` grid.

    ``bounds`` is ``P 4`` (xmin, xmax, ymin, ymax), ``ztop`` the ``P`` top heights; cell
    ``(i, j)`` has flat index ``i * n + j`` and covers ``x0 + i * cell`` .. and ``y0 + j * cell`` ...
    Returns ``(start, items, cell_top)``: cell ``c`` lists ``items[start[c]:start[c + 1]]``,
    whose highest point is ``cell_top[c]``.
    """
    counts = np.zeros(n * n + 1, np.int64)
    cell_top = np.full(n * n, -np.inf)
    for p in range(bounds.shape[0]):
        i0, i1 = max(0, int((bounds[p, 0] - x0) // cell)), min(n - 1, int((bounds[p, 1] - x0) // cell))
        j0, j1 = max(0, int((bounds[p, 2] - y0) // cell)), min(n - 1, int((bounds[p, 3] - y0) // cell))
        for i in range(i0, i1 + 1):
            for j in range(j0, j1 + 1):
                counts[i * n + j + 1] += 1
    start = np.cumsum(counts)
    fill = start[:-1].copy()
    items = np.empty(start[-1], np.int64)
    for p in range(bounds.shape[0]):
        i0, i1 = max(0, int((bounds[p, 0] - x0) // cell)), min(n - 1, int((bounds[p, 1] - x0) // cell))
        j0, j1 = max(0, int((bounds[p, 2] - y0) // cell)), min(n - 1, int((bounds[p, 3] - y0) // cell))
        for i in range(i0, i1 + 1):
            for j in range(j0, j1 + 1):
                items[fill[i * n + j]] = p
                fill[i * n + j] += 1
                cell_top[i * n + j] = max(cell_top[i * n + j], ztop[p])
    return start, items, cell_top


@njit(cache=True)
def rising_tops(cell_top: np.ndarray, n: int) -> np.ndarray:
    """Highest primitive point ahead of each cell, per quadrant of the ray's heading: ``4 (n n)``.

    Row ``q = (dx <= 0) + 2 (dy <= 0)`` holds, for cell ``c``, the maximum of ``cell_top`` over
    every cell a grid walk from ``c`` can reach stepping only towards that quadrant (a superset
    of the cells a ray's DDA visits). A rising ray above it at a cell's entry can hit nothing more.
    """
    out = np.full((4, n * n), -np.inf)
    for q in range(4):
        si, sj = (1 if q % 2 == 0 else -1), (1 if q < 2 else -1)
        for a in range(n):
            i = n - 1 - a if si > 0 else a
            for b in range(n):
                j = n - 1 - b if sj > 0 else b
                m = cell_top[i * n + j]
                if 0 <= i + si < n:
                    m = max(m, out[q, (i + si) * n + j])
                if 0 <= j + sj < n:
                    m = max(m, out[q, i * n + j + sj])
                out[q, i * n + j] = m
    return out


@njit(cache=True)
def _dda_setup(o: float, d: float, cell_pos: float, cell: float) -> tuple[int, float, float]:
    """Step direction, first boundary crossing and crossing spacing along one axis."""
    if d > 1e-12:
        return 1, (math.floor(cell_pos) + 1 - cell_pos) * cell / d, cell / d
    if d < -1e-12:
        return -1, (cell_pos - math.floor(cell_pos)) * cell / -d, cell / -d
    return 0, INF, INF


@njit(cache=True, inline="always")
def trace_objects(kind: np.ndarray, geo: np.ndarray, radius: np.ndarray, start: np.ndarray, items: np.ndarray,
                  cell_top: np.ndarray, rise_top: np.ndarray, ztop_all: float, bx0: float, by0: float, cell: float,
                  n: int, ox: float, oy: float, oz: float, dx: float, dy: float, dz: float, tmax: float, any_hit: bool,
                  seen: np.ndarray, ray: int) -> tuple[float, int, float, float, float]:
    """Nearest primitive hit before ``tmax``: ``(t, index, nx, ny, nz)``, index -1 if none.

    Cells whose contents lie entirely below the ray's path through them are skipped, and a rising ray stops
    above ``ztop_all`` (the highest point of any primitive) or once it enters a cell above everything it
    could still reach (``rise_top``, see :func:`rising_tops`). A primitive listed in several cells is tested
    once per ray: ``seen`` (``P`` int64) records the id ``ray`` (unique per call) of its last test. A repeat
    test could only miss, as ``best`` never grows, so skipping it changes nothing. Likewise a primitive is
    not tested when the ray provably misses it before ``best``: its line passes farther than ``radius``
    (the primitive's horizontal bounding radius, :func:`footprint_radius`) from the primitive's axis, or its
    height range up to ``best`` lies outside the primitive's (both with a ``SLACK`` margin for rounding).
    """
    hxy = math.sqrt(dx * dx + dy * dy)
    ahead = rise_top[(0 if dx > 0 else 1) + (0 if dy > 0 else 2)]
    fx, fy = (ox - bx0) / cell, (oy - by0) / cell
    i, j = int(math.floor(fx)), int(math.floor(fy))
    si, ti, di = _dda_setup(ox, dx, fx, cell)
    sj, tj, dj = _dda_setup(oy, dy, fy, cell)
    best, idx, bnx, bny, bnz = tmax, -1, 0.0, 0.0, 0.0
    t_enter = 0.0
    while 0 <= i < n and 0 <= j < n:
        c = i * n + j
        t_exit = min(ti, tj)
        if dz > 0 and oz + dz * t_enter > ahead[c]:  # every remaining cell would be skipped
            break
        lowest = oz + dz * (t_enter if dz > 0 else min(t_exit, best))  # lowest point of the ray in this cell
        first = start[c + 1] if lowest > cell_top[c] else start[c]
        for q in range(first, start[c + 1]):
            p = items[q]
            if seen[p] == ray:
                continue
            seen[p] = ray
            if abs((geo[p, 0] - ox) * dy - (geo[p, 1] - oy) * dx) > (radius[p] + SLACK) * hxy:
                continue
            z_end = oz + dz * best
            if geo[p, 2] > max(oz, z_end) + SLACK or geo[p, 3] < min(oz, z_end) - SLACK:
                continue
            t, nx, ny, nz = intersect(kind[p], geo[p], ox, oy, oz, dx, dy, dz, best)
            if t < best:
                best, idx, bnx, bny, bnz = t, p, nx, ny, nz
                if any_hit:
                    return best, idx, bnx, bny, bnz
        if best <= t_exit or t_exit >= tmax or (dz > 0 and oz + dz * t_exit > ztop_all):
            break
        t_enter = t_exit
        if ti < tj:
            i += si
            ti += di
        else:
            j += sj
            tj += dj
    return best, idx, bnx, bny, bnz


@njit(cache=True, inline="always")
def trace_flat(raster: np.ndarray, rx0: float, ry0: float, res: float, flat_top: np.ndarray, flat_max: float,
               ox: float, oy: float, oz: float, dx: float, dy: float, dz: float,
               tmax: float) -> tuple[float, int, float, float, float]:
    """Hit on the flat-ground raster (tops and kerb faces): ``(t, cell code, nx, ny, nz)``.

    For a kerb face the code is the class in front of the face plus the ``KERB`` bit.
    """
    if dz >= -1e-12:
        return INF, 0, 0.0, 0.0, 0.0
    t = max(0.0, (flat_max - oz) / dz)
    t_floor = -oz / dz
    if t >= tmax:
        return INF, 0, 0.0, 0.0, 0.0
    fx, fy = (ox + t * dx - rx0) / res, (oy + t * dy - ry0) / res
    i, j = int(math.floor(fx)), int(math.floor(fy))
    si, ti, di = _dda_setup(ox, dx, fx, res)
    sj, tj, dj = _dda_setup(oy, dy, fy, res)
    ti += t
    tj += t
    ny_, nx_ = raster.shape
    axis = -1
    prev = TERRAIN_CODE
    for _ in range(1000000):
        code = raster[j, i] if (0 <= i < nx_ and 0 <= j < ny_) else TERRAIN_CODE
        h = flat_top[code & 15]
        if oz + t * dz <= h + 1e-9:  # entered through a kerb face
            if t >= tmax:
                break
            if axis == -1:
                return t, code, 0.0, 0.0, 1.0
            # The face is reported with the class of the cell in front of it (bit 6 marks a
            # kerb face): the 0.4 m Occ3D voxels put the face into the road layer before it.
            if axis == 0:
                return t, prev | KERB, -float(si), 0.0, 0.0
            return t, prev | KERB, 0.0, -float(sj), 0.0
        prev = code & 15
        t_exit = min(ti, tj)
        th = (h - oz) / dz
        if th <= t_exit:
            if th >= tmax:
                break
            return th, code, 0.0, 0.0, 1.0
        if t_exit >= tmax or t_exit > t_floor + 1.0:
            break
        if ti < tj:
            i += si
            t = ti
            ti += di
            axis = 0
        else:
            j += sj
            t = tj
            tj += dj
            axis = 1
    return INF, 0, 0.0, 0.0, 0.0
