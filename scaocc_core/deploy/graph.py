"""The inference graph shared by the torch backend and the ONNX export.

Inputs are plain tensors with static shapes (one rig, one resolution) so the graph exports
without custom ops; camera geometry is computed inside the graph (learnable camera
offsets included), so a calibration change needs no re-export.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from scaocc_core.batch import CameraInputs
from scaocc_core.model.causal_occ import CausalOcc, ModelOutput

INPUT_NAMES = ("images", "intrinsics", "ego_T_cam", "post_rot", "post_tran", "camera_valid")
OUTPUT_NAMES = ("labels", "confidence", "rotation_offsets", "translation_offsets")
LOGITS_OUTPUT_NAMES = ("logits", "rotation_offsets", "translation_offsets")


class InferenceGraph(nn.Module):
    """``CausalOcc`` in eval mode, returning argmax labels and confidence.

    Inputs (batch 1): images ``1 n 3 H W`` float in [0, 1]; intrinsics ``1 n 3 3``;
    ego_T_cam ``1 n 4 4``; post_rot ``1 n 3 3``; post_tran ``1 n 3``; camera_valid ``1 n``
    float (1 = present). Outputs: labels ``1 X Y Z`` uint8, confidence ``1 X Y Z`` uint8
    (max softmax probability x 255), rotation/translation offsets ``1 n 3``.
    """

    def __init__(self, model: CausalOcc) -> None:
        super().__init__()
        self.model = model.eval()

    def network(self, images: Tensor, intrinsics: Tensor, ego_T_cam: Tensor, post_rot: Tensor,
                post_tran: Tensor, camera_valid: Tensor) -> ModelOutput:
        """Run the model on the graph inputs (identity BEV augmentation)."""
        bda = torch.eye(4, dtype=intrinsics.dtype, device=intrinsics.device).expand(images.shape[0], 4, 4)
        inputs = CameraInputs(images, intrinsics, ego_T_cam, post_rot, post_tran, bda, camera_valid > 0.5)
        return self.model(inputs)

    def forward(self, images: Tensor, intrinsics: Tensor, ego_T_cam: Tensor, post_rot: Tensor,
                post_tran: Tensor, camera_valid: Tensor) -> tuple[Tensor, ...]:
        """See the class docstring."""
        out = self.network(images, intrinsics, ego_T_cam, post_rot, post_tran, camera_valid)
        logits = out.logits.float()  # b K X Y Z
        top, labels = logits.max(dim=1)  # b X Y Z
        conf = 1.0 / torch.exp(logits - top[:, None]).sum(dim=1)  # max softmax probability, b X Y Z
        confidence = torch.round(conf * 255.0).to(torch.uint8)
        return labels.to(torch.uint8), confidence, out.offsets.rotation, out.offsets.translation


class LogitsGraph(InferenceGraph):
    """Like :class:`InferenceGraph` but returns raw class logits ``1 K X Y Z`` (float32).

    Outputs: logits, rotation offsets ``1 n 3``, translation offsets ``1 n 3``
    (:data:`LOGITS_OUTPUT_NAMES`). Used by the export parity check.
    """

    def forward(self, images: Tensor, intrinsics: Tensor, ego_T_cam: Tensor, post_rot: Tensor,
                post_tran: Tensor, camera_valid: Tensor) -> tuple[Tensor, ...]:
        """See the class docstring."""
        out = self.network(images, intrinsics, ego_T_cam, post_rot, post_tran, camera_valid)
        return out.logits.float(), out.offsets.rotation, out.offsets.translation
