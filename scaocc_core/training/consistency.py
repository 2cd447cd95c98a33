"""2D-to-3D semantic consistency of a checkpoint, read from its causal attention maps.

For every frame and every class ``s`` present in the (camera-visible) 3D ground truth, the
causal attention map ``A_s`` (:func:`scaocc_core.causal.attention_map`: where in the images
the 3D class-``s`` features come from) is computed with the model in eval mode but with
gradients on. The score of ``s`` is the share of ``A_s``'s mass that falls on image cells
of class ``s`` (the 2D labels pooled to feature resolution); 1 = the 3D evidence for a
class comes only from pixels of that class. Per class it is averaged over frames; the
consistency is the mean over classes.

Example::

    scaocc consistency --checkpoint runs/full/final.pt --checkpoint-baseline runs/base/final.pt \\
        --data data/synth_val --max-frames 4
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from scaocc_core.causal import EPS, attention_map, causal_tap, class_targets, present_classes
from scaocc_core.checkpoint import load_checkpoint
from scaocc_core.data.dataset import OccDataset
from scaocc_core.grid import CLASS_NAMES
from scaocc_core.model.causal_occ import CausalOcc
from scaocc_core.training.evaluate import frame_indices
from scaocc_core.training.synthdata import cache_synthetic_frames


def consistency_score(model: CausalOcc, dataset: OccDataset, device: torch.device, max_frames: int = 0,
                      progress: bool = True) -> dict[str, Any]:
    """Per-class and mean share of causal attention mass on same-class image cells."""
    was_training = model.training
    model.eval()
    shares: dict[int, list[float]] = {}
    for i in tqdm(frame_indices(len(dataset), max_frames), desc="consistency", disable=not progress, leave=False):
        batch = dataset[i].to(device)
        t = batch.targets
        if t.semantics is None or t.sem2d is None:
            raise ValueError(f"frame {batch.tokens[0]} lacks 3D or 2D semantic labels; consistency needs both")
        with torch.enable_grad():
            out = model(batch.inputs)
            tap = causal_tap(out, model.cfg.loss.causal_feature)
            for cls in present_classes(t.semantics, t.mask_camera):
                att = attention_map(tap, out.feat2d, t.semantics, cls, t.mask_camera).detach()  # b n h w
                target, _ = class_targets(t.sem2d, cls, (att.shape[-2], att.shape[-1]))  # b n h w
                mass = float(att.sum())
                if mass > EPS:
                    shares.setdefault(cls, []).append(float((att * target).sum()) / mass)
    model.train(was_training)
    per_class = {CLASS_NAMES[c]: float(np.mean(v)) for c, v in sorted(shares.items())}
    return {"mean": float(np.mean(list(per_class.values()))) if per_class else 0.0, "per_class": per_class}


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """Classes as rows, one column per model."""
    names = list(results)
    w = max(len(n) for n in names) + 2
    classes = sorted({c for r in results.values() for c in r["per_class"]}, key=CLASS_NAMES.index)
    lines = [f"{'class':<22}" + "".join(f"{n:>{w}}" for n in names)]
    for c in classes:
        cells = [results[n]["per_class"].get(c) for n in names]
        lines.append(f"{c:<22}" + "".join(f"{'-' if v is None else f'{100 * v:.1f}':>{w}}" for v in cells))
    lines.append(f"{'mean':<22}" + "".join(f"{100 * results[n]['mean']:>{w}.1f}" for n in names))
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``scaocc consistency``."""
    parser.add_argument("--checkpoint", required=True, help="checkpoint of the model to score")
    parser.add_argument("--checkpoint-baseline", default=None, help="optional second checkpoint scored alongside")
    parser.add_argument("--data", required=True, help="manifest directory or synthetic:KEY=VALUE,... (needs sem2d)")
    parser.add_argument("--split", default="val", help="split to use (default: val)")
    parser.add_argument("--max-frames", type=int, default=4, help="frames to use (0 = all; each is costly)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", type=Path, default=None, help="also write the scores here")


def run(args: argparse.Namespace) -> int:
    """Run ``scaocc consistency``."""
    results: dict[str, dict[str, Any]] = {}
    checkpoints = [("baseline", args.checkpoint_baseline)] if args.checkpoint_baseline else []
    for label, path in [*checkpoints, ("model", args.checkpoint)]:
        model, cfg = load_checkpoint(path, args.device)
        dataset = cache_synthetic_frames(OccDataset(args.data, args.split, cfg))
        results[f"{label} ({cfg.name})"] = consistency_score(model, dataset, torch.device(args.device),
                                                                 args.max_frames)
    print("share of causal attention on same-class pixels (%)")
    print(format_table(results))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0
