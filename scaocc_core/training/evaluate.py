"""Evaluate a checkpoint on a dataset split: the Occ3D per-class IoU table and a JSON file.

The model is rebuilt from the checkpoint alone (its stored config). ``--camera-noise``
perturbs the extrinsics the model sees (``so3:1,0.05`` = 1 degree, 5 cm), never the images.

Example::

    scaocc eval --checkpoint models/scaocc_tiny.pt --data synthetic:scenes=2,frames=4,seed=7 \\
        --split all --camera-noise so3:1,0.05 --json out/eval.json
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from scaocc_core.batch import Batch
from scaocc_core.checkpoint import load_checkpoint
from scaocc_core.config import GridConfig
from scaocc_core.data.dataset import OccDataset
from scaocc_core.data.noise import CameraNoise
from scaocc_core.metrics import OccMetric
from scaocc_core.model.causal_occ import CausalOcc, ModelOutput
from scaocc_core.rayiou import RayIoU
from scaocc_core.training.distributed import DistInfo, all_reduce_sum
from scaocc_core.training.synthdata import cache_synthetic_frames

log = logging.getLogger(__name__)

#: Seed of the camera-noise draws, shared by every evaluation so models see the same cameras.
NOISE_SEED = 1234


def frame_indices(n: int, max_frames: int) -> list[int]:
    """``max_frames`` indices spread evenly over ``n`` frames (all of them if 0 or >= n)."""
    if max_frames <= 0 or max_frames >= n:
        return list(range(n))
    step = n / max_frames
    return sorted({int(i * step) for i in range(max_frames)})


def grid_note(grid: GridConfig) -> dict[str, Any]:
    """What a score was measured on: the grid, and whether it is Occ3D's native one (comparable)."""
    occ3d = GridConfig()
    same_box = np.allclose(grid.lower + grid.upper, occ3d.lower + occ3d.upper, atol=1e-4)  # grids read from messages
    native = grid.size == occ3d.size and bool(same_box)
    return {"grid": "x".join(map(str, grid.size)), "voxel_m": grid.voxel_size[0], "native_occ3d": native,
            "scored_on": "native Occ3D grid (200x200x16, 0.4 m)" if native else
            "COARSE/other grid: not comparable with Occ3D numbers"}


@torch.no_grad()
def evaluate_model(model: CausalOcc, dataset: OccDataset, device: torch.device, max_frames: int = 0,
                   info: DistInfo | None = None, progress: bool = True, desc: str = "eval",
                   rays: RayIoU | None = None,
                   on_output: Callable[[int, Batch, ModelOutput], None] | None = None) -> OccMetric:
    """Accumulate the Occ3D confusion matrix of ``model`` over (up to ``max_frames``) frames.

    Under DDP each process evaluates every ``world_size``-th frame and the confusion
    matrices are summed, so every process returns the metric of the whole set. ``rays``,
    if given, also accumulates RayIoU (on the full ground truth, as SparseOcc scores it).
    ``on_output(index, batch, output)``, if given, sees every frame this process evaluates
    with the model's full output (no second forward pass for other measures).
    """
    info = info or DistInfo(device=device)
    was_training = model.training
    model.eval()
    metric = OccMetric()
    indices = frame_indices(len(dataset), max_frames)[info.rank :: info.world_size]
    for i in tqdm(indices, desc=desc, disable=not (progress and info.is_main), leave=False):
        batch: Batch = dataset[i].to(device)
        if batch.targets.semantics is None:
            raise ValueError(f"frame {batch.tokens[0]} has no occupancy labels; cannot evaluate")
        out = model(batch.inputs)
        pred = out.logits.argmax(dim=1)  # b X Y Z
        metric.update(pred, batch.targets.semantics, batch.targets.mask_camera)
        if on_output is not None:
            on_output(i, batch, out)
        if rays is not None:
            for p, g in zip(pred.cpu().numpy(), batch.targets.semantics.cpu().numpy()):
                rays.update(p, g)
    if info.distributed:
        counts = torch.as_tensor(metric.confusion, device=device)
        frames = torch.tensor([metric.frames], device=device)
        metric.confusion = all_reduce_sum(counts, info).cpu().numpy()
        metric.frames = int(all_reduce_sum(frames, info).item())
        if rays is not None:
            for name in ("gt", "pred", "tp"):
                total = all_reduce_sum(torch.as_tensor(getattr(rays, name), device=device), info)
                setattr(rays, name, total.cpu().numpy())
    model.train(was_training)
    return metric


def evaluate_checkpoint(checkpoint: str | Path, data: str, split: str = "val", camera_noise: CameraNoise | None = None,
                        device: str = "cpu", max_frames: int = 0, progress: bool = True) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on ``data``/``split``; the summary dict (see :meth:`OccMetric.summary`)."""
    model, cfg = load_checkpoint(checkpoint, device)
    dataset = cache_synthetic_frames(OccDataset(data, split, cfg, camera_noise=camera_noise, noise_seed=NOISE_SEED))
    if len(dataset) == 0:
        raise ValueError(f"split {split!r} of {data} has no frames")
    rays = RayIoU(cfg.grid)
    metric = evaluate_model(model, dataset, torch.device(device), max_frames, progress=progress,
                            desc=f"eval {camera_noise or 'clean'}", rays=rays)
    summary = metric.summary() | rays.summary() | grid_note(cfg.grid)
    summary.update(camera_noise=None if camera_noise is None else str(camera_noise), split=split,
                   checkpoint=str(checkpoint), model=cfg.name, data=str(data), table=metric.table())
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``scaocc eval``."""
    parser.add_argument("--checkpoint", required=True, help="checkpoint written by scaocc train")
    parser.add_argument("--data", required=True, help="manifest directory or synthetic:KEY=VALUE,...")
    parser.add_argument("--split", default="val", help="split to evaluate (default: val)")
    parser.add_argument("--camera-noise", default=None, metavar="MODE:SIGMA_DEG,SIGMA_M",
                        help="perturb the extrinsics the model sees, e.g. so3:1,0.05 or elementwise:1,0.05")
    parser.add_argument("--max-frames", type=int, default=0, help="evaluate at most this many frames (0 = all)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", required=True, type=Path, help="write the metrics here")


def run(args: argparse.Namespace) -> int:
    """Run ``scaocc eval``."""
    noise = CameraNoise.parse(args.camera_noise) if args.camera_noise else None
    summary = evaluate_checkpoint(args.checkpoint, args.data, args.split, noise, args.device, args.max_frames)
    print(summary.pop("table"))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2))
    print(f"mIoU {100 * summary['miou']:.2f}, RayIoU {100 * summary['rayiou']:.2f} on {summary['frames']} frames "
          f"of {args.data} ({args.split}), scored on the {summary['scored_on']} -> {args.json}")
    return 0
