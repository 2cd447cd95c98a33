"""Stage 4: lifting geometry. Frustum points -> (augmented) ego frame -> voxel coordinates.

Per point: undo the image augmentation (``post_rot``, ``post_tran``), unproject with
``cam_T_img = K^-1``, map with the (offset-corrected) ``ego_T_cam``, apply the BEV
augmentation ``bda`` (egoaug_T_ego) and convert to continuous voxel coordinates.
"""

from __future__ import annotations

from torch import Tensor, nn

from scaocc_core.batch import CameraInputs
from scaocc_core.config import DepthConfig, GridConfig
from scaocc_core.geometry import frustum_to_voxel, make_frustum


class FrustumLifter(nn.Module):
    """Holds the frustum grid and maps it into voxel coordinates ``b n D h w 3``."""

    def __init__(self, image_hw: tuple[int, int], stride: int, depth: DepthConfig, grid: GridConfig) -> None:
        super().__init__()
        self.grid = grid
        self.frustum: Tensor
        feat_hw = (image_hw[0] // stride, image_hw[1] // stride)
        self.register_buffer("frustum", make_frustum(image_hw, feat_hw, depth), persistent=False)  # D h w 3

    def forward(self, inputs: CameraInputs, ego_T_cam: Tensor, frustum_delta: Tensor | None) -> Tensor:
        """Continuous voxel coordinates of every frustum point: ``b n D h w 3``.

        ``ego_T_cam`` (b n 4 4) is the offset-corrected pose; ``frustum_delta``
        (b n D h w 3, (du, dv) pixels and dd metres) the per-point correction, if any.
        """
        frustum = self.frustum.to(inputs.intrinsics.dtype)
        if frustum_delta is not None:
            frustum = frustum + frustum_delta.to(frustum.dtype)  # b n D h w 3
        return frustum_to_voxel(frustum, inputs.intrinsics, ego_T_cam, inputs.post_rot, inputs.post_tran,
                                inputs.bda, self.grid)
