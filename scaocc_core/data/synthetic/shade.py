"""Per-pixel rendering: cast each camera ray, shade the hit (per-class albedo with
per-instance variation, procedural texture noise, Lambertian sun with shadows, sky light,
distance haze) and record the semantic label and the optical-axis depth.

``light`` packs the scene lighting (see :func:`scaocc_core.data.synthetic.scene.Lighting.pack`):
``0:3`` unit vector towards the sun, ``3:6`` sun colour, ``6:9`` sky (ambient) colour,
``9:12`` zenith colour, ``12:15`` horizon colour, ``15`` exposure, ``16`` texture noise,
``17`` pixel noise std, ``18`` shadows on/off, ``19`` view range in metres.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from scaocc_core.data.synthetic.raycast import trace_flat, trace_objects
from scaocc_core.numba_threads import use_numba_workqueue

use_numba_workqueue()  # parallel loops must not change PyTorch's threads (scaocc_core/numba_threads.py)

SKY = 17
LUT_SIZE = 4096
#: linear intensity (0..1 in LUT_SIZE steps) -> sRGB-like uint8 (gamma 2.2)
GAMMA_LUT = np.round(255.0 * np.linspace(0.0, 1.0, LUT_SIZE) ** (1 / 2.2)).astype(np.uint8)


@njit(cache=True)
def _hash(ix: int, iy: int, iz: int, seed: int) -> float:
    h = (ix * 73856093) ^ (iy * 19349663) ^ (iz * 83492791) ^ (seed * 2654435761)
    h &= 0xFFFFFFFF
    h = ((h ^ (h >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
    h = ((h ^ (h >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
    h ^= h >> 16
    return (h & 0xFFFFFF) / 16777216.0


@njit(cache=True)
def value_noise(x: float, y: float, z: float, seed: int) -> float:
    """Smooth value noise in [0, 1) on the unit lattice."""
    ix, iy, iz = math.floor(x), math.floor(y), math.floor(z)
    fx, fy, fz = x - ix, y - iy, z - iz
    fx, fy, fz = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy), fz * fz * (3 - 2 * fz)
    i, j, k = int(ix), int(iy), int(iz)
    acc = 0.0
    for dk in range(2):
        wz = fz if dk else 1 - fz
        for dj in range(2):
            wy = fy if dj else 1 - fy
            for di in range(2):
                wx = fx if di else 1 - fx
                acc += wx * wy * wz * _hash(i + di, j + dj, k + dk, seed)
    return acc


@njit(cache=True)
def value_noise2(x: float, y: float, seed: int) -> float:
    """Smooth 2D value noise in [0, 1) on the unit lattice."""
    ix, iy = math.floor(x), math.floor(y)
    fx, fy = x - ix, y - iy
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    i, j = int(ix), int(iy)
    a = _hash(i, j, 0, seed) * (1 - fx) + _hash(i + 1, j, 0, seed) * fx
    b = _hash(i, j + 1, 0, seed) * (1 - fx) + _hash(i + 1, j + 1, 0, seed) * fx
    return a * (1 - fy) + b * fy


@njit(cache=True)
def fbm2(x: float, y: float, seed: int) -> float:
    """Two octaves of 2D value noise, centred on 0."""
    return 0.65 * value_noise2(x, y, seed) + 0.35 * value_noise2(2.1 * x, 2.1 * y, seed + 7) - 0.5


@njit(cache=True)
def fbm(x: float, y: float, z: float, seed: int) -> float:
    """Two octaves of value noise, centred on 0 (range about -0.5..0.5)."""
    return 0.65 * value_noise(x, y, z, seed) + 0.35 * value_noise(2.1 * x, 2.1 * y, 2.1 * z, seed + 7) - 0.5


@njit(cache=True)
def _frac(x: float) -> float:
    return x - math.floor(x)


@njit(cache=True)
def object_albedo(p: int, geo: np.ndarray, color: np.ndarray, inst: np.ndarray, pattern: np.ndarray,
                  hx: float, hy: float, hz: float, nx: float, ny: float, amp: float) -> tuple[float, float, float]:
    """Albedo of primitive ``p`` at global hit point ``(hx, hy, hz)`` (texture moves with it)."""
    c, s = geo[p, 6], geo[p, 7]
    px, py = hx - geo[p, 0], hy - geo[p, 1]
    lx, ly = c * px + s * py, -s * px + c * py
    seed = int(inst[p])
    n = fbm(3.0 * lx, 3.0 * ly, 3.0 * hz, seed)
    r, g, b = color[p, 0], color[p, 1], color[p, 2]
    pat = pattern[p]
    if pat == 1:  # facade windows
        along = ly if abs(c * nx + s * ny) > 0.7 else lx
        if hz > 1.2 and _frac(along / 3.1) > 0.3 and _frac((hz - 0.6) / 3.2) > 0.35:
            r, g, b = 0.03 + 0.02 * (seed % 3), 0.04, 0.06 + 0.02 * (seed % 2)
    elif pat == 2:  # glass
        r, g, b = r + 0.02, g + 0.025, b + 0.04
    elif pat == 3:  # bark
        n = 1.5 * fbm(30.0 * lx, 30.0 * ly, 2.0 * hz, seed)
    elif pat == 4:  # reflective stripes
        if _frac(hz / 0.3) < 0.35:
            r, g, b = 0.75, 0.75, 0.75
    f = max(0.05, 1.0 + amp * 2.0 * n)
    return r * f, g * f, b * f


@njit(cache=True)
def flat_albedo(code: int, flat_color: np.ndarray, hx: float, hy: float, amp: float,
                seed: int) -> tuple[float, float, float]:
    """Albedo of the flat ground at global ``(hx, hy)``: class colour, large patches, grain, paint."""
    k = code & 15
    if code & 16:
        k = 16
    elif code & 32:
        k = 17
    patch = fbm2(0.15 * hx, 0.15 * hy, seed + k)
    grain = value_noise2(4.0 * hx, 4.0 * hy, seed + 11 + k) - 0.5
    f = max(0.05, 1.0 + amp * (2.5 * patch + 1.5 * grain))
    if k == 14:  # terrain: mix grass and soil
        m = min(1.0, max(0.0, 0.5 + 2.0 * (value_noise2(0.3 * hx, 0.3 * hy, seed + 5) - 0.5)))
        return f * (flat_color[k, 0] * m + 0.16 * (1 - m)), f * (flat_color[k, 1] * m + 0.11 * (1 - m)), \
            f * (flat_color[k, 2] * m + 0.06 * (1 - m))
    return flat_color[k, 0] * f, flat_color[k, 1] * f, flat_color[k, 2] * f


@njit(cache=True)
def _sky(light: np.ndarray, dx: float, dy: float, dz: float, out: np.ndarray) -> None:
    norm = math.sqrt(dx * dx + dy * dy + dz * dz)
    e = max(0.0, dz / norm)
    w = math.sqrt(e)
    cosang = (dx * light[0] + dy * light[1] + dz * light[2]) / norm
    glow = 0.0
    if cosang > 0.5:
        c8 = cosang ** 8
        glow = 0.25 * c8 + (2.0 * math.exp(300.0 * math.log(cosang)) if cosang > 0.98 else 0.0)
    for q in range(3):
        out[q] = light[12 + q] * (1 - w) + light[9 + q] * w + glow * light[3 + q]


@njit(cache=True)
def _render_row(row: int, origins: np.ndarray, rays: np.ndarray, objects: tuple, buckets: tuple, ground: tuple,
                light: np.ndarray, seed: int, rgb: np.ndarray, sem: np.ndarray, depth: np.ndarray) -> None:
    """Render image row ``row % H`` of camera ``row // H`` (arguments as in :func:`render_serial`)."""
    kind, geo, color, inst, pattern, cls, radius = objects
    start, items, cell_top, rise_top, bparams = buckets
    ztop_all, bx0, by0, cell, nb = bparams[0], bparams[1], bparams[2], bparams[3], int(bparams[4])
    raster, gparams, flat_top, flat_color = ground
    rx0, ry0, res, flat_max = gparams[0], gparams[1], gparams[2], gparams[3]
    H, W = rays.shape[1], rays.shape[2]
    view = light[19]
    cam, v = row // H, row % H
    ox, oy, oz = origins[cam, 0], origins[cam, 1], origins[cam, 2]
    col = np.empty(3)
    seen = np.full(kind.shape[0], -1, np.int64)  # per-primitive id of the last ray that tested it
    for u in range(W):
        dx, dy, dz = rays[cam, v, u, 0], rays[cam, v, u, 1], rays[cam, v, u, 2]
        hxy = math.sqrt(dx * dx + dy * dy)
        tview = view / hxy if hxy > 1e-9 else 1e9
        tf, code, fnx, fny, fnz = trace_flat(raster, rx0, ry0, res, flat_top, flat_max, ox, oy, oz, dx, dy, dz,
                                             tview)
        to, p, nx, ny, nz = trace_objects(kind, geo, radius, start, items, cell_top, rise_top, ztop_all, bx0, by0,
                                          cell, nb, ox, oy, oz, dx, dy, dz, min(tf, tview), False, seen, 2 * u)
        if p < 0 and tf == np.inf:
            _sky(light, dx, dy, dz, col)
            sem[cam, v, u] = SKY
            depth[cam, v, u] = 0.0
        else:
            if p >= 0:
                t = to
                hx, hy, hz = ox + t * dx, oy + t * dy, oz + t * dz
                r, g, b = object_albedo(p, geo, color, inst, pattern, hx, hy, hz, nx, ny, light[16])
                sem[cam, v, u] = cls[p]
            else:
                t, nx, ny, nz = tf, fnx, fny, fnz
                hx, hy, hz = ox + t * dx, oy + t * dy, oz + t * dz
                if code & 64:  # kerb stone
                    r, g, b = 0.3 * (1 + light[16] * fbm(3 * hx, 3 * hy, 3 * hz, seed)), 0.3, 0.29
                else:
                    r, g, b = flat_albedo(code, flat_color, hx, hy, light[16], seed)
                sem[cam, v, u] = code & 15
            depth[cam, v, u] = t
            lam = nx * light[0] + ny * light[1] + nz * light[2]
            if lam > 0 and light[18] > 0:
                shadow = trace_objects(kind, geo, radius, start, items, cell_top, rise_top, ztop_all, bx0, by0,
                                       cell, nb, hx + 0.02 * nx, hy + 0.02 * ny, hz + 0.02 * nz, light[0], light[1],
                                       light[2], 1e9, True, seen, 2 * u + 1)[1]
                if shadow >= 0:
                    lam = 0.0
            lam = max(lam, 0.0)
            sky_w = 0.7 + 0.3 * nz
            haze = min(1.0, (t * math.sqrt(dx * dx + dy * dy + dz * dz) / view) ** 2)
            for q, alb in enumerate((r, g, b)):
                lit = alb * (light[3 + q] * lam + light[6 + q] * sky_w)
                col[q] = lit * (1 - haze) + light[12 + q] * haze
        noise = _hash(u, v, cam, seed + 101) if light[17] > 0 else 0.0
        for q in range(3):
            x = col[q] * light[15]
            if light[17] > 0:
                noise = _frac(noise * 61.0)  # three decorrelated values from one hash
                x += light[17] * 3.4 * (noise - 0.5)
            rgb[cam, v, u, q] = GAMMA_LUT[min(LUT_SIZE - 1, int(max(0.0, x) * (LUT_SIZE - 1) + 0.5))]


@njit(cache=True)
def render_serial(origins: np.ndarray, rays: np.ndarray, objects: tuple, buckets: tuple, ground: tuple,
                  light: np.ndarray, seed: int, rgb: np.ndarray, sem: np.ndarray, depth: np.ndarray) -> None:
    """Render ``n`` cameras on one thread.

    ``origins`` is ``n 3`` and ``rays`` ``n H W 3`` global ray directions with unit optical-axis
    component. ``objects`` = ``(kind, geo, color, inst, pattern, cls, radius)`` (a primitive table and
    :func:`~scaocc_core.data.synthetic.raycast.footprint_radius`),
    ``buckets`` = ``(start, items, cell_top, rise_top, [ztop_all, x0, y0, cell, n])`` (see
    :func:`~scaocc_core.data.synthetic.raycast.build_buckets` and ``rising_tops``), ``ground`` = ``(raster,
    [x0, y0, res, flat_max], flat_top, flat_color)``. Writes ``rgb`` (n H W 3 uint8), ``sem``
    (n H W uint8) and ``depth`` (n H W float32).
    """
    for row in range(rays.shape[0] * rays.shape[1]):
        _render_row(row, origins, rays, objects, buckets, ground, light, seed, rgb, sem, depth)


@njit(cache=True, parallel=True)
def render_parallel(origins: np.ndarray, rays: np.ndarray, objects: tuple, buckets: tuple, ground: tuple,
                    light: np.ndarray, seed: int, rgb: np.ndarray, sem: np.ndarray, depth: np.ndarray) -> None:
    """:func:`render_serial` with image rows spread over numba threads (same output)."""
    for row in prange(rays.shape[0] * rays.shape[1]):
        _render_row(row, origins, rays, objects, buckets, ground, light, seed, rgb, sem, depth)
