"""Synthetic world speed: rendering (6 cameras), GT voxelisation and visibility masks per
frame, at 128x352 and 256x704, serial and numba-parallel, against a 0.46 s training step.

Prints one row per stage with the median wall-clock and process-CPU milliseconds per frame and
both as a fraction of the reference step (the issue asks for under 0.10 of it). Serial is what
DataLoader workers run; on a loaded machine wall time is inflated, CPU time is the fairer number.

    .venv/bin/python bench/render_speed.py [--frames 6] [--step 0.46]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np

from scaocc_core.data.synthetic import frame as F
from scaocc_core.data.synthetic.scene import VIEW_RANGE, get_scene
from scaocc_core.data.synthetic.spec import SynthSpec
from scaocc_core.data.synthetic.voxelize import camera_mask, lidar_mask, voxelize


def median_ms(fn: Callable[[int], object], frames: int) -> tuple[float, float]:
    """Median wall-clock and process-CPU milliseconds of ``fn(i)`` over ``frames`` calls."""
    fn(0)  # numba warm-up / cache load
    wall, cpu = [], []
    for i in range(frames):
        t0, c0 = time.perf_counter(), time.process_time()
        fn(i)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return 1000.0 * float(np.median(wall)), 1000.0 * float(np.median(cpu))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--step", type=float, default=0.46, help="reference training step in seconds")
    args = parser.parse_args()
    base = SynthSpec(seed=0, scenes=1, frames=max(2, args.frames))
    t0 = time.perf_counter()
    scene = get_scene(base.seed, 0, base.preset, base.frames, base.rate_hz)
    gen_ms = 1000.0 * (time.perf_counter() - t0)

    def setup(i: int) -> tuple[float, float, float, object]:
        t = i / base.rate_hz
        x, y, yaw = scene.ego_pose(t)
        return x, y, yaw, scene.prims_near(t, x, y, VIEW_RANGE + 10.0)

    rows: list[tuple[str, tuple[float, float]]] = []
    for h, w in ((128, 352), (256, 704)):
        rig = SynthSpec(height=h, width=w).camera_rig()
        K = np.stack([c.K for c in rig.cameras])
        E = np.stack([c.ego_T_cam for c in rig.cameras])
        for parallel in (True, False):
            F.PARALLEL = parallel

            def render(i: int, h: int = h, w: int = w, K: np.ndarray = K, E: np.ndarray = E) -> object:
                x, y, yaw, prims = setup(i)
                return F.render_images(scene, prims, F.planar_transform(x, y, yaw) @ E, K, h, w,  # type: ignore[arg-type]
                                       (x, y), 1)

            rows.append((f"render 6 cams {h}x{w} ({'parallel' if parallel else 'serial'})",
                         median_ms(render, args.frames)))
        sem = F.render_frame(SynthSpec(seed=0, scenes=1, frames=2, height=h, width=w), 0, 0).semantics

        def cam_mask(i: int, sem: np.ndarray = sem, K: np.ndarray = K, E: np.ndarray = E, h: int = h,
                     w: int = w) -> object:
            return camera_mask(sem, base.grid, K, E, h, w)

        rows.append((f"mask_camera {h}x{w} rays", median_ms(cam_mask, args.frames)))

    def vox(i: int) -> object:
        x, y, yaw, prims = setup(i)
        c, s = math.cos(yaw), math.sin(yaw)
        return voxelize(prims.transformed(c, -s, -(c * x + s * y), s * x - c * y),  # type: ignore[attr-defined]
                        scene.layout, (x, y, yaw), base.grid)

    rows.append(("GT semantics (voxelise)", median_ms(vox, args.frames)))
    gt = vox(0)
    rows.append(("mask_lidar", median_ms(lambda i: lidar_mask(gt, base.grid), args.frames)))  # type: ignore[arg-type]
    for parallel in (True, False):
        F.PARALLEL = parallel
        rows.append((f"render_frame 128x352 ({'parallel' if parallel else 'serial'}, all of it)",
                     median_ms(lambda i: F.render_frame(base, 0, i % base.frames), args.frames)))
    F.PARALLEL = False
    print(f"scene generation (once per scene, cached): {gen_ms:.0f} ms")
    print(f"{'stage (median per frame)':<46}{'wall ms':>9}{'cpu ms':>9}{'wall/step':>11}{'cpu/step':>10}")
    step_ms = 1000.0 * args.step
    for name, (wall, cpu) in rows:
        print(f"{name:<46}{wall:9.1f}{cpu:9.1f}{wall / step_ms:11.3f}{cpu / step_ms:10.3f}")
    wall, cpu = rows[-1][1]
    print(f"one serial 128x352 frame costs {cpu:.0f} ms CPU = {cpu / step_ms:.1%} of the {args.step} s reference "
          f"training step ({wall / step_ms:.1%} by wall clock; target < 10%)")
    print("x/step = time / reference training step; cpu ms sums all threads (on a busy machine it is the better "
          "estimate of the work)")

if __name__ == "__main__":
    main()
