"""One synthetic scene: layout, static objects, road users, lighting and the ego route.

``get_scene`` caches generated scenes per process (keyed by everything that shapes them),
so ``render_frame`` stays a pure function that is cheap to call repeatedly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from scaocc_core.data.synthetic.layout import OTHER_FLAT, ROAD, SIDEWALK, TERRAIN, Layout, Path, make_layout
from scaocc_core.data.synthetic.placement import World
from scaocc_core.data.synthetic.prims import PrimBuilder, Prims
from scaocc_core.data.synthetic.spec import PRESETS, Preset
from scaocc_core.data.synthetic.traffic import Agents, populate_traffic

VIEW_RANGE = 100.0  # metres of horizontal distance rendered before the haze becomes sky


@dataclass(frozen=True)
class Lighting:
    """Sun, sky and camera response of one scene."""

    sun: tuple[float, float, float]  # unit vector towards the sun (global frame)
    sun_color: tuple[float, float, float]
    sky_color: tuple[float, float, float]  # ambient sky light
    zenith: tuple[float, float, float]
    horizon: tuple[float, float, float]
    exposure: float
    texture_noise: float
    pixel_noise: float
    shadows: bool

    def pack(self) -> np.ndarray:
        """The 20-float layout read by the shader (documented in ``shade.py``)."""
        return np.array([*self.sun, *self.sun_color, *self.sky_color, *self.zenith, *self.horizon, self.exposure,
                         self.texture_noise, self.pixel_noise, float(self.shadows), VIEW_RANGE], np.float64)


def make_lighting(rng: np.random.Generator, preset: Preset) -> Lighting:
    """Sun direction and colours; ``preset.lighting_variation`` widens the ranges."""
    var = preset.lighting_variation
    elev = math.radians(float(rng.uniform(55 - 45 * var, 65)))
    azim = float(rng.uniform(0, 2 * math.pi))
    sun = (math.cos(elev) * math.cos(azim), math.cos(elev) * math.sin(azim), math.sin(elev))
    warmth = float(rng.uniform(0, var)) * (1.0 - math.sin(elev))
    sun_color = (3.0, 2.85 - 0.6 * warmth, 2.6 - 1.2 * warmth)
    overcast = float(rng.uniform(0, 0.6 * var))
    sun_color = tuple(c * (1 - overcast) for c in sun_color)  # type: ignore[assignment]
    sky_color = (0.55 + 0.4 * overcast, 0.65 + 0.3 * overcast, 0.85 + 0.1 * overcast)
    zenith = (0.18 + 0.3 * overcast, 0.32 + 0.25 * overcast, 0.7 - 0.1 * overcast)
    horizon = (0.65 + 0.1 * warmth, 0.7, 0.78 - 0.1 * warmth)
    exposure = float(np.exp(rng.uniform(-0.35, 0.35) * var)) * 0.9
    return Lighting(sun, sun_color, sky_color, zenith, horizon, exposure,  # type: ignore[arg-type]
                    preset.texture_noise, preset.pixel_noise, preset.shadows)


def flat_colors(rng: np.random.Generator) -> np.ndarray:
    """Albedo of each flat class (rows 11..14) and of white/yellow paint (rows 16, 17): ``18 3``."""
    table = np.zeros((18, 3), np.float64)
    table[ROAD] = np.array([0.075, 0.075, 0.08]) * rng.uniform(0.8, 1.3)
    table[OTHER_FLAT] = np.array([0.22, 0.2, 0.17]) * rng.uniform(0.8, 1.2, size=3)
    table[SIDEWALK] = np.array([0.33, 0.32, 0.3]) * rng.uniform(0.8, 1.15)
    table[TERRAIN] = np.array([0.07, 0.12, 0.035]) * rng.uniform(0.8, 1.2, size=3)
    table[16] = (0.6, 0.6, 0.6)
    table[17] = (0.55, 0.4, 0.05)
    return table


@dataclass
class Scene:
    """Everything needed to render any frame of one sequence."""

    layout: Layout
    static: Prims  # global frame
    static_bounds: np.ndarray  # P 4 xy footprints
    agents: Agents
    ego_lane: Path
    ego_s0: float
    ego_speed: float
    lighting: Lighting
    flat_color: np.ndarray  # 18 3
    texture_seed: int

    def ego_pose(self, t: float) -> tuple[float, float, float]:
        """Global ``(x, y, yaw)`` of the ego (rear axle on the ground) at time ``t``."""
        x, y, yaw = self.ego_lane.pose(self.ego_s0 + self.ego_speed * t)
        return float(x), float(y), float(yaw)

    def prims_near(self, t: float, x: float, y: float, radius: float) -> Prims:
        """Static and moving primitives whose footprint comes within ``radius`` (square) of ``(x, y)``."""
        near = ((self.static_bounds[:, 1] > x - radius) & (self.static_bounds[:, 0] < x + radius)
                & (self.static_bounds[:, 3] > y - radius) & (self.static_bounds[:, 2] < y + radius))
        moving = self.agents.prims_at(t)
        mb = moving.xy_bounds()
        near_m = (mb[:, 1] > x - radius) & (mb[:, 0] < x + radius) & (mb[:, 3] > y - radius) & (mb[:, 2] < y + radius)
        return Prims.concat([self.static.take(near), moving.take(near_m)])


def generate_scene(seed: int, scene_index: int, preset_name: str, frames: int, rate_hz: float) -> Scene:
    """Build scene ``scene_index`` of the world ``seed`` (deterministic)."""
    preset = PRESETS[preset_name]
    rng = np.random.default_rng([seed, scene_index, 7919])
    duration = (frames - 1) / rate_hz
    ego_speed = float(rng.uniform(2.5, 10.0))
    layout = make_layout(rng, ego_speed * duration)
    main = layout.roads[0]
    ego_lane = main.path.offset(-0.5 * main.lane_width)
    uses = ["parked", "cyclists", "cones", "none"] if main.lanes_per_dir > 1 else ["cyclists", "cones", "none"]
    kerb_use = {d: str(rng.choice(uses)) for d in (-1.0, 1.0)}
    if scene_index % 2 == 0 and "cones" not in kerb_use.values():
        kerb_use[float(rng.choice([-1.0, 1.0]))] = "cones"  # road works in every other scene
    b = PrimBuilder()
    world = World(rng, layout, preset, b)
    world.populate(kerb_use)
    agents = populate_traffic(world, ego_lane, layout.ego_s0, ego_speed, duration, kerb_use)
    static = b.build()
    return Scene(layout, static, static.xy_bounds(), agents, ego_lane, layout.ego_s0, ego_speed,
                 make_lighting(rng, preset), flat_colors(rng), int(rng.integers(1 << 30)))


@lru_cache(maxsize=4)
def get_scene(seed: int, scene_index: int, preset_name: str, frames: int, rate_hz: float) -> Scene:
    """Cached :func:`generate_scene`."""
    return generate_scene(seed, scene_index, preset_name, frames, rate_hz)
