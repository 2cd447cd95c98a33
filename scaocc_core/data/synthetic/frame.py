"""``render_frame``: one frame of one scene, rendered and labelled (a pure function)."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from scaocc_core.data.synthetic.layout import FLAT_MAX, FLAT_TOP, RES
from scaocc_core.data.synthetic.prims import Prims
from scaocc_core.data.synthetic.raycast import build_buckets, footprint_radius, rising_tops
from scaocc_core.data.synthetic.scene import VIEW_RANGE, Scene, get_scene
from scaocc_core.data.synthetic.shade import render_parallel, render_serial
from scaocc_core.data.synthetic.spec import SynthFrame, SynthSpec, frame_token, scene_name
from scaocc_core.data.synthetic.voxelize import camera_mask, lidar_mask, voxelize

BUCKET = 4.0  # metres per bucket-grid cell


def planar_transform(x: float, y: float, yaw: float) -> np.ndarray:
    """4x4 ``global_T_ego`` of an ego on flat ground at ``(x, y)`` heading ``yaw``."""
    T = np.eye(4)
    c, s = math.cos(yaw), math.sin(yaw)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:2, 3] = (x, y)
    return T


def camera_rays(K: np.ndarray, global_T_cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """Global ray directions ``H W 3`` through pixel centres, scaled to unit optical-axis length."""
    cam = _pixel_rays(np.asarray(K, np.float64).tobytes(), height, width)  # H W 3, z component is 1
    return cam @ global_T_cam[:3, :3].T


@lru_cache(maxsize=32)
def _pixel_rays(K_bytes: bytes, height: int, width: int) -> np.ndarray:
    """Camera-frame rays ``H W 3`` (read-only) through the pixel centres of ``K`` (3 3 float64 bytes)."""
    K = np.frombuffer(K_bytes, np.float64).reshape(3, 3)
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    pix = np.stack([u, v, np.ones_like(u)], axis=-1)  # H W 3
    cam = pix @ np.linalg.inv(K).T
    cam.setflags(write=False)
    return cam


def render_images(scene: Scene, prims: Prims, global_T_cams: np.ndarray, K: np.ndarray, height: int, width: int,
                  ego_xy: tuple[float, float], seed: int, parallel: bool = False,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB (n H W 3 uint8), semantics (n H W uint8) and depth (n H W float32) of ``n`` cameras.

    ``parallel`` spreads image rows over numba's threads (same bytes); leave it off in worker
    processes that already run one per core.
    """
    n = len(K)
    reach = VIEW_RANGE + 10.0
    nb = int(math.ceil(2 * reach / BUCKET))
    bx0, by0 = ego_xy[0] - reach, ego_xy[1] - reach
    start, items, cell_top = build_buckets(prims.xy_bounds(), prims.geo[:, 3].copy(), bx0, by0, BUCKET, nb)
    rays = np.stack([camera_rays(K[c], global_T_cams[c], height, width) for c in range(n)])  # n H W 3
    origins = np.ascontiguousarray(global_T_cams[:, :3, 3])
    rgb = np.empty((n, height, width, 3), np.uint8)
    sem = np.empty((n, height, width), np.uint8)
    depth = np.empty((n, height, width), np.float32)
    kernel = render_parallel if parallel else render_serial
    layout = scene.layout
    objects = (prims.kind, prims.geo, prims.color, prims.inst, prims.pattern, prims.cls,
               footprint_radius(prims.kind, prims.geo))
    ztop = float(prims.geo[:, 3].max(initial=0.0))
    buckets = (start, items, cell_top, rising_tops(cell_top, nb), np.array([ztop, bx0, by0, BUCKET, nb], np.float64))
    ground = (layout.raster, np.array([layout.origin[0], layout.origin[1], RES, FLAT_MAX], np.float64), FLAT_TOP,
              scene.flat_color)
    kernel(origins, rays, objects, buckets, ground, scene.lighting.pack(), seed, rgb, sem, depth)
    return rgb, sem, depth


def render_frame(spec: SynthSpec, scene_index: int, frame_index: int, parallel: bool = False) -> SynthFrame:
    """Render frame ``frame_index`` of scene ``scene_index``: images, 2D truth, Occ3D truth.

    A pure function of its arguments; ``parallel`` (numba threads for the images and the
    visibility masks) changes the speed only, never the bytes.
    """
    if not 0 <= scene_index < spec.scenes:
        raise IndexError(f"scene_index {scene_index} outside 0..{spec.scenes - 1}")
    if not 0 <= frame_index < spec.frames:
        raise IndexError(f"frame_index {frame_index} outside 0..{spec.frames - 1}")
    scene = get_scene(spec.seed, scene_index, spec.preset, spec.frames, spec.rate_hz)
    t = frame_index / spec.rate_hz
    x, y, yaw = scene.ego_pose(t)
    global_T_ego = planar_transform(x, y, yaw)
    rig = spec.camera_rig()
    K = np.stack([c.K for c in rig.cameras])  # n 3 3
    ego_T_cam = np.stack([c.ego_T_cam for c in rig.cameras])  # n 4 4
    prims = scene.prims_near(t, x, y, VIEW_RANGE + 10.0)
    seed = (scene.texture_seed + 7919 * frame_index) % (1 << 30)
    images, sem2d, depth2d = render_images(scene, prims, global_T_ego @ ego_T_cam, K, spec.height, spec.width,
                                           (x, y), seed, parallel)
    c, s = math.cos(yaw), math.sin(yaw)
    prims_ego = prims.transformed(c, -s, -(c * x + s * y), s * x - c * y)  # rotate by -yaw after shifting
    semantics = voxelize(prims_ego, scene.layout, (x, y, yaw), spec.grid)
    return SynthFrame(
        token=frame_token(spec.seed, scene_index, frame_index),
        scene=scene_name(spec.seed, scene_index),
        timestamp=float(t),
        global_T_ego=global_T_ego,
        camera_names=rig.names,
        intrinsics=K,
        ego_T_cam=ego_T_cam,
        images=images,
        sem2d=sem2d,
        depth2d=depth2d,
        semantics=semantics,
        mask_camera=camera_mask(semantics, spec.grid, K, ego_T_cam, spec.height, spec.width, parallel=parallel),
        mask_lidar=lidar_mask(semantics, spec.grid, parallel),
    )
