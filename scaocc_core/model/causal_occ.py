"""The CausalOcc network: composes the six stages; ``forward`` reads top to bottom."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from scaocc_core.batch import CameraInputs
from scaocc_core.config import ModelConfig
from scaocc_core.model.depth_head import DepthContextHead, camera_parameters
from scaocc_core.model.encoder import ImageEncoder
from scaocc_core.model.lift import FrustumLifter
from scaocc_core.model.offsets import CameraOffsetHead, CameraOffsets, zero_offsets
from scaocc_core.model.soft_fill import SplatVjp
from scaocc_core.model.splat import FusedPool, splat
from scaocc_core.model.taps import FeatureTap
from scaocc_core.model.voxel_net import Propagation, VoxelEncoderDecoder


@dataclass
class ModelOutput:
    """Everything the losses, the predictor and the node need from one forward pass."""

    logits: Tensor  # b K X Y Z, on the output grid
    depth: Tensor  # b n G D h w, per-group depth distributions
    feat2d: Tensor  # b n C h w, image features (the causal loss differentiates w.r.t. these)
    feat3d_splat: Tensor  # b C X' Y' Z', right after splatting (feature grid, X' = X / upsample)
    feat3d: Tensor  # b C X' Y' Z', after propagation
    offsets: CameraOffsets
    propagation_t: Callable[[Tensor], Tensor] | None = None  # L^T where feat3d = L feat3d_splat is linear
    feat2d_taps: tuple[FeatureTap, ...] = ()  # the linear first layer of every consumer of feat2d
    splat_vjp: SplatVjp | None = None  # the soft-filling kernel's VJP at feat3d_splat, where it ran


class CausalOcc(nn.Module):
    """LSS-family camera-only occupancy network with the paper's four contributions.

    ``fused_pool`` (default ``None``: PyTorch ``index_add``) is the hard-pooling kernel used
    without gradients; an inference engine may set it (e.g. the Triton kernel on CUDA).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg.validate()
        image_hw = (cfg.image.height, cfg.image.width)
        C = cfg.depth.context_channels
        self.encoder = ImageEncoder(cfg.encoder)
        self.depth_head = DepthContextHead(cfg.encoder.neck_channels, cfg.depth)
        self.offset_head = (
            CameraOffsetHead(cfg.encoder.neck_channels, cfg.depth, cfg.encoder.stride, cfg.offsets)
            if cfg.offsets.enabled else None
        )
        self.lifter = FrustumLifter(image_hw, cfg.encoder.stride, cfg.depth, cfg.feature_grid)
        self.propagation = Propagation(C, cfg.voxel)
        self.voxel_net = VoxelEncoderDecoder(C, cfg.voxel)
        self.fused_pool: FusedPool | None = None

    def forward(self, inputs: CameraInputs) -> ModelOutput:
        """Images and cameras (:class:`CameraInputs`) -> logits and intermediate features."""
        feat2d = self.encoder(inputs.images)  # b n C h w
        offsets = self.offset_head(feat2d, inputs.ego_T_cam) if self.offset_head else zero_offsets(inputs.ego_T_cam)
        ego_T_cam = offsets.apply(inputs.ego_T_cam)  # b n 4 4, corrected once
        camera = camera_parameters(inputs.intrinsics, inputs.post_rot, inputs.post_tran,
                                   ego_T_cam, (self.cfg.image.height, self.cfg.image.width))
        depth, context, depth_tap = self.depth_head(feat2d, camera)  # b n G D h w, b n C h w
        context = context * inputs.camera_valid[:, :, None, None, None].to(context.dtype)  # missing cams
        coords = self.lifter(inputs, ego_T_cam, offsets.frustum_delta)  # b n D h w 3, feature-grid voxels
        feat3d_splat, splat_vjp = splat(depth, context, coords, self.cfg.feature_grid.size,
                                        self.cfg.lift.pooling, self.fused_pool)  # b C X' Y' Z'
        feat3d = self.propagation(feat3d_splat)
        logits = self.voxel_net(feat3d)  # b K X Y Z
        return ModelOutput(logits, depth, feat2d, feat3d_splat, feat3d, offsets, self.propagation.transpose(),
                           (depth_tap, *offsets.taps), splat_vjp)
