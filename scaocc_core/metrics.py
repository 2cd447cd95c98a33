"""Occ3D metrics accumulated in a confusion matrix over a whole split.

Protocol: only voxels with ``mask_camera`` true count; IoU_c = TP / (TP + FP + FN);
mIoU averages classes 0..16 (free excluded), skipping classes absent from both
prediction and ground truth over the whole split (0/0, as Occ3D's ``nanmean``);
mIoU_D averages the dynamic classes; the geometric IoU scores occupied (label != free).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from scaocc_core.grid import CLASS_NAMES, DYNAMIC_CLASSES, FREE, NUM_CLASSES


class OccMetric:
    """Accumulates a ``K x K`` confusion matrix (rows = ground truth, cols = prediction)."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        self.num_classes = num_classes
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.frames = 0

    def update(self, pred: Tensor | np.ndarray, gt: Tensor | np.ndarray, mask: Tensor | np.ndarray | None) -> None:
        """Add one batch: ``pred``, ``gt`` (... X Y Z ints), ``mask`` (same shape, bool)."""
        p = torch.as_tensor(pred).long().flatten()
        g = torch.as_tensor(gt).long().flatten()
        if p.shape != g.shape:
            raise ValueError(f"prediction {tuple(p.shape)} and ground truth {tuple(g.shape)} differ")
        if mask is not None:
            m = torch.as_tensor(mask).bool().flatten()
            p, g = p[m], g[m]
        K = self.num_classes
        counts = torch.bincount(g * K + p, minlength=K * K).view(K, K)
        self.confusion += counts.cpu().numpy()
        self.frames += int(torch.as_tensor(pred).shape[0]) if torch.as_tensor(pred).dim() == 4 else 1

    def merge(self, other: OccMetric) -> None:
        """Add another metric's counts (e.g. from another process)."""
        self.confusion += other.confusion
        self.frames += other.frames

    def iou_per_class(self) -> np.ndarray:
        """IoU per class; NaN where the class is absent from both prediction and ground truth."""
        tp = np.diag(self.confusion).astype(np.float64)
        denom = self.confusion.sum(0) + self.confusion.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)

    def geometric_iou(self) -> float:
        """IoU of occupied (non-free) versus free."""
        occ_gt = np.arange(self.num_classes) != FREE
        c = self.confusion
        tp = c[np.ix_(occ_gt, occ_gt)].sum()
        fp = c[np.ix_(~occ_gt, occ_gt)].sum()
        fn = c[np.ix_(occ_gt, ~occ_gt)].sum()
        return float(tp / max(tp + fp + fn, 1))

    def summary(self) -> dict[str, Any]:
        """``miou``, ``miou_d``, ``iou`` (geometric), ``per_class`` (name: IoU or None), ``frames``."""
        ious = self.iou_per_class()
        semantic = ious[:FREE]
        dyn = ious[list(DYNAMIC_CLASSES)]
        return {
            "miou": _nanmean(semantic),
            "miou_d": _nanmean(dyn),
            "iou": self.geometric_iou(),
            "per_class": {CLASS_NAMES[i]: (None if np.isnan(v) else float(v)) for i, v in enumerate(ious)},
            "frames": self.frames,
        }

    def table(self) -> str:
        """A human-readable per-class table (percent)."""
        s = self.summary()
        lines = [f"{'class':<22}{'IoU %':>8}"]
        for name, v in s["per_class"].items():
            lines.append(f"{name:<22}{'-' if v is None else f'{100 * v:.2f}':>8}")
        lines.append(f"{'mIoU (0..16)':<22}{100 * s['miou']:>8.2f}")
        lines.append(f"{'mIoU_D':<22}{100 * s['miou_d']:>8.2f}")
        lines.append(f"{'IoU (geometry)':<22}{100 * s['iou']:>8.2f}")
        return "\n".join(lines)


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else 0.0
