"""Static world: buildings, walls, vegetation, street furniture, parked vehicles and
construction sites, placed beside the roads without overlapping each other."""

from __future__ import annotations

import math

import numpy as np

from scaocc_core.data.synthetic import shapes as S
from scaocc_core.data.synthetic.layout import FLAT_TOP, OTHER_FLAT, RES, ROAD, SIDEWALK, TERRAIN, Layout, Road
from scaocc_core.data.synthetic.prims import PrimBuilder
from scaocc_core.data.synthetic.spec import Preset

CLAIM_RES = 0.5


class Claims:
    """A coarse occupancy raster of placed footprints, checked against the flat classes."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        ny, nx = layout.raster.shape
        self.grid = np.zeros((int(ny * RES / CLAIM_RES) + 1, int(nx * RES / CLAIM_RES) + 1), bool)

    def _samples(self, x: float, y: float, length: float, width: float, yaw: float,
                 margin: float) -> tuple[np.ndarray, np.ndarray]:
        lx = np.linspace(-length / 2 - margin, length / 2 + margin, max(2, int((length + 2 * margin) / 0.4) + 2))
        ly = np.linspace(-width / 2 - margin, width / 2 + margin, max(2, int((width + 2 * margin) / 0.4) + 2))
        gx, gy = np.meshgrid(lx, ly, indexing="ij")
        c, s = math.cos(yaw), math.sin(yaw)
        return (x + c * gx - s * gy).ravel(), (y + s * gx + c * gy).ravel()

    def _cells(self, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ix = np.floor((px - self.layout.origin[0]) / CLAIM_RES).astype(np.int64)
        iy = np.floor((py - self.layout.origin[1]) / CLAIM_RES).astype(np.int64)
        ok = (ix >= 0) & (iy >= 0) & (ix < self.grid.shape[1]) & (iy < self.grid.shape[0])
        return ix, iy, ok

    def free(self, x: float, y: float, length: float, width: float, yaw: float,
             allowed: tuple[int, ...], margin: float = 0.3) -> bool:
        """True if the footprint (plus ``margin``) lies on ``allowed`` flat classes, unclaimed."""
        px, py = self._samples(x, y, length, width, yaw, margin)
        if not np.isin(self.layout.classes_at(px, py), allowed).all():
            return False
        ix, iy, ok = self._cells(px, py)
        return bool(ok.all() and not self.grid[iy, ix].any())

    def claim(self, x: float, y: float, length: float, width: float, yaw: float) -> None:
        """Mark a footprint as used."""
        px, py = self._samples(x, y, length, width, yaw, 0.0)
        ix, iy, ok = self._cells(px, py)
        self.grid[iy[ok], ix[ok]] = True


def road_point(road: Road, s: float, lateral: float) -> tuple[float, float, float]:
    """Global ``(x, y, heading)`` at arc length ``s`` and ``lateral`` metres left of the centre."""
    x, y, h = (float(v) for v in road.path.pose(s))
    return x - lateral * math.sin(h), y + lateral * math.cos(h), h


class World:
    """Places static objects into a :class:`PrimBuilder`, numbering instances."""

    def __init__(self, rng: np.random.Generator, layout: Layout, preset: Preset, b: PrimBuilder) -> None:
        self.rng, self.layout, self.preset, self.b = rng, layout, preset, b
        self.claims = Claims(layout)
        self.next_inst = 1

    def placer(self, x: float, y: float, yaw: float) -> S.Placer:
        """A placer for a new instance standing on the flat ground at ``(x, y)``."""
        self.next_inst += 1
        return S.Placer(self.b, x, y, yaw, self.next_inst, self.ground(x, y))

    def ground(self, x: float, y: float) -> float:
        """Height of the flat ground at ``(x, y)``."""
        return float(FLAT_TOP[self.layout.classes_at(np.array([x]), np.array([y]))[0]])

    def try_place(self, x: float, y: float, yaw: float, length: float, width: float,
                  allowed: tuple[int, ...], margin: float = 0.3) -> S.Placer | None:
        """Claim a footprint and return its placer, or ``None`` if it is not free."""
        if not self.claims.free(x, y, length, width, yaw, allowed, margin):
            return None
        self.claims.claim(x, y, length, width, yaw)
        return self.placer(x, y, yaw)

    def populate(self, kerb_use: dict[float, str]) -> None:
        """Fill the scene with static objects; ``kerb_use`` says what lines the main road's kerbs."""
        main = self.layout.roads[0]
        for s_c in main.crossings:
            self._junction(main, s_c)
        self._construction_site(main, kerb_use)
        for road in self.layout.roads:
            for side in (1.0, -1.0):
                self._street_furniture(road, side)
                self._frontage(road, side)
        self._lots()
        self._scatter_vegetation()

    def _junction(self, main: Road, s_c: float) -> None:
        for ds in (-1.0, 1.0):
            for side in (1.0, -1.0):
                if self.rng.random() < 0.7:
                    x, y, h = road_point(main, s_c + ds * 9.0, side * (main.half_width + 0.6))
                    p = self.try_place(x, y, h, 0.4, 0.4, (SIDEWALK, TERRAIN, OTHER_FLAT))
                    if p:
                        S.sign_post(p, self.rng, traffic_light=True)

    def _street_furniture(self, road: Road, side: float) -> None:
        rng, dens = self.rng, self.preset.object_density
        hw, sw = road.half_width, road.sidewalk
        kerb = (SIDEWALK,) if sw > 0 else (TERRAIN, OTHER_FLAT)
        yaw_off = math.pi if side > 0 else 0.0
        s = float(rng.uniform(0, 20))
        while s < road.path.length:
            x, y, h = road_point(road, s, side * (hw + 0.65))
            p = self.try_place(x, y, h, 0.4, 0.4, kerb)
            if p:
                S.street_light(S.Placer(self.b, x, y, h + yaw_off, p.inst, p.z), rng)
            s += float(rng.uniform(22, 40))
        tree_row = sw >= 2.4 and rng.random() < 0.6
        s = float(rng.uniform(0, 10))
        while s < road.path.length:
            u = rng.random()
            if tree_row and u < 0.8:
                p = self._at(road, s, side * (hw + sw - 0.8), 0.8, 0.8, kerb)
                if p:
                    S.tree(p, rng)
            elif u < 0.8 + 0.1 * dens and sw > 0:
                p = self._at(road, s, side * (hw + sw - 0.6), 0.8, 0.8, kerb)
                if p:
                    S.clutter(p, rng)
            elif u < 0.9 + 0.1 * dens:
                p = self._at(road, s, side * (hw + 0.55), 0.3, 0.3, kerb)
                if p:
                    S.sign_post(p, rng, traffic_light=False)
            if sw >= 2.5 and rng.random() < 0.12 * dens:
                self._parked_two_wheelers(road, s, side)
            s += float(rng.uniform(7, 14)) / dens

    def _parked_two_wheelers(self, road: Road, s: float, side: float) -> None:
        motor = self.rng.random() < 0.35
        for k in range(int(self.rng.integers(1, 5))):
            x, y, h = road_point(road, s + 3.0 + k * 0.9, side * (road.half_width + road.sidewalk - 1.1))
            yaw = h + math.pi / 2 + float(self.rng.normal(0, 0.1))
            p = self.try_place(x, y, yaw, 1.8, 0.5, (SIDEWALK,), 0.1)
            if p:
                (S.motorcycle if motor else S.bicycle)(p, self.rng, False)

    def _at(self, road: Road, s: float, lateral: float, length: float, width: float,
            allowed: tuple[int, ...], yaw_off: float = 0.0, margin: float = 0.3) -> S.Placer | None:
        x, y, h = road_point(road, s, lateral)
        return self.try_place(x, y, h + yaw_off, length, width, allowed, margin)

    def _frontage(self, road: Road, side: float) -> None:
        rng, dens = self.rng, self.preset.object_density
        edge = road.half_width + road.sidewalk
        s = float(rng.uniform(0, 10))
        while s < road.path.length:
            length = float(rng.uniform(10, 35))
            depth = float(rng.uniform(8, 22))
            lateral = side * (edge + float(rng.uniform(0.5, 6.0)) + depth / 2)
            placed = False
            if rng.random() < 0.8:
                p = self._at(road, s + length / 2, lateral, length, depth, (TERRAIN,), margin=0.5)
                if p:
                    S.building(p, rng, length, depth)
                    placed = True
            if not placed and rng.random() < 0.6 * dens:
                lateral = side * (edge + 0.5)
                seg = float(rng.uniform(4, 16))
                p = self._at(road, s + seg / 2, lateral, seg, 0.4, (TERRAIN, SIDEWALK))
                if p and rng.random() < 0.5:
                    S.wall(p, rng, seg)
                elif p:
                    S.bush(p, rng, seg, hedge=True)
            s += length + float(rng.uniform(2, 14))

    def _lots(self) -> None:
        rng = self.rng
        for cx, cy, length, depth, yaw in self.layout.lots:
            c, s = math.cos(yaw), math.sin(yaw)
            for row in (-1.0, 1.0):
                if depth < 11 and row > 0:
                    continue
                ly = row * (depth / 2 - 2.8) if depth >= 11 else 0.0
                for lx in np.arange(-length / 2 + 1.5, length / 2 - 1.5, 2.7):
                    if rng.random() < 0.6 * self.preset.traffic_density:
                        x, y = cx + c * lx - s * ly, cy + s * lx + c * ly
                        heading = yaw + math.pi / 2 + (math.pi if rng.random() < 0.3 else 0.0)
                        p = self.try_place(x, y, heading, 4.6, 2.0, (OTHER_FLAT,), 0.05)
                        if p:
                            S.car(p, rng)

    def _scatter_vegetation(self) -> None:
        rng, layout = self.rng, self.layout
        ny, nx = layout.raster.shape
        area = nx * ny * RES * RES
        for _ in range(int(area / 600 * self.preset.object_density)):
            x = float(layout.origin[0] + rng.uniform(0, nx * RES))
            y = float(layout.origin[1] + rng.uniform(0, ny * RES))
            yaw = float(rng.uniform(0, 2 * math.pi))
            if rng.random() < 0.6:
                p = self.try_place(x, y, yaw, 3.0, 3.0, (TERRAIN,))
                if p:
                    S.tree(S.Placer(self.b, x, y, yaw, p.inst, p.z), rng)
            else:
                size = float(rng.uniform(1.0, 3.0))
                p = self.try_place(x, y, yaw, size, size, (TERRAIN,))
                if p:
                    S.bush(p, rng, size, hedge=False)

    def _construction_site(self, main: Road, kerb_use: dict[float, str]) -> None:
        rng = self.rng
        for side, use in kerb_use.items():
            if use != "cones":
                continue
            s0 = self.layout.ego_s0 + float(rng.uniform(-20, 60))
            n = int(rng.integers(6, 14))
            for k in range(n):
                p = self._at(main, s0 + 3.0 * k, side * (main.half_width - 0.4), 0.45, 0.45, (ROAD,), margin=0.05)
                if p:
                    S.traffic_cone(p, rng)
            edge = main.half_width + main.sidewalk
            for k in range(int(rng.integers(4, 10))):
                p = self._at(main, s0 + 2.2 * k, side * (edge + 1.0), 2.0, 0.6, (TERRAIN, OTHER_FLAT), margin=0.1)
                if p:
                    S.barrier(p, rng, 2.0)
            for _ in range(int(rng.integers(1, 3))):
                p = self._at(main, s0 + float(rng.uniform(0, 20)), side * (edge + float(rng.uniform(5, 10))),
                             7.0, 3.0, (TERRAIN, OTHER_FLAT), float(rng.uniform(0, 2 * math.pi)))
                if p:
                    S.construction_vehicle(p, rng)
            for _ in range(int(rng.integers(2, 6))):
                p = self._at(main, s0 + float(rng.uniform(0, 25)), side * (edge + float(rng.uniform(2, 12))),
                             0.5, 0.5, (TERRAIN, OTHER_FLAT))
                if p:
                    (S.traffic_cone if rng.random() < 0.6 else S.clutter)(p, rng)
