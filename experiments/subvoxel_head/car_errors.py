"""Where a model's car errors lie, on camera-visible voxels of the native grid.

Usage: ``python experiments/subvoxel_head/car_errors.py CHECKPOINT DATA [--split val]``. Prints
the car TP / FP / FN counts; how far (Chebyshev distance in voxels, 9 = 9 or more) each false
positive is from a true car voxel and each false negative from a predicted one; and, for the
errors that touch the other set, whether the error lies in front of it (nearer the ego),
behind it, beside it (touching in the same x-y plane) or only above or below it. Diagnosis for PLAN.md.
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F

from scaocc_core.batch import Batch
from scaocc_core.checkpoint import load_checkpoint
from scaocc_core.data.dataset import OccDataset
from scaocc_core.geometry import voxel_centres
from scaocc_core.grid import CLASS_NAMES
from scaocc_core.model.causal_occ import ModelOutput
from scaocc_core.training.evaluate import evaluate_model

CAR = CLASS_NAMES.index("car")
FAR = 9


def distance(mask: np.ndarray) -> np.ndarray:
    """Chebyshev distance (in voxels, capped at ``FAR``) of every voxel to the nearest voxel of ``mask``."""
    grown = torch.from_numpy(mask.astype(np.float32))[None, None]  # 1 1 X Y Z
    d = np.where(mask, 0, FAR)
    for k in range(1, FAR):
        grown = F.max_pool3d(grown, 3, 1, 1)
        d = np.where((grown[0, 0].numpy() > 0) & (d == FAR), k, d)
    return d


def side(errors: np.ndarray, other: np.ndarray, radius: np.ndarray) -> Counter[str]:
    """Where each voxel of ``errors`` lies relative to the ``other`` voxels touching it."""
    r = torch.from_numpy(radius).float()[None, None]  # 1 1 X Y Z
    o = torch.from_numpy(other)[None, None]
    big = torch.tensor(1e6)
    far = F.max_pool3d(torch.where(o, r, -big), (3, 3, 1), 1, (1, 1, 0))[0, 0].numpy()  # same z: farthest touching
    near = -F.max_pool3d(torch.where(o, -r, -big), (3, 3, 1), 1, (1, 1, 0))[0, 0].numpy()  # nearest touching
    in_plane = far > -1e5
    front = in_plane & (near > radius + 0.2)  # every touching voxel farther: the error is in front
    behind = in_plane & (far < radius - 0.2)
    return Counter({"front": int((errors & front).sum()), "behind": int((errors & behind).sum()),
                    "beside": int((errors & in_plane & ~front & ~behind).sum()),
                    "above/below": int((errors & ~in_plane).sum())})


def main() -> None:
    """Evaluate the checkpoint and print where its car errors lie."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("data")
    parser.add_argument("--split", default="val")
    args = parser.parse_args()
    model, cfg = load_checkpoint(args.checkpoint, "cpu")
    radius = np.linalg.norm(voxel_centres(cfg.grid).numpy()[..., :2], axis=-1)  # X Y Z: from the ego
    tp, fp_label, fp_dist, fn_dist = 0, Counter[str](), Counter[int](), Counter[int]()
    fp_side, fn_side = Counter[str](), Counter[str]()

    def count(_: int, batch: Batch, out: ModelOutput) -> None:
        nonlocal tp
        assert batch.targets.semantics is not None and batch.targets.mask_camera is not None
        label = batch.targets.semantics[0].numpy()  # X Y Z
        pred = out.logits.argmax(dim=1)[0].numpy() == CAR
        true = label == CAR
        seen = batch.targets.mask_camera[0].numpy().astype(bool)
        fp, fn = pred & ~true & seen, true & ~pred & seen
        tp += int((pred & true & seen).sum())
        fp_label.update(CLASS_NAMES[k] for k in label[fp])
        to_true, to_pred = distance(true), distance(pred)
        fp_dist.update(to_true[fp].tolist())
        fn_dist.update(to_pred[fn].tolist())
        fp_side.update(side(fp & (to_true == 1), true, radius))
        fn_side.update(side(fn & (to_pred == 1), pred, radius))

    evaluate_model(model, OccDataset(args.data, args.split, cfg), torch.device("cpu"), on_output=count, progress=False)
    n_fp, n_fn = sum(fp_dist.values()), sum(fn_dist.values())
    print(f"car TP {tp}  FP {n_fp}  FN {n_fn}  IoU {100 * tp / max(tp + n_fp + n_fn, 1):.2f} %")
    print("FP true labels:", dict(fp_label.most_common()))
    for name, dist, n in (("FP to nearest true car", fp_dist, n_fp), ("FN to nearest predicted car", fn_dist, n_fn)):
        print(f"{name}, share at 1..{FAR}+ voxels:", " ".join(f"{dist[k] / max(n, 1):.2f}" for k in range(1, FAR + 1)))
    print("touching FP, relative to the true car:", dict(fp_side))
    print("touching FN, relative to the predicted car:", dict(fn_side))


if __name__ == "__main__":
    main()
