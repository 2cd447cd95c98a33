"""Synthetic world speed: rendering (6 cameras), GT voxelisation and visibility masks per
frame, at 128x352 and 256x704, serial and numba-parallel, against a training step measured
in the same run.

The reference step is the laptop training step that on-the-fly data feeds: ``scaocc_tiny``
(causal loss on) with ``config/train/cpu.yaml`` (batch 1, augmentation), forward + backward +
AdamW on a 128x352 synthetic frame, median of ``--steps``. Beside it the whole on-the-fly item
(``OccDataset`` over a ``synthetic:`` source: render, labels, masks, augmentation, tensors) on
its first visit and on a later one (``scaocc train`` keeps rendered frames in memory).

Prints one row per stage with the median wall-clock and process-CPU milliseconds per frame and
both as a fraction of the step (the issue asks for under 0.10 of it). Serial is what
DataLoader workers run; on a loaded machine wall time is inflated, CPU time is the fairer number.

    .venv/bin/python bench/render_speed.py [--frames 6] [--steps 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

from scaocc_core.config import load_config
from scaocc_core.data.augment import AugmentConfig
from scaocc_core.data.dataset import OccDataset
from scaocc_core.data.synthetic import frame as F
from scaocc_core.data.synthetic.scene import VIEW_RANGE, get_scene
from scaocc_core.data.synthetic.spec import SynthSpec
from scaocc_core.data.synthetic.voxelize import camera_mask, lidar_mask, voxelize
from scaocc_core.losses import OccupancyLoss
from scaocc_core.model.causal_occ import CausalOcc
from scaocc_core.training.config import load_train_config
from scaocc_core.training.engine import TrainStep, causal_generator
from scaocc_core.training.synthdata import cache_synthetic_frames

ROOT = Path(__file__).resolve().parents[1]


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


def whole_frame(spec: SynthSpec, parallel: bool, i: int) -> object:
    """Frame ``i`` (modulo the scene length) of scene 0, everything included."""
    return F.render_frame(spec, 0, i % spec.frames, parallel)


def training_step(frames: int, steps: int) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
    """(wall ms, cpu ms) of: one laptop training step, an on-the-fly item first visit, a cached visit."""
    model_cfg = load_config(ROOT / "config/model/scaocc_tiny.yaml")
    train_cfg = load_train_config(ROOT / "config/train/cpu.yaml")
    source = f"synthetic:scenes=2,frames={max(frames, steps + 1)},seed=3,res=128x352,val_scenes=1"
    dataset = cache_synthetic_frames(OccDataset(source, "train", model_cfg, augment=AugmentConfig(), seed=0))
    first = median_ms(lambda i: dataset[i + 1], frames - 1)  # median_ms warms up on item 0
    cached = median_ms(lambda i: dataset[i + 1], frames - 1)
    torch.manual_seed(0)
    model = CausalOcc(model_cfg).train()
    runner = TrainStep(model, OccupancyLoss(model_cfg.loss, model_cfg.depth, torch.ones(18)), None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)

    def step(i: int) -> None:
        total, _ = runner(dataset[i % len(dataset)], causal_generator(0, 0, i))
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()

    return median_ms(step, steps), first, cached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--steps", type=int, default=4, help="timed training steps of the reference")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the training step")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    (step_ms, step_cpu), first, cached = training_step(args.frames, args.steps)
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

            def render(i: int, h: int = h, w: int = w, K: np.ndarray = K, E: np.ndarray = E,
                       parallel: bool = parallel) -> object:
                x, y, yaw, prims = setup(i)
                return F.render_images(scene, prims, F.planar_transform(x, y, yaw) @ E, K, h, w,  # type: ignore[arg-type]
                                       (x, y), 1, parallel)

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
        rows.append((f"render_frame 128x352 ({'parallel' if parallel else 'serial'}, all of it)",
                     median_ms(partial(whole_frame, base, parallel), args.frames)))
    rows += [("OccDataset item, first visit (in-process)", first), ("OccDataset item, cached (later epochs)", cached)]
    print(f"scene generation (once per scene, cached): {gen_ms:.0f} ms")
    print(f"reference: scaocc_tiny training step (cpu.yaml, causal loss, {args.threads} threads): "
          f"{step_ms:.0f} ms wall, {step_cpu:.0f} ms CPU")
    print(f"{'stage (median per frame)':<46}{'wall ms':>9}{'cpu ms':>9}{'wall/step':>11}{'cpu/step':>10}")
    for name, (wall, cpu) in rows:
        print(f"{name:<46}{wall:9.1f}{cpu:9.1f}{wall / step_ms:11.3f}{cpu / step_cpu:10.3f}")
    wall, cpu = first
    print(f"an on-the-fly training item costs {cpu:.0f} ms CPU = {cpu / step_cpu:.1%} of the training step's CPU time "
          f"and {wall / step_ms:.1%} of its wall time when rendered inline (num_workers 0), on its first visit; "
          f"later visits {cached[0] / step_ms:.1%} (target < 10%)")
    print("wall/step = stage wall / step wall; cpu/step = stage CPU / step CPU (all threads; on a busy machine "
          "CPU time is the better estimate of the work)")


if __name__ == "__main__":
    main()
