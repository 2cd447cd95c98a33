"""Road layout of one scene: a main road (straight or curved), cross streets, and the
flat-ground raster (driveable surface, sidewalks with kerbs, other flat, terrain, paint).

The flat ground is a global raster of ``RES`` metre cells holding the class id in the low
four bits and lane paint in bits 4 and 5. Each flat class has a fixed top height
(``FLAT_TOP``): the road is at 0 (the ego's ground) and everything beside it is raised
0.2 m, so road edges are kerbs. (0.2 m is also the Occ3D voxel boundary above the road
layer, so a raised surface never hides behind a road voxel in the ground truth.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

ROAD, OTHER_FLAT, SIDEWALK, TERRAIN = 11, 12, 13, 14
PAINT_WHITE, PAINT_YELLOW = 16, 32
CLASS_BITS = 15
RES = 0.1  # raster cell edge in metres
DS = 1.0  # road centreline sampling in metres
#: top height of every flat class (indexed by class id, 16 entries)
FLAT_TOP = np.zeros(16, np.float64)
FLAT_TOP[[ROAD, OTHER_FLAT, SIDEWALK, TERRAIN]] = (0.0, 0.2, 0.2, 0.2)
FLAT_MAX = 0.2


@dataclass
class Path:
    """A polyline with headings, sampled densely; ``pose(s)`` interpolates along it."""

    xy: np.ndarray  # m 2
    heading: np.ndarray  # m, unwrapped radians

    def __post_init__(self) -> None:
        seg = np.linalg.norm(np.diff(self.xy, axis=0), axis=1)
        self.s = np.concatenate([[0.0], np.cumsum(seg)])  # m

    @property
    def length(self) -> float:
        """Arc length in metres."""
        return float(self.s[-1])

    def pose(self, s: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x, y, yaw)`` at arc length(s) ``s`` (clamped to the ends)."""
        s = np.asarray(s, dtype=np.float64)
        return (np.interp(s, self.s, self.xy[:, 0]), np.interp(s, self.s, self.xy[:, 1]),
                np.interp(s, self.s, self.heading))

    def offset(self, lateral: float, reverse: bool = False) -> Path:
        """The parallel path ``lateral`` metres to the left; ``reverse`` flips its direction."""
        n = np.stack([-np.sin(self.heading), np.cos(self.heading)], axis=1)
        xy = self.xy + lateral * n
        if reverse:
            return Path(xy[::-1].copy(), self.heading[::-1] + math.pi)
        return Path(xy, self.heading.copy())


@dataclass
class Road:
    """A road: its centreline path, lanes and sidewalks (both sides)."""

    path: Path
    lanes_per_dir: int
    lane_width: float
    sidewalk: float
    crossings: list[float] = field(default_factory=list)  # arc lengths of junctions

    @property
    def half_width(self) -> float:
        """Half the carriageway width (kerb to centre) in metres."""
        return self.lanes_per_dir * self.lane_width + 0.3


@dataclass
class Layout:
    """Roads plus the flat-ground raster (``img[iy, ix]``, cell ``ix`` starts at ``origin + ix * RES``)."""

    roads: list[Road]
    origin: np.ndarray  # 2, global x, y of the raster's lower corner
    raster: np.ndarray  # ny nx uint8: class | paint bits
    lots: list[tuple[float, float, float, float, float]]  # cx cy length width yaw of parking lots
    ego_s0: float  # arc length on the main road where the ego starts

    def classes_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Flat class id under global points (terrain outside the raster)."""
        ix = np.floor((x - self.origin[0]) / RES).astype(np.int64)
        iy = np.floor((y - self.origin[1]) / RES).astype(np.int64)
        ny, nx = self.raster.shape
        inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
        out = np.full(np.shape(x), TERRAIN, np.uint8)
        out[inside] = self.raster[iy[inside], ix[inside]] & CLASS_BITS
        return out


def _main_centreline(rng: np.random.Generator, length: float, curvy: bool) -> tuple[Path, list[tuple[float, float]]]:
    """Centreline of the main road and its straight intervals ``(s_begin, s_end)``."""
    curvature: list[float] = []
    straights: list[tuple[float, float]] = []
    s = 0.0
    while s < length:
        run = float(rng.uniform(40, 110))
        straights.append((s, s + run))
        curvature += [0.0] * int(run / DS)
        s += int(run / DS) * DS
        if curvy and s < length:
            radius = float(rng.uniform(35, 120))
            angle = math.radians(float(rng.uniform(25, 80)))
            n = int(radius * angle / DS)
            curvature += [float(rng.choice([-1, 1])) / radius] * n
            s += n * DS
    kappa = np.asarray(curvature[: int(length / DS) + 1])
    heading = float(rng.uniform(0, 2 * math.pi)) + np.concatenate([[0.0], np.cumsum(kappa[:-1] * DS)])
    steps = np.stack([np.cos(heading), np.sin(heading)], axis=1) * DS
    xy = np.concatenate([[[0.0, 0.0]], np.cumsum(steps[:-1], axis=0)]) + rng.uniform(-800, 800, size=2)
    return Path(xy, heading), straights


def make_layout(rng: np.random.Generator, travel: float) -> Layout:
    """Generate roads and rasterise the flat ground for an ego route of ``travel`` metres."""
    ego_s0 = 110.0
    length = ego_s0 + travel + 130.0
    curvy = bool(rng.random() < 0.5)
    path, straights = _main_centreline(rng, length, curvy)
    main = Road(path, int(rng.choice([1, 2])), float(rng.uniform(3.2, 3.7)),
                float(rng.uniform(2.0, 4.0)) if rng.random() < 0.9 else 0.0)
    roads = [main]
    # Cross streets on straight parts near the ego route.
    candidates = [s for a, b in straights for s in np.arange(a + 25, b - 25, 5.0)
                  if ego_s0 - 50 < s < ego_s0 + travel + 70]
    rng.shuffle(candidates)
    for s_c in candidates[: int(rng.integers(0, 4))]:
        if any(abs(s_c - c) < 50 for c in main.crossings):
            continue
        x, y, h = (float(v) for v in path.pose(s_c))
        h_c = h + math.pi / 2 + math.radians(float(rng.uniform(-15, 15)))
        left, right = float(rng.uniform(60, 140)), float(rng.uniform(60, 140))
        if rng.random() < 0.3:
            right = 0.0  # a T junction
        ts = np.arange(-right, left + DS / 2, DS)
        xy = np.stack([x + ts * math.cos(h_c), y + ts * math.sin(h_c)], axis=1)
        roads.append(Road(Path(xy, np.full(len(ts), h_c)), 1, float(rng.uniform(3.0, 3.5)),
                          float(rng.uniform(1.8, 3.5)) if main.sidewalk > 0 else 0.0, [right]))
        main.crossings.append(s_c)
    pts = np.concatenate([r.path.xy for r in roads])
    origin = pts.min(axis=0) - 70.0
    shape = np.ceil((pts.max(axis=0) + 70.0 - origin) / RES).astype(int)
    raster = np.full((shape[1], shape[0]), TERRAIN, np.uint8)  # ny nx
    lots = _draw_lots(rng, raster, origin, roads)
    for r in roads:
        if r.sidewalk > 0:
            for side in (1.0, -1.0):
                _fill_band(raster, origin, r.path, side * r.half_width, side * (r.half_width + r.sidewalk), SIDEWALK)
    cover = np.zeros_like(raster)
    for r in roads:
        corridor = np.zeros_like(raster)
        _fill_band(corridor, origin, r.path, -r.half_width, r.half_width, 1)
        cover += corridor
        raster[corridor > 0] = ROAD
    paint = np.zeros_like(raster)
    for r in roads:
        _draw_markings(paint, origin, r)
    raster |= np.where((cover == 1) & ((raster & CLASS_BITS) == ROAD), paint, 0).astype(np.uint8)
    return Layout(roads, origin, raster, lots, ego_s0)


def _to_px(xy: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Global points -> cv2 fixed-point pixel coordinates (shift 3; centres at integers)."""
    return np.round(((xy - origin) / RES - 0.5) * 8).astype(np.int32)


def _fill_band(img: np.ndarray, origin: np.ndarray, path: Path, lat0: float, lat1: float, value: int,
               segments: np.ndarray | None = None) -> None:
    """Fill the band between lateral offsets ``lat0`` and ``lat1`` along ``path``."""
    a, b = path.offset(lat0).xy, path.offset(lat1).xy
    quads = np.stack([a[:-1], a[1:], b[1:], b[:-1]], axis=1)  # m-1 4 2
    if segments is not None:
        quads = quads[segments]
    if len(quads):
        cv2.fillPoly(img, list(_to_px(quads, origin)), int(value), lineType=cv2.LINE_8, shift=3)


def _draw_markings(paint: np.ndarray, origin: np.ndarray, road: Road) -> None:
    """Centre line, dashed lane separators and solid edge lines."""
    half = 0.07
    s = road.path.s[:-1]
    dashes = (s % 9.0) < 3.0
    centre = np.ones_like(dashes) if road.lanes_per_dir > 1 else dashes
    _fill_band(paint, origin, road.path, -half, half, PAINT_YELLOW if road.lanes_per_dir > 1 else PAINT_WHITE,
               centre)
    for k in range(1, road.lanes_per_dir):
        for side in (1.0, -1.0):
            lat = side * k * road.lane_width
            _fill_band(paint, origin, road.path, lat - half, lat + half, PAINT_WHITE, dashes)
    for side in (1.0, -1.0):
        lat = side * (road.half_width - 0.25)
        _fill_band(paint, origin, road.path, lat - half, lat + half, PAINT_WHITE)


def _draw_lots(rng: np.random.Generator, raster: np.ndarray, origin: np.ndarray,
               roads: list[Road]) -> list[tuple[float, float, float, float, float]]:
    """Paved ``other_flat`` areas (parking lots, plazas) beside the roads."""
    lots = []
    for r in roads:
        s = float(rng.uniform(0, 40))
        while s < r.path.length - 20:
            if rng.random() < 0.35:
                side = float(rng.choice([-1.0, 1.0]))
                length, depth = float(rng.uniform(12, 35)), float(rng.uniform(8, 22))
                lat = side * (r.half_width + r.sidewalk + 0.5 + depth / 2)
                x, y, h = (float(v) for v in r.path.pose(s + length / 2))
                cx, cy = x - lat * math.sin(h), y + lat * math.cos(h)
                corners = cv2.boxPoints(((0.0, 0.0), (length, depth), math.degrees(h)))
                poly = corners + np.array([cx, cy])
                cv2.fillPoly(raster, [_to_px(poly, origin)], OTHER_FLAT, shift=3)
                lots.append((cx, cy, length, depth, h))
            s += float(rng.uniform(30, 80))
    return lots
