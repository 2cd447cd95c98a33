"""Val mIoU of a scaocc checkpoint with its learnt camera offsets switched off at inference.

Usage: python experiments/diagnosis/offsets_switched_off.py CHECKPOINT DATA SPLIT OUT.json [NOISE]

Four passes over the split: as trained, without the global pose correction, without the
per-point (du, dv, dd) offsets, without both. NOISE (e.g. ``so3:3,0.15``) perturbs the handed
extrinsics with the evaluation's noise seed, as ``scaocc eval --camera-noise`` does.
"""

from __future__ import annotations

import argparse
import json

import torch
from torch import Tensor

from scaocc_core.checkpoint import load_checkpoint
from scaocc_core.data.dataset import OccDataset
from scaocc_core.data.noise import CameraNoise
from scaocc_core.model.offsets import CameraOffsets
from scaocc_core.training.evaluate import NOISE_SEED, evaluate_model
from scaocc_core.training.synthdata import cache_synthetic_frames

MODES = ("as_trained", "no_global", "no_local", "none")


def main() -> None:
    """Evaluate the four variants and write their mIoU, geometric IoU and car IoU as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("data")
    parser.add_argument("split")
    parser.add_argument("out")
    parser.add_argument("noise", nargs="?", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, cfg = load_checkpoint(args.checkpoint)
    if model.offset_head is None:
        raise SystemExit(f"{args.checkpoint} has no camera offsets")
    noise = CameraNoise.parse(args.noise) if args.noise else None
    dataset = cache_synthetic_frames(OccDataset(args.data, args.split, cfg, camera_noise=noise, noise_seed=NOISE_SEED))
    predict = model.offset_head.forward
    results = {}
    for mode in MODES:
        def switched(feat: Tensor, ego_T_cam: Tensor, mode: str = mode) -> CameraOffsets:
            o = predict(feat, ego_T_cam)
            rot, tr, local = o.rotation, o.translation, o.frustum_delta
            if mode in ("no_global", "none"):
                rot, tr = torch.zeros_like(rot), torch.zeros_like(tr)
            if mode in ("no_local", "none") and local is not None:
                local = torch.zeros_like(local)
            return CameraOffsets(rot, tr, local)

        model.offset_head.forward = switched  # type: ignore[method-assign]
        with torch.no_grad():
            summary = evaluate_model(model, dataset, torch.device("cpu"), progress=False).summary()
        results[mode] = {"miou": summary["miou"], "iou": summary["iou"], "car": summary["per_class"]["car"]}
        print(mode, results[mode], flush=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
