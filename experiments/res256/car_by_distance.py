"""Car recall and precision by distance from the ego, on camera-visible voxels (native grid).

Usage: ``python experiments/res256/car_by_distance.py CHECKPOINT DATA [--split val]``; prints one
line per distance band. Throw-away diagnosis for experiments/res256 (EXPERIMENTS.md section 1).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from scaocc_core.batch import Batch
from scaocc_core.checkpoint import load_checkpoint
from scaocc_core.data.dataset import OccDataset
from scaocc_core.geometry import voxel_centres
from scaocc_core.grid import CLASS_NAMES
from scaocc_core.model.causal_occ import ModelOutput
from scaocc_core.training.evaluate import evaluate_model

CAR = CLASS_NAMES.index("car")
BANDS = (0.0, 10.0, 20.0, 30.0, 40.0)


def main() -> None:
    """Evaluate the checkpoint and print car recall / precision per distance band."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("data")
    parser.add_argument("--split", default="val")
    args = parser.parse_args()
    model, cfg = load_checkpoint(args.checkpoint, "cpu")
    xyz = voxel_centres(cfg.grid).numpy()  # X Y Z 3
    band = np.digitize(np.hypot(xyz[..., 0], xyz[..., 1]), BANDS[1:-1])  # X Y Z: 0..3
    tp, gt, pr = (np.zeros(len(BANDS) - 1) for _ in range(3))

    def count(_: int, batch: Batch, out: ModelOutput) -> None:
        assert batch.targets.semantics is not None and batch.targets.mask_camera is not None
        pred = out.logits.argmax(dim=1)[0].numpy() == CAR  # X Y Z
        true = batch.targets.semantics[0].numpy() == CAR
        seen = batch.targets.mask_camera[0].numpy().astype(bool)
        for k in range(len(BANDS) - 1):
            sel = seen & (band == k)
            tp[k] += np.sum(pred & true & sel)
            gt[k] += np.sum(true & sel)
            pr[k] += np.sum(pred & sel)

    dataset = OccDataset(args.data, args.split, cfg)
    evaluate_model(model, dataset, torch.device("cpu"), on_output=count, progress=False)
    for k in range(len(BANDS) - 1):
        print(f"{BANDS[k]:>4.0f}-{BANDS[k + 1]:<3.0f} m  car voxels {gt[k]:6.0f}  predicted {pr[k]:6.0f}  "
              f"recall {tp[k] / max(gt[k], 1):.2f}  precision {tp[k] / max(pr[k], 1):.2f}")


if __name__ == "__main__":
    main()
