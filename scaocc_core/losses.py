"""Training losses. Every loss returns ``(total, {name: value})``.

* class-balanced cross-entropy over camera-visible voxels (weights from class frequencies);
* Lovasz-softmax over the same voxels;
* BEVDet-style depth loss (binary cross-entropy against one-hot LiDAR/GT depth bins);
* the semantic causal loss (:mod:`scaocc_core.causal`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from scaocc_core.batch import Targets
from scaocc_core.causal import causal_loss, causal_tap
from scaocc_core.config import DepthConfig, LossConfig
from scaocc_core.model.causal_occ import ModelOutput


def class_weights(frequencies: np.ndarray | Tensor) -> Tensor:
    """Occ3D-style balancing weights ``1 / log(1.2 + p_c)`` from class voxel counts.

    Rare classes get up to ~5.5x the weight of a class that fills everything; classes never
    seen get the maximum weight.
    """
    f = torch.as_tensor(np.asarray(frequencies, dtype=np.float64))
    p = f / f.sum().clamp(min=1)
    return (1.0 / torch.log(1.2 + p)).float()


def lovasz_softmax(probs: Tensor, labels: Tensor) -> Tensor:
    """Lovasz-softmax over present classes. ``probs`` P K (softmax), ``labels`` P.

    The present classes in one column-wise sort (the per-class loop,
    :func:`lovasz_softmax_reference`, sorts and slices once per class and is several times
    slower on CPU; sorting absent classes too costs up to 2x more); equal values.
    """
    present = torch.unique(labels)  # only present classes count: sort only their columns
    if present.numel() == 0:
        return probs.sum() * 0.0
    fg = (labels[None, :] == present[:, None]).to(probs.dtype)  # K' P
    errors = (fg - probs.t()[present]).abs()  # K' P
    errors_sorted, perm = torch.sort(errors, dim=1, descending=True)  # per class
    fg_sorted = fg.gather(1, perm)
    gts = fg_sorted.sum(1, keepdim=True)
    jaccard = 1.0 - (gts - fg_sorted.cumsum(1)) / (gts + (1 - fg_sorted).cumsum(1))
    jaccard = torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], dim=1)  # Lovasz extension gradient
    return (errors_sorted * jaccard).sum(1).mean()


def lovasz_softmax_reference(probs: Tensor, labels: Tensor) -> Tensor:
    """Per-class loop form of :func:`lovasz_softmax` (the reference it is tested against)."""
    losses = []
    for c in range(probs.shape[1]):
        fg = (labels == c).to(probs.dtype)
        if fg.sum() == 0:
            continue
        errors = (fg - probs[:, c]).abs()
        errors_sorted, perm = torch.sort(errors, descending=True)
        fg_sorted = fg[perm]
        gts = fg_sorted.sum()
        intersection = gts - fg_sorted.cumsum(0)
        union = gts + (1 - fg_sorted).cumsum(0)
        jaccard = 1.0 - intersection / union
        jaccard = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])  # Lovasz extension gradient
        losses.append(torch.dot(errors_sorted, jaccard))
    if not losses:
        return probs.sum() * 0.0
    return torch.stack(losses).mean()


def depth_targets(depth2d: Tensor, feat_hw: tuple[int, int], cfg: DepthConfig) -> tuple[Tensor, Tensor]:
    """Per feature cell: the nearest valid depth's bin (b n h w long) and validity (BEVDet)."""
    b, n, H, W = depth2d.shape
    h, w = feat_hw
    d = depth2d.view(b, n, h, H // h, w, W // w).permute(0, 1, 2, 4, 3, 5).flatten(-2)  # b n h w s*s
    d = torch.where(d > 0, d, torch.full_like(d, math.inf)).amin(-1)
    bins = torch.floor((d - cfg.d_min) / cfg.d_step)
    valid = torch.isfinite(d) & (bins >= 0) & (bins < cfg.num_bins)
    return torch.where(valid, bins, torch.zeros_like(bins)).long(), valid


def depth_loss(depth: Tensor, depth2d: Tensor, cfg: DepthConfig) -> Tensor:
    """BCE between the (group-averaged) depth distribution and one-hot depth bins.

    Summed over the ``D`` bins and averaged over the supervised cells, as BEVDepth
    normalises it. (A mean over bins as well divides the gradient by ``D``: at weight 1
    with 44 bins it left the depth head of the tiny models near uniform, EXPERIMENTS.md.)
    """
    prob = depth.mean(dim=2)  # b n D h w
    bins, valid = depth_targets(depth2d, (prob.shape[-2], prob.shape[-1]), cfg)
    if not bool(valid.any()):
        return prob.sum() * 0.0
    p = prob.permute(0, 1, 3, 4, 2)[valid]  # V D
    onehot = F.one_hot(bins[valid], cfg.num_bins).to(p.dtype)
    return F.binary_cross_entropy(p.clamp(1e-6, 1 - 1e-6), onehot, reduction="none").sum(-1).mean()


def lovasz_sample(n: int, k: int, device: torch.device, generator: torch.Generator | None) -> Tensor | slice:
    """Indices of a uniform random subset of ``k`` of ``n`` voxels (all of them when ``k`` is 0 or >= n).

    The Lovasz term sorts every voxel once per class; on a uniform subset its class
    proportions, and so its IoU surrogate, are unbiased, at a fraction of the cost.
    """
    if k <= 0 or k >= n:
        return slice(None)
    return torch.randperm(n, generator=generator)[:k].to(device)


class OccupancyLoss:
    """The weighted sum of the configured losses."""

    def __init__(self, cfg: LossConfig, depth_cfg: DepthConfig, weights: Tensor | None = None) -> None:
        self.cfg = cfg
        self.depth_cfg = depth_cfg
        self.weights = weights if (weights is not None and cfg.class_balanced) else None

    def __call__(self, out: ModelOutput, targets: Targets, generator: torch.Generator | None = None,
                 progress: float = 1.0, step: int | None = None) -> tuple[Tensor, dict[str, float]]:
        """Total loss and its named parts (floats, for logging).

        ``progress`` (fraction of training done) sets the causal weight's warm-up and the
        training ``step`` its lazy schedule (``loss.causal_every``); during evaluation they stay
        1 and ``None``: the full weight, every time.
        """
        if targets.semantics is None:
            raise ValueError("the occupancy loss needs targets.semantics")
        sem = targets.semantics
        mask = targets.mask_camera if targets.mask_camera is not None else torch.ones_like(sem, dtype=torch.bool)
        b, K = out.logits.shape[:2]
        visible = mask.flatten(1).nonzero()  # V 2: (batch, flat voxel)
        logits = out.logits.movedim(1, -1).reshape(b, -1, K)  # b (X Y Z) K, a view if channels-last
        logits = logits[visible[:, 0], visible[:, 1]]  # V K, visible voxels only
        labels = sem.flatten(1)[visible[:, 0], visible[:, 1]]
        parts: dict[str, Tensor] = {}
        if self.cfg.ce_weight > 0:
            w = None if self.weights is None else self.weights.to(logits.device, logits.dtype)
            parts["ce"] = self.cfg.ce_weight * F.cross_entropy(logits.float(), labels, weight=w)
        if self.cfg.lovasz_weight > 0:
            pick = lovasz_sample(len(labels), self.cfg.lovasz_voxels, logits.device, generator)
            parts["lovasz"] = self.cfg.lovasz_weight * lovasz_softmax(logits[pick].float().softmax(-1), labels[pick])
        if self.cfg.depth_weight > 0 and targets.depth2d is not None:
            parts["depth"] = self.cfg.depth_weight * depth_loss(out.depth, targets.depth2d, self.depth_cfg)
        causal_weight = self.cfg.causal_weight * self.cfg.causal_scale(progress, step)
        if causal_weight > 0 and targets.sem2d is not None:
            tap = causal_tap(out, self.cfg.causal_feature)
            loss, _ = causal_loss(tap, out.feat2d, sem, targets.sem2d, mask, generator)
            parts["causal"] = causal_weight * loss
        total = torch.stack(list(parts.values())).sum() if parts else out.logits.sum() * 0.0
        return total, {k: float(v.detach()) for k, v in parts.items()} | {"total": float(total.detach())}


