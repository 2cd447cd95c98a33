"""Render a synthetic driving dataset: six-camera images with semantic and depth labels,
Occ3D voxel labels (semantics, mask_camera, mask_lidar) and a manifest.

Example: scaocc synth --out data/synth --scenes 10 --frames 10 --seed 0 --resolution 128x352
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scaocc_core.data.synthetic.spec import PRESETS, SynthSpec
from scaocc_core.data.synthetic.writer import write_dataset
from scaocc_core.grid import CLASS_NAMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``scaocc synth``."""
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--scenes", type=int, default=8, help="number of scenes (sequences)")
    parser.add_argument("--frames", type=int, default=10, help="frames per scene")
    parser.add_argument("--seed", type=int, default=0, help="world seed (same seed, same bytes)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default", help="difficulty")
    parser.add_argument("--resolution", default="128x352", help="render size HxW (default 128x352)")
    parser.add_argument("--rate-hz", type=float, default=2.0, help="frame rate (nuScenes keyframes: 2)")
    parser.add_argument("--workers", type=int, default=1,
                        help="render in N processes (same bytes; 1 = this process with numba threads)")
    parser.add_argument("--val-scenes", type=int, default=None,
                        help="last K scenes form the val split (default: a fifth, at least 1 if scenes > 1)")


def parse_resolution(text: str) -> tuple[int, int]:
    """``"128x352"`` -> ``(128, 352)``; raises ``ValueError`` with a readable message."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"--resolution must look like HxW (e.g. 128x352), got {text!r}")
    return int(parts[0]), int(parts[1])


def format_histogram(histogram: dict[str, int]) -> str:
    """A table of voxel counts and shares per class (``free`` last)."""
    total = max(1, sum(histogram.values()))
    solid = max(1, total - histogram.get("free", 0))
    lines = [f"{'class':<22}{'voxels':>14}{'% of occupied':>16}"]
    for name in CLASS_NAMES:
        n = histogram.get(name, 0)
        share = "" if name == "free" else f"{100.0 * n / solid:15.3f}%"
        lines.append(f"{name:<22}{n:>14,}{share:>16}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Render and write the dataset; print the class histogram."""
    try:
        height, width = parse_resolution(args.resolution)
        val = args.val_scenes if args.val_scenes is not None else (max(1, args.scenes // 5) if args.scenes > 1 else 0)
        spec = SynthSpec(seed=args.seed, scenes=args.scenes, frames=args.frames, preset=args.preset,
                         height=height, width=width, rate_hz=args.rate_hz)
        manifest = write_dataset(args.out, spec, val, workers=args.workers)
    except (ValueError, OSError) as exc:
        print(f"scaocc synth: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(manifest.frames)} frames ({len(manifest.splits['train'])} train, "
          f"{len(manifest.splits['val'])} val) to {args.out / 'manifest.json'}")
    print(format_histogram(manifest.extra["class_histogram"]))
    return 0
