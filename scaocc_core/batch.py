"""Typed batch containers passed between the dataset, the model, the losses and the node.

Shapes use ``b`` batch, ``n`` cameras, ``H W`` input image size, ``X Y Z`` grid size.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch
from torch import Tensor


@dataclass
class CameraInputs:
    """Everything the network sees for one batch of synchronised camera sets.

    The image augmentation maps original pixel coordinates to network pixel coordinates:
    ``aug_uvd = post_rot @ uvd + post_tran`` (the third row and entry are identity and 0,
    BEVDet style). ``bda`` is the BEV augmentation ``egoaug_T_ego`` applied to ego points
    (identity at inference).
    """

    images: Tensor  # b n 3 H W, float RGB in [0, 1]
    intrinsics: Tensor  # b n 3 3, img_T_cam of the original (unaugmented) image
    ego_T_cam: Tensor  # b n 4 4, camera optical frame -> ego frame
    post_rot: Tensor  # b n 3 3
    post_tran: Tensor  # b n 3
    bda: Tensor  # b 4 4, egoaug_T_ego
    camera_valid: Tensor  # b n bool; features of invalid (missing) cameras are zeroed

    def to(self, device: torch.device | str) -> CameraInputs:
        """Move every tensor to ``device``."""
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @property
    def batch_size(self) -> int:
        """Number of camera sets in the batch."""
        return int(self.images.shape[0])


@dataclass
class Targets:
    """Ground truth for one batch (any field may be absent, e.g. at inference)."""

    semantics: Tensor | None = None  # b X Y Z long, 0..17 (17 = free)
    mask_camera: Tensor | None = None  # b X Y Z bool, voxels observed by a camera
    mask_lidar: Tensor | None = None  # b X Y Z bool
    sem2d: Tensor | None = None  # b n H W long, 255 = no label (sparse masks allowed)
    depth2d: Tensor | None = None  # b n H W float metres, 0 = no depth

    def to(self, device: torch.device | str) -> Targets:
        """Move every present tensor to ``device``."""
        return replace(
            self,
            **{
                f.name: (None if getattr(self, f.name) is None else getattr(self, f.name).to(device))
                for f in fields(self)
            },
        )


@dataclass
class Batch:
    """One training or evaluation batch: inputs, targets and frame tokens."""

    inputs: CameraInputs
    targets: Targets = field(default_factory=Targets)
    tokens: list[str] = field(default_factory=list)

    def to(self, device: torch.device | str) -> Batch:
        """Move inputs and targets to ``device``."""
        return Batch(self.inputs.to(device), self.targets.to(device), list(self.tokens))


def collate(samples: list[Batch]) -> Batch:
    """Stack single-frame ``Batch`` objects (batch dim 1 each) into one batch."""

    def cat(tensors: list[Tensor | None]) -> Tensor | None:
        if any(t is None for t in tensors):
            return None
        return torch.cat(tensors, dim=0)  # type: ignore[arg-type]

    inputs = CameraInputs(
        **{f.name: torch.cat([getattr(s.inputs, f.name) for s in samples]) for f in fields(CameraInputs)}
    )
    targets = Targets(**{f.name: cat([getattr(s.targets, f.name) for s in samples]) for f in fields(Targets)})
    return Batch(inputs, targets, [t for s in samples for t in s.tokens])
