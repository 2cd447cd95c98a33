"""Composite objects (vehicles, people, street furniture, trees, buildings) built from
primitives, with nuScenes-like sizes. Every builder places the object at ``(x, y)`` with
heading ``yaw``; passing ``(0, 0, 0)`` builds it in its own frame (for moving agents).
"""

from __future__ import annotations

import math

import numpy as np

from scaocc_core.data.synthetic.prims import BARK, FACADE, GLASS, PLAIN, STRIPES, PrimBuilder

Color = tuple[float, float, float]
OTHERS, BARRIER, BICYCLE, BUS, CAR, CONSTRUCTION, MOTORCYCLE, PEDESTRIAN = 0, 1, 2, 3, 4, 5, 6, 7
TRAFFIC_CONE, TRAILER, TRUCK, MANMADE, VEGETATION = 8, 9, 10, 15, 16

CAR_PAINT: tuple[Color, ...] = (
    (0.75, 0.75, 0.75), (0.03, 0.03, 0.03), (0.40, 0.41, 0.43), (0.14, 0.14, 0.15),
    (0.55, 0.05, 0.04), (0.05, 0.12, 0.40), (0.06, 0.20, 0.10), (0.60, 0.50, 0.30),
)
GLASS_COLOR: Color = (0.02, 0.03, 0.04)
TYRE: Color = (0.02, 0.02, 0.02)


def jitter(rng: np.random.Generator, color: Color, amount: float = 0.15) -> Color:
    """``color`` scaled per channel by up to ``amount`` (per-instance variation)."""
    f = 1.0 + rng.uniform(-amount, amount, size=3)
    return tuple(float(min(1.0, c * k)) for c, k in zip(color, f))  # type: ignore[return-value]


class Placer:
    """Adds primitives given in an object's frame (x forward, y left, z up) to a builder.

    The object's ground is at height ``z`` (e.g. on a raised sidewalk).
    """

    def __init__(self, b: PrimBuilder, x: float, y: float, yaw: float, inst: int, z: float = 0.0) -> None:
        self.b, self.x, self.y, self.yaw, self.inst, self.z = b, x, y, yaw, inst, z
        self.c, self.s = math.cos(yaw), math.sin(yaw)

    def _at(self, lx: float, ly: float) -> tuple[float, float]:
        return self.x + self.c * lx - self.s * ly, self.y + self.s * lx + self.c * ly

    def box(self, lx: float, ly: float, z0: float, z1: float, length: float, width: float, cls: int,
            color: Color, pattern: int = PLAIN, dyaw: float = 0.0) -> None:
        """A box centred at ``(lx, ly)`` in the object frame."""
        self.b.box(*self._at(lx, ly), z0 + self.z, z1 + self.z, length, width, self.yaw + dyaw, cls, color,
                   self.inst, pattern)

    def cone(self, lx: float, ly: float, z0: float, z1: float, r0: float, r1: float, cls: int,
             color: Color, pattern: int = PLAIN) -> None:
        """A vertical (truncated) cone or cylinder."""
        self.b.cone(*self._at(lx, ly), z0 + self.z, z1 + self.z, r0, r1, cls, color, self.inst, pattern)

    def ellipsoid(self, lx: float, ly: float, z0: float, z1: float, length: float, width: float, cls: int,
                  color: Color, pattern: int = PLAIN) -> None:
        """An ellipsoid filling ``length`` x ``width`` x ``[z0, z1]``."""
        self.b.ellipsoid(*self._at(lx, ly), z0 + self.z, z1 + self.z, length, width, self.yaw, cls, color,
                         self.inst, pattern)


def _wheels(p: Placer, length: float, width: float, cls: int, radius: float, rear_only: bool = False) -> None:
    for fx in ((-0.32,) if rear_only else (0.32, -0.32)):
        for side in (1.0, -1.0):
            p.box(fx * length, side * (width / 2 - 0.16), 0.0, 2 * radius, 2 * radius, 0.3, cls, TYRE)


def car(p: Placer, rng: np.random.Generator) -> float:
    """A passenger car (about 4.6 x 1.95 x 1.7 m); returns its length."""
    length, width, height = rng.uniform(4.0, 5.1), rng.uniform(1.75, 2.05), rng.uniform(1.45, 1.9)
    paint = jitter(rng, CAR_PAINT[int(rng.integers(len(CAR_PAINT)))], 0.1)
    _wheels(p, length, width, CAR, 0.32)
    p.box(0.0, 0.0, 0.3, 0.55 * height + 0.1, length, width, CAR, paint)
    p.box(-0.06 * length, 0.0, 0.55 * height + 0.1, height, 0.68 * length, 0.94 * width, CAR, GLASS_COLOR, GLASS)
    return float(length)


def truck(p: Placer, rng: np.random.Generator, tractor_only: bool = False) -> float:
    """A box truck (about 6.9 x 2.5 x 2.9 m) or a tractor unit; returns its length."""
    length = rng.uniform(3.2, 4.0) if tractor_only else rng.uniform(5.5, 9.0)
    width, height = rng.uniform(2.3, 2.6), rng.uniform(2.6, 3.4)
    cab = jitter(rng, CAR_PAINT[int(rng.integers(len(CAR_PAINT)))], 0.1)
    _wheels(p, length, width, TRUCK, 0.5)
    cab_len = 2.0
    p.box(length / 2 - cab_len / 2, 0.0, 0.5, height * 0.85, cab_len, width, TRUCK, cab, GLASS)
    if tractor_only:
        p.box(-cab_len / 2, 0.0, 0.5, 1.2, length - cab_len, width * 0.9, TRUCK, (0.05, 0.05, 0.05))
    else:
        cargo = jitter(rng, (0.7, 0.7, 0.68), 0.2)
        p.box(-cab_len / 2 - 0.1, 0.0, 0.8, height, length - cab_len - 0.2, width, TRUCK, cargo)
    return float(length)


def bus(p: Placer, rng: np.random.Generator) -> float:
    """A city bus (about 11 x 2.9 x 3.4 m); returns its length."""
    length, width, height = rng.uniform(10.0, 12.5), rng.uniform(2.5, 2.9), rng.uniform(3.0, 3.6)
    body = jitter(rng, [(0.7, 0.7, 0.7), (0.6, 0.08, 0.05), (0.06, 0.15, 0.45)][int(rng.integers(3))], 0.1)
    _wheels(p, length, width, BUS, 0.5)
    p.box(0.0, 0.0, 0.35, height, length, width, BUS, body)
    p.box(0.0, 0.0, 1.3, height - 0.5, length - 0.6, width + 0.04, BUS, GLASS_COLOR, GLASS)
    return float(length)


def trailer(p: Placer, rng: np.random.Generator) -> float:
    """A semi-trailer (about 12 x 2.9 x 3.9 m) whose front is at ``x = 0``; returns its length."""
    length, width, height = rng.uniform(8.0, 13.5), rng.uniform(2.5, 2.9), rng.uniform(3.2, 4.0)
    color = jitter(rng, [(0.75, 0.75, 0.72), (0.5, 0.1, 0.05), (0.1, 0.2, 0.35)][int(rng.integers(3))], 0.1)
    p.box(-length / 2, 0.0, 1.0, height, length, width, TRAILER, color)
    for fx in (-0.8, -0.65):
        for side in (1.0, -1.0):
            p.box(fx * length, side * (width / 2 - 0.2), 0.0, 1.0, 1.0, 0.35, TRAILER, TYRE)
    return float(length)


def construction_vehicle(p: Placer, rng: np.random.Generator) -> float:
    """An excavator-like machine (about 6.4 x 2.8 x 3.2 m); returns its length."""
    length, width = rng.uniform(5.0, 7.5), rng.uniform(2.4, 3.0)
    yellow = jitter(rng, (0.65, 0.38, 0.02), 0.15)
    p.box(0.0, 0.0, 0.0, 0.9, length * 0.8, width, CONSTRUCTION, (0.04, 0.04, 0.04))
    p.box(-0.1 * length, 0.0, 0.9, 2.0, length * 0.6, width * 0.95, CONSTRUCTION, yellow)
    p.box(-0.05 * length, 0.25 * width, 2.0, 3.2, 1.4, 1.2, CONSTRUCTION, yellow, GLASS)
    p.box(0.3 * length, -0.15 * width, 1.4, 2.3, 0.45 * length, 0.5, CONSTRUCTION, yellow)
    p.box(0.5 * length, -0.15 * width, 0.2, 1.2, 0.6, 1.2, CONSTRUCTION, (0.2, 0.2, 0.2))
    return float(length)


def pedestrian(p: Placer, rng: np.random.Generator) -> float:
    """A person about 1.75 m tall (legs, torso, head); returns the footprint length."""
    height = rng.uniform(1.5, 1.95)
    cloth = jitter(rng, tuple(rng.uniform(0.02, 0.5, size=3)), 0.0)  # type: ignore[arg-type]
    legs = jitter(rng, (0.05, 0.06, 0.12), 0.5)
    skin = jitter(rng, (0.45, 0.3, 0.2), 0.5)
    p.box(0.0, 0.0, 0.0, 0.47 * height, 0.3, 0.4, PEDESTRIAN, legs)
    p.cone(0.0, 0.0, 0.47 * height, 0.84 * height, 0.22, 0.24, PEDESTRIAN, cloth)
    p.ellipsoid(0.0, 0.0, 0.84 * height, height, 0.2, 0.2, PEDESTRIAN, skin)
    return 0.5


def bicycle(p: Placer, rng: np.random.Generator, rider: bool) -> float:
    """A bicycle (about 1.7 x 0.6 x 1.1 m), optionally ridden (the rider is labelled bicycle)."""
    frame = jitter(rng, tuple(rng.uniform(0.02, 0.6, size=3)), 0.0)  # type: ignore[arg-type]
    p.box(0.0, 0.0, 0.05, 0.75, 1.7, 0.12, BICYCLE, TYRE)
    p.box(0.0, 0.0, 0.45, 1.0, 1.0, 0.2, BICYCLE, frame)
    p.box(0.45, 0.0, 0.95, 1.05, 0.1, 0.6, BICYCLE, (0.1, 0.1, 0.1))
    if rider:
        p.cone(-0.1, 0.0, 0.9, 1.55, 0.2, 0.22, BICYCLE, jitter(rng, (0.2, 0.2, 0.3), 0.6))
        p.ellipsoid(0.0, 0.0, 1.55, 1.8, 0.22, 0.22, BICYCLE, (0.4, 0.27, 0.18))
    return 1.7


def motorcycle(p: Placer, rng: np.random.Generator, rider: bool) -> float:
    """A motorcycle (about 2.1 x 0.8 x 1.4 m), optionally ridden."""
    paint = jitter(rng, CAR_PAINT[int(rng.integers(len(CAR_PAINT)))], 0.1)
    p.box(0.0, 0.0, 0.0, 0.65, 2.1, 0.2, MOTORCYCLE, TYRE)
    p.box(0.0, 0.0, 0.35, 1.05, 1.4, 0.55, MOTORCYCLE, paint)
    if rider:
        p.cone(-0.2, 0.0, 0.9, 1.5, 0.22, 0.24, MOTORCYCLE, jitter(rng, (0.1, 0.1, 0.12), 0.5))
        p.ellipsoid(-0.1, 0.0, 1.45, 1.75, 0.28, 0.28, MOTORCYCLE, (0.05, 0.05, 0.05))
    return 2.1


def traffic_cone(p: Placer, rng: np.random.Generator) -> None:
    """An orange traffic cone with a square base (about 0.45 x 0.45 x 0.8 m)."""
    height = rng.uniform(0.7, 1.0)
    p.box(0.0, 0.0, 0.0, 0.05, 0.45, 0.45, TRAFFIC_CONE, (0.05, 0.05, 0.05))
    p.cone(0.0, 0.0, 0.05, height, 0.2, 0.035, TRAFFIC_CONE, jitter(rng, (0.85, 0.2, 0.02), 0.1), STRIPES)


def barrier(p: Placer, rng: np.random.Generator, length: float) -> None:
    """A jersey barrier (about 0.5 wide, 0.9 high)."""
    concrete = rng.random() < 0.6
    color = jitter(rng, (0.38, 0.37, 0.35) if concrete else (0.7, 0.1, 0.05), 0.1)
    p.box(0.0, 0.0, 0.0, 0.35, length, 0.6, BARRIER, color)
    p.box(0.0, 0.0, 0.35, rng.uniform(0.8, 1.05), length, 0.3, BARRIER, color, PLAIN if concrete else STRIPES)


def tree(p: Placer, rng: np.random.Generator) -> float:
    """A tree: trunk and crown; returns the crown diameter."""
    trunk_h = rng.uniform(1.8, 3.5)
    crown_w = rng.uniform(2.5, 6.0)
    crown_h = rng.uniform(2.5, 6.0)
    r = rng.uniform(0.15, 0.3)
    p.cone(0.0, 0.0, 0.0, trunk_h + 0.5, r, r * 0.7, VEGETATION, jitter(rng, (0.09, 0.06, 0.03)), BARK)
    green = jitter(rng, (0.05, 0.16, 0.035), 0.3)
    p.ellipsoid(0.0, 0.0, trunk_h, trunk_h + crown_h, crown_w, crown_w * rng.uniform(0.8, 1.0),
                VEGETATION, green)
    return float(crown_w)


def bush(p: Placer, rng: np.random.Generator, length: float, hedge: bool) -> None:
    """A bush (ellipsoid) or a hedge (box) of vegetation."""
    green = jitter(rng, (0.04, 0.13, 0.03), 0.3)
    if hedge:
        p.box(0.0, 0.0, 0.0, rng.uniform(0.8, 1.8), length, rng.uniform(0.7, 1.2), VEGETATION, green)
    else:
        p.ellipsoid(0.0, 0.0, -0.2, rng.uniform(0.7, 1.6), length, length * 0.8, VEGETATION, green)


def street_light(p: Placer, rng: np.random.Generator) -> None:
    """A lamp post whose arm reaches over the road (to the object's left)."""
    height = rng.uniform(6.0, 9.0)
    grey = jitter(rng, (0.25, 0.25, 0.26), 0.2)
    p.cone(0.0, 0.0, 0.0, height, 0.2, 0.14, MANMADE, grey)
    p.box(0.0, 1.0, height - 0.2, height, 0.15, 2.2, MANMADE, grey)


def sign_post(p: Placer, rng: np.random.Generator, traffic_light: bool) -> None:
    """A traffic sign or a traffic light on a post."""
    height = rng.uniform(2.5, 3.2) if not traffic_light else rng.uniform(4.0, 5.0)
    p.cone(0.0, 0.0, 0.0, height, 0.14, 0.12, MANMADE, (0.3, 0.3, 0.3))
    if traffic_light:
        p.box(0.0, 0.0, height - 1.0, height, 0.35, 0.35, MANMADE, (0.03, 0.03, 0.03))
    else:
        color = [(0.05, 0.15, 0.5), (0.6, 0.05, 0.04), (0.7, 0.6, 0.05)][int(rng.integers(3))]
        p.box(0.0, 0.0, height - 0.7, height, 0.08, 0.7, MANMADE, color)


def building(p: Placer, rng: np.random.Generator, length: float, depth: float) -> None:
    """A building block with windows; ``length`` along the street, ``depth`` away from it."""
    height = float(rng.choice([rng.uniform(4, 8), rng.uniform(8, 16), rng.uniform(16, 35)], p=[0.35, 0.45, 0.2]))
    facade = jitter(rng, [(0.55, 0.5, 0.42), (0.4, 0.4, 0.4), (0.35, 0.15, 0.09), (0.7, 0.7, 0.68),
                          (0.45, 0.38, 0.3)][int(rng.integers(5))], 0.12)
    # A shell (walls, floor, roof) rather than a solid block: like Occ3D, whose labels come
    # from observed surfaces, the inside of a building is free space.
    t = 0.5
    for side in (1.0, -1.0):
        p.box(side * (length - t) / 2, 0.0, 0.0, height, t, depth, MANMADE, facade, FACADE)
        p.box(0.0, side * (depth - t) / 2, 0.0, height, length - 2 * t, t, MANMADE, facade, FACADE)
    p.box(0.0, 0.0, 0.0, 0.2, length - 2 * t, depth - 2 * t, MANMADE, facade)
    p.box(0.0, 0.0, height - t, height, length - 2 * t, depth - 2 * t, MANMADE, facade)
    if rng.random() < 0.4:
        p.box(0.0, 0.0, height, height + rng.uniform(0.8, 2.5), length * 0.4, depth * 0.4, MANMADE, facade)


def wall(p: Placer, rng: np.random.Generator, length: float) -> None:
    """A garden or property wall."""
    color = jitter(rng, [(0.4, 0.39, 0.37), (0.35, 0.16, 0.1)][int(rng.integers(2))], 0.1)
    p.box(0.0, 0.0, 0.0, rng.uniform(1.0, 2.5), length, rng.uniform(0.25, 0.4), MANMADE, color)


def clutter(p: Placer, rng: np.random.Generator) -> None:
    """Class ``others``: a trash bin, a dumpster or a pile of crates."""
    kind = int(rng.integers(3))
    if kind == 0:
        p.box(0.0, 0.0, 0.0, 1.05, 0.6, 0.6, OTHERS, jitter(rng, (0.05, 0.2, 0.08), 0.4))
    elif kind == 1:
        p.box(0.0, 0.0, 0.0, 1.35, 1.9, 1.1, OTHERS, jitter(rng, (0.05, 0.1, 0.35), 0.4))
    else:
        p.box(0.0, 0.0, 0.0, 0.9, 1.3, 1.1, OTHERS, jitter(rng, (0.4, 0.28, 0.12), 0.3))
        p.box(0.1, 0.0, 0.9, 1.6, 1.0, 0.9, OTHERS, jitter(rng, (0.4, 0.28, 0.12), 0.3))
