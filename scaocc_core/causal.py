"""The semantic causal loss (Chen et al., ICCV 2025).

For a semantic class s, the 3D features at voxels whose ground truth is s are summed
(over voxels and channels) into a scalar S_s. Its gradient with respect to the 2D image
features, averaged over channels, is an attention map A_s per image: where in the images
the 3D evidence for class s comes from. The loss holds A_s to the 2D semantic mask Y_s
with binary cross-entropy, so that 3D class-s features are caused by 2D class-s pixels.

Normalisation into [0, 1]: the raw gradient has an arbitrary scale (it grows with the
feature norms and the number of class-s voxels) and a sign. We take ``relu(A_s)`` (pixels
whose features *increase* the class-s mass; negative attribution is no evidence) and
divide by its maximum over all cameras of the sample. This makes the loss invariant to
the gradient's scale, keeps cameras comparable (a camera that contributes nothing stays
near 0 instead of being stretched like a per-image min-max would), and yields values in
[0, 1] that BCE can compare with the mask.

Estimators: :func:`causal_loss` with ``classes=None`` samples one class per step
uniformly among the classes present (an unbiased estimate of the mean over classes,
at the cost of one extra backward pass); :func:`causal_loss_exact` averages all of them.

Where the 3D features are a known linear map of earlier ones (the normalised propagation,
``feat3d = L feat3d_splat``), a :class:`Tap` carries the score's gradient back through ``L``
as ``L^T share``, a forward computation: the loss' own backward then differentiates it once,
where it would otherwise differentiate the backward pass of ``L`` (a double backward). On the
image side, the attention needs only the channel mean of the gradient: with the consumers of
the image features given as :class:`~scaocc_core.model.taps.FeatureTap` (their linear first
layers), the gradient stops at their outputs and the mean is one-channel transposed
convolutions. Same values and gradients in both cases (tested).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from scaocc_core.grid import FREE, IGNORE

if TYPE_CHECKING:
    from scaocc_core.model.causal_occ import ModelOutput
    from scaocc_core.model.soft_fill import SplatVjp
    from scaocc_core.model.taps import FeatureTap

EPS = 1e-6


@dataclass(frozen=True)
class Tap:
    """The 3D features the causal score sums, ``feat3d`` (b C X' Y' Z').

    With ``source`` and ``transpose`` set, ``feat3d = L source`` for a linear ``L`` and
    ``transpose`` applies ``L^T`` (b 1 X' Y' Z', the same in every channel -> b C X' Y' Z').
    ``heads``, if any, are the linear first layers of *every* consumer of the image features.
    ``splat_vjp``, if any, is the soft-filling kernel's VJP at the splat's output, which is
    ``source`` (or ``feat3d`` without a transpose); only for an ``L`` with non-negative weights
    (the normalised propagation), whose ``L^T share`` is zero where nothing can move it, as
    :class:`~scaocc_core.model.soft_fill.SplatVjp` requires.
    """

    feat3d: Tensor
    source: Tensor | None = None
    transpose: Callable[[Tensor], Tensor] | None = None
    heads: tuple[FeatureTap, ...] = ()
    splat_vjp: SplatVjp | None = None

    def channel_mean_gradient(self, share: Tensor, feat2d: Tensor) -> Tensor:
        """Channel mean (b n h w) of the gradient of ``S = sum(share * feat3d)`` (summed over
        channels and voxels; ``share`` b X' Y' Z') with respect to ``feat2d`` (b n C h w),
        differentiable (create_graph)."""
        outputs: Tensor | list[Tensor]
        weight: Tensor | list[Tensor]
        if self.source is None or self.transpose is None:
            outputs, weight = self.feat3d, share[:, None].expand_as(self.feat3d)  # b C X' Y' Z' = dS/dfeat3d
        else:
            outputs, weight = self.source, self.transpose(share[:, None])  # b C X' Y' Z' = dS/dsource
        if self.splat_vjp is not None:
            outputs, weight = self.splat_vjp(weight)  # the splat's inputs and dS/d each
        if not self.heads:
            (grad,) = torch.autograd.grad(outputs, feat2d, grad_outputs=weight, create_graph=True)
            return grad.mean(dim=2)
        grads = torch.autograd.grad(outputs, [head.z for head in self.heads], grad_outputs=weight,
                                    create_graph=True, allow_unused=True)
        parts = [head.mean_t(u) for head, u in zip(self.heads, grads) if u is not None]
        return torch.stack(parts).sum(dim=0) if parts else feat2d.new_zeros(feat2d.shape[:2] + feat2d.shape[3:])


def causal_tap(out: ModelOutput, feature: str) -> Tap:
    """The :class:`Tap` of ``feature`` (``propagated`` or ``splat``, as ``loss.causal_feature``)."""
    if feature == "splat":
        return Tap(out.feat3d_splat, heads=out.feat2d_taps, splat_vjp=out.splat_vjp)
    if out.propagation_t is None:  # the residual blocks: no transpose, and the splat's VJP needs one
        return Tap(out.feat3d, heads=out.feat2d_taps)
    return Tap(out.feat3d, out.feat3d_splat, out.propagation_t, out.feat2d_taps, out.splat_vjp)


def present_classes(semantics: Tensor, mask: Tensor | None) -> list[int]:
    """Non-free classes present in the (masked) 3D ground truth, sorted."""
    labels = semantics[mask] if mask is not None else semantics.flatten()
    counts = torch.bincount(labels, minlength=FREE + 1)  # a count, not a sort (torch.unique)
    return [c for c in counts.nonzero().flatten().tolist() if c != FREE]


def class_targets(sem2d: Tensor, cls: int, feat_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Soft 2D mask of ``cls`` at feature resolution and its validity.

    ``sem2d``: b n H W (255 = no label). Returns ``(target, valid)`` of shape b n h w: the
    share of labelled pixels in each feature cell that are ``cls``, and whether the cell
    has any labelled pixel (sparse LiDAR-projected masks leave most cells invalid).
    """
    b, n, H, W = sem2d.shape
    h, w = feat_hw
    labelled = (sem2d != IGNORE).float().view(b * n, 1, H, W)
    positive = (sem2d == cls).float().view(b * n, 1, H, W)
    frac_l = F.adaptive_avg_pool2d(labelled, (h, w))
    frac_p = F.adaptive_avg_pool2d(positive, (h, w))
    valid = frac_l > 0
    target = torch.where(valid, frac_p / frac_l.clamp(min=EPS), torch.zeros_like(frac_p))
    return target.view(b, n, h, w), valid.view(b, n, h, w)


def class_share(semantics: Tensor, mask: Tensor | None, cls: int, feature_size: tuple[int, ...]) -> Tensor:
    """Share of each feature voxel's output voxels that are visible and of class ``cls``.

    ``semantics`` b X Y Z on the output grid; returns b X' Y' Z' on a feature grid whose
    size divides it (1 or 0 when the two grids are the same).
    """
    select = semantics == cls
    if mask is not None:
        select = select & mask
    share = select.float()
    if tuple(share.shape[-3:]) != tuple(feature_size):
        k = [a // b for a, b in zip(share.shape[-3:], feature_size)]
        share = F.avg_pool3d(share[:, None], k)[:, 0]  # b X' Y' Z'
    return share


def attention_map(feat3d: Tensor | Tap, feat2d: Tensor, semantics: Tensor, cls: int, mask: Tensor | None) -> Tensor:
    """Normalised causal attention ``A_s`` (b n h w, in [0, 1]); differentiable (create_graph).

    ``feat3d`` (a tensor or a :class:`Tap`) may live on a grid coarser than ``semantics``:
    each feature voxel then counts with the share of its output voxels that are of class ``cls``.
    """
    tap = feat3d if isinstance(feat3d, Tap) else Tap(feat3d)
    share = class_share(semantics, mask, cls, tap.feat3d.shape[-3:])
    att = F.relu(tap.channel_mean_gradient(share.to(tap.feat3d.dtype), feat2d))  # b n h w
    peak = att.flatten(1).amax(dim=1).view(-1, 1, 1, 1)  # per-sample max over cameras
    return att / (peak + EPS)


def causal_loss_for_class(feat3d: Tensor | Tap, feat2d: Tensor, semantics: Tensor, sem2d: Tensor, cls: int,
                          mask: Tensor | None = None) -> Tensor:
    """BCE between the attention map of ``cls`` and its 2D mask, over labelled cells."""
    att = attention_map(feat3d, feat2d, semantics, cls, mask)
    target, valid = class_targets(sem2d, cls, (att.shape[-2], att.shape[-1]))
    if not bool(valid.any()):
        return att.sum() * 0.0
    bce = F.binary_cross_entropy(att.clamp(EPS, 1 - EPS), target.to(att.dtype), reduction="none")
    return bce[valid].mean()


def causal_loss(feat3d: Tensor | Tap, feat2d: Tensor, semantics: Tensor, sem2d: Tensor, mask: Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[Tensor, int]:
    """Sampled estimator: one class drawn uniformly among those present. Returns (loss, class)."""
    classes = present_classes(semantics, mask)
    if not classes:
        return feat2d.sum() * 0.0, -1
    pick = int(torch.randint(len(classes), (1,), generator=generator).item())
    cls = classes[pick]
    return causal_loss_for_class(feat3d, feat2d, semantics, sem2d, cls, mask), cls


def causal_loss_exact(feat3d: Tensor | Tap, feat2d: Tensor, semantics: Tensor, sem2d: Tensor,
                      mask: Tensor | None = None) -> Tensor:
    """Mean of the per-class losses over every present class (one backward per class)."""
    classes = present_classes(semantics, mask)
    if not classes:
        return feat2d.sum() * 0.0
    return torch.stack([causal_loss_for_class(feat3d, feat2d, semantics, sem2d, c, mask) for c in classes]).mean()
