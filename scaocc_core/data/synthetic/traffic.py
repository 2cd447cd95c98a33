"""Road users: moving traffic in lanes, cyclists at the kerb, pedestrians on sidewalks,
parked and queued vehicles. Moving agents follow a path at constant speed; all agents in
one lane share that lane's speed so they never run into each other (or into the ego)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from scaocc_core.data.synthetic import shapes as S
from scaocc_core.data.synthetic.layout import FLAT_TOP, ROAD, SIDEWALK, Path, Road
from scaocc_core.data.synthetic.placement import World, road_point
from scaocc_core.data.synthetic.prims import PrimBuilder, Prims

#: vehicle kinds in moving traffic with their probability
TRAFFIC_MIX: tuple[tuple[str, float], ...] = (
    ("car", 0.70), ("truck", 0.08), ("bus", 0.06), ("semi", 0.05), ("motorcycle", 0.07),
    ("construction", 0.02), ("bicycle", 0.02),
)
NARROW = ("car", "motorcycle", "bicycle")


@dataclass
class Agents:
    """Moving (or standing) road users: primitives in their own frames plus their motion."""

    local: Prims  # all agents' primitives, each in its agent's frame
    owner: np.ndarray  # Pd int64 agent index of every primitive
    paths: list[Path]
    s0: np.ndarray  # A arc length at t = 0
    speed: np.ndarray  # A metres per second (0 = standing)

    def prims_at(self, t: float) -> Prims:
        """All agents' primitives in the global frame at time ``t`` seconds."""
        if not len(self.local):
            return Prims.empty()
        poses = np.array([p.pose(s + v * t) for p, s, v in zip(self.paths, self.s0, self.speed)])  # A 3
        x, y, yaw = poses[self.owner, 0], poses[self.owner, 1], poses[self.owner, 2]
        c, s = np.cos(yaw), np.sin(yaw)
        return self.local.transformed(c, s, x, y)


class TrafficBuilder:
    """Collects agents while keeping their primitives in local frames."""

    def __init__(self, world: World) -> None:
        self.world, self.rng = world, world.rng
        self.b = PrimBuilder()
        self.owner: list[int] = []
        self.paths: list[Path] = []
        self.s0: list[float] = []
        self.speed: list[float] = []

    def agent(self, path: Path, s: float, speed: float, build: Callable[[S.Placer], object],
              ground: float = 0.0) -> float:
        """Add one agent built by ``build`` (standing at height ``ground``), centred lengthwise on
        its path point; returns its length."""
        n = len(self.b)
        self.world.next_inst += 1
        build(S.Placer(self.b, 0.0, 0.0, 0.0, self.world.next_inst, ground))
        length = self.b.recentre_x(n)
        self.owner += [len(self.paths)] * (len(self.b) - n)
        self.paths.append(path)
        self.s0.append(s)
        self.speed.append(speed)
        return length

    def drop_last(self) -> None:
        """Remove the most recently added agent."""
        n = self.owner.count(len(self.paths) - 1)
        self.b.truncate(len(self.b) - n)
        del self.owner[len(self.owner) - n:]
        self.paths.pop()
        self.s0.pop()
        self.speed.pop()

    def vehicle(self, kind: str) -> Callable[[S.Placer], float]:
        """A builder for one vehicle kind (``semi`` = tractor with trailer)."""
        rng = self.rng
        if kind == "car":
            return lambda p: S.car(p, rng)
        if kind == "truck":
            return lambda p: S.truck(p, rng)
        if kind == "bus":
            return lambda p: S.bus(p, rng)
        if kind == "construction":
            return lambda p: S.construction_vehicle(p, rng)
        if kind == "motorcycle":
            return lambda p: S.motorcycle(p, rng, True)
        if kind == "bicycle":
            return lambda p: S.bicycle(p, rng, True)

        def semi(p: S.Placer) -> float:
            tractor = S.truck(p, rng, tractor_only=True)
            back = S.Placer(p.b, -tractor / 2 + 1.2, 0.0, 0.0, p.inst)
            return tractor - 1.2 + S.trailer(back, rng)

        return semi

    def lane(self, path: Path, speed: float, s_lo: float, s_hi: float, kinds: tuple[str, ...],
             keep_out: tuple[float, float] | None = None) -> None:
        """Fill a lane between ``s_lo`` and ``s_hi`` with vehicles moving at ``speed``."""
        rng = self.rng
        names = [k for k, _ in TRAFFIC_MIX if k in kinds]
        prob = np.array([p for k, p in TRAFFIC_MIX if k in kinds])
        dens = self.world.preset.traffic_density
        s = max(0.0, s_lo) + float(rng.uniform(0, 15))
        while s < min(s_hi, path.length - 15):
            kind = str(rng.choice(names, p=prob / prob.sum()))
            length = self.agent(path, 0.0, speed, self.vehicle(kind))
            front = s + length
            if keep_out is not None and front > keep_out[0] and s < keep_out[1]:
                self.drop_last()
            else:
                self.s0[-1] = s + length / 2
            s = front + float(rng.uniform(6, 35)) / dens

    def build(self) -> Agents:
        """The finished :class:`Agents`."""
        return Agents(self.b.build(), np.asarray(self.owner, np.int64), self.paths,
                      np.asarray(self.s0), np.asarray(self.speed))


def populate_traffic(world: World, ego_lane: Path, ego_s0: float, ego_speed: float, duration: float,
                     kerb_use: dict[float, str]) -> Agents:
    """Moving traffic on the main road, cyclists, pedestrians, parked and queued cars."""
    rng, layout = world.rng, world.layout
    main = layout.roads[0]
    tb = TrafficBuilder(world)
    all_kinds = tuple(k for k, _ in TRAFFIC_MIX if k != "bicycle")
    travel = ego_speed * duration
    for direction in (-1.0, 1.0):  # -1: ego's direction (right-hand traffic), +1: oncoming
        for k in range(main.lanes_per_dir):
            outer = k == main.lanes_per_dir - 1
            use = kerb_use[direction]
            if outer and use == "parked":
                _parked_kerb(world, main, direction)
                continue
            kinds = NARROW[:2] if outer and use in ("cyclists", "cones") else all_kinds
            lateral = direction * main.lane_width * (k + 0.5)
            reverse = direction > 0
            path = main.path.offset(lateral, reverse=reverse)
            if direction < 0 and k == 0:
                tb.lane(ego_lane, ego_speed, ego_s0 - 100, ego_s0 + 100, kinds, (ego_s0 - 8.0, ego_s0 + 12.0))
                continue
            speed = float(rng.uniform(3, 13))
            lo, hi = ego_s0 - 100 - speed * duration, ego_s0 + travel + 100
            if reverse:
                lo, hi = path.length - (ego_s0 + travel + 100) - speed * duration, path.length - ego_s0 + 100
            tb.lane(path, speed, lo, hi, kinds)
        if kerb_use[direction] == "cyclists":
            path = main.path.offset(direction * (main.half_width - 0.45), reverse=direction > 0)
            speed = float(rng.uniform(3, 6))
            centre = ego_s0 if direction < 0 else path.length - ego_s0
            for _ in range(int(rng.integers(1, 4))):
                tb.agent(path, centre + float(rng.uniform(-50, 50)), speed, tb.vehicle("bicycle"))
    for road in layout.roads[1:]:
        _cross_street(world, road, main)
    for road in layout.roads:
        _pedestrians(tb, road, ego_lane, ego_s0, travel)
    return tb.build()


def _parked_kerb(world: World, road: Road, side: float) -> None:
    s = float(world.rng.uniform(0, 10))
    while s < road.path.length:
        if all(abs(s - c) > 20 for c in road.crossings) and world.rng.random() < 0.7:
            x, y, h = road_point(road, s, side * (road.half_width - 1.3))
            p = world.try_place(x, y, h + (math.pi if side > 0 else 0.0), 4.8, 2.0, (ROAD,), 0.1)
            if p:
                S.car(p, world.rng)
        s += float(world.rng.uniform(5.5, 9))


def _cross_street(world: World, road: Road, main: Road) -> None:
    """Parked cars along both kerbs and a short queue waiting at the junction."""
    rng = world.rng
    junction = road.crossings[0]
    clear = main.half_width + main.sidewalk + 6.0
    for side in (1.0, -1.0):
        s = float(rng.uniform(0, 6))
        while s < road.path.length:
            if abs(s - junction) > clear + 6 and rng.random() < 0.5 * world.preset.traffic_density:
                x, y, h = road_point(road, s, side * (road.half_width - 1.1))
                p = world.try_place(x, y, h + (math.pi if side > 0 else 0.0), 4.8, 2.0, (ROAD,), 0.1)
                if p:
                    S.car(p, rng)
            s += float(rng.uniform(5.5, 9))
    for direction in (-1.0, 1.0):  # queue on the lane heading into the junction
        for k in range(int(rng.integers(0, 4))):
            s = junction - direction * (clear + 3.0 + 7.0 * k)
            if 0 < s < road.path.length:
                x, y, h = road_point(road, s, direction * road.lane_width * 0.5)
                yaw = h + (0.0 if direction < 0 else math.pi)
                p = world.try_place(x, y, yaw, 4.8, 2.0, (ROAD,), 0.2)
                if p:
                    S.car(p, rng)


def _pedestrians(tb: TrafficBuilder, road: Road, ego_lane: Path, ego_s0: float, travel: float) -> None:
    rng, preset = tb.rng, tb.world.preset
    if road.sidewalk <= 0:
        return
    ego_xy = np.stack(ego_lane.pose(np.linspace(ego_s0, ego_s0 + travel, 8))[:2], axis=1)  # 8 2
    for side in (1.0, -1.0):
        inner, outer = road.half_width + 0.8, road.half_width + max(0.9, road.sidewalk - 1.0)
        s = float(rng.uniform(0, 10))
        while s < road.path.length:
            x, y, _ = road_point(road, s, side * road.half_width)
            if np.min(np.hypot(ego_xy[:, 0] - x, ego_xy[:, 1] - y)) < 70:
                lateral = side * float(rng.uniform(inner, outer))
                reverse = bool(rng.random() < 0.5)
                path = road.path.offset(lateral, reverse=reverse)
                speed = float(rng.uniform(0.8, 1.6)) if rng.random() < 0.75 else 0.0
                start = path.length - s if reverse else s
                for m in range(int(rng.integers(1, 4)) if speed > 0 else 1):
                    tb.agent(path, start - 0.8 * m, speed, lambda p: S.pedestrian(p, rng), float(FLAT_TOP[SIDEWALK]))
            s += float(rng.uniform(6, 25)) / preset.pedestrian_density
