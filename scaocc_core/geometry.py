"""Camera geometry: frustums, (un)projection, rotations and voxel coordinates.

Transforms are named ``A_T_B``: a 4x4 matrix mapping points in frame B to frame A
(``ego_T_cam`` maps camera-optical points into the ego frame). Camera optical frames are
+z forward, +x right, +y down. ``img_T_cam`` is the 3x3 intrinsic matrix K.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from scaocc_core.config import DepthConfig, GridConfig


def make_frustum(image_hw: tuple[int, int], feat_hw: tuple[int, int], depth: DepthConfig) -> Tensor:
    """Frustum points ``(u, v, d)`` in network-image pixels for every feature cell and bin.

    Returns ``D h w 3``. ``u, v`` are the centres of the stride cells in pixel-index
    coordinates (pixel ``j`` spans ``[j - 0.5, j + 0.5]``); ``d`` are bin centres
    ``d_min + (k + 0.5) * d_step``.
    """
    (H, W), (h, w) = image_hw, feat_hw
    su, sv = W / w, H / h
    u = (torch.arange(w, dtype=torch.float32) + 0.5) * su - 0.5
    v = (torch.arange(h, dtype=torch.float32) + 0.5) * sv - 0.5
    d = depth_bin_centres(depth)
    dd, vv, uu = torch.meshgrid(d, v, u, indexing="ij")
    return torch.stack([uu, vv, dd], dim=-1)  # D h w 3


def depth_bin_centres(depth: DepthConfig) -> Tensor:
    """Centres of the D depth bins in metres."""
    return depth.d_min + (torch.arange(depth.num_bins, dtype=torch.float32) + 0.5) * depth.d_step


def frustum_to_ego(
    frustum: Tensor,
    intrinsics: Tensor,
    ego_T_cam: Tensor,
    post_rot: Tensor,
    post_tran: Tensor,
    bda: Tensor,
) -> Tensor:
    """Map frustum points ``(u, v, d)`` to (BEV-augmented) ego coordinates.

    ``frustum`` is ``D h w 3`` or ``b n D h w 3`` (the latter when per-point offsets were
    added). Matrices are ``b n 3 3`` / ``b n 4 4`` / ``b n 3`` / ``b 4 4``.
    Returns ``b n D h w 3``.
    """
    b, n = intrinsics.shape[:2]
    if frustum.dim() == 4:
        frustum = frustum[None, None].expand(b, n, *frustum.shape)
    pts = frustum - post_tran[:, :, None, None, None, :]  # undo image augmentation
    aug_T_img_inv = torch.linalg.inv(post_rot)
    pts = torch.einsum("bnij,bndhwj->bndhwi", aug_T_img_inv, pts)
    uv1d = torch.cat([pts[..., :2] * pts[..., 2:3], pts[..., 2:3]], dim=-1)  # (u d, v d, d)
    cam_T_img = torch.linalg.inv(intrinsics)
    egoaug_T_cam = bda[:, None] @ ego_T_cam  # b n 4 4
    rot = egoaug_T_cam[..., :3, :3] @ cam_T_img
    return torch.einsum("bnij,bndhwj->bndhwi", rot, uv1d) + egoaug_T_cam[:, :, None, None, None, :3, 3]


def frustum_to_voxel(
    frustum: Tensor,
    intrinsics: Tensor,
    ego_T_cam: Tensor,
    post_rot: Tensor,
    post_tran: Tensor,
    bda: Tensor,
    grid: GridConfig,
) -> Tensor:
    """Continuous voxel coordinates of frustum points: :func:`ego_to_voxel` of
    :func:`frustum_to_ego` (its reference, tested equal), one axis at a time.

    Same arguments and shapes as :func:`frustum_to_ego`. Each per-camera 3x3 map becomes nine
    scalar multiply-adds on contiguous ``b n D h w`` arrays (the voxel scaling folded into the
    last one): a batched product with an inner size of 3 runs several times slower on CPU, in
    the forward and in both derivatives the causal loss takes through it. Returns
    ``b n D h w 3``, a view of axis-first memory.
    """
    A = torch.linalg.inv(post_rot)  # b n 3 3: undoes the image augmentation
    egoaug_T_cam = bda[:, None] @ ego_T_cam  # b n 4 4
    size = A.new_tensor(grid.voxel_size)
    voxel_T_img = egoaug_T_cam[..., :3, :3] @ torch.linalg.inv(intrinsics) / size[:, None]  # b n 3 3
    offset = (egoaug_T_cam[..., :3, 3] - A.new_tensor(grid.lower)) / size  # b n 3

    def per_cam(m: Tensor) -> Tensor:  # b n -> b n 1 1 1, against b n D h w
        return m[..., None, None, None]

    def affine(m: Tensor, v: list[Tensor], shift: Tensor | None = None) -> list[Tensor]:
        """``m v (+ shift)`` per camera: ``m`` b n 3 3, ``v`` three b n D h w, ``shift`` b n 3."""
        out = []
        for i in range(3):
            first = per_cam(m[..., i, 0])
            acc = first * v[0] if shift is None else torch.addcmul(per_cam(shift[..., i]), first, v[0])
            for j in (1, 2):
                acc = torch.addcmul(acc, per_cam(m[..., i, j]), v[j])
            out.append(acc)
        return out

    axes = frustum.movedim(-1, 0)  # 3 D h w or 3 b n D h w
    q = [axes[k] - per_cam(post_tran[..., k]) for k in range(3)]  # b n D h w each
    p = affine(A, q)  # (u, v, d) before the augmentation
    voxel = affine(voxel_T_img, [p[0] * p[2], p[1] * p[2], p[2]], offset)  # from (u d, v d, d)
    return torch.stack(voxel).movedim(0, -1)  # b n D h w 3


def project_points(points: Tensor, img_T_cam: Tensor, cam_T_ref: Tensor) -> tuple[Tensor, Tensor]:
    """Project ``... 3`` points of a reference frame into an image.

    Returns ``(uv, depth)``: pixel coordinates ``... 2`` and optical-axis depth ``...``.
    """
    pts = points @ cam_T_ref[:3, :3].T + cam_T_ref[:3, 3]
    depth = pts[..., 2]
    uvw = pts @ img_T_cam.T
    uv = uvw[..., :2] / uvw[..., 2:3].clamp(min=1e-6)
    return uv, depth


def unproject_pixels(uv: Tensor, depth: Tensor, img_T_cam: Tensor, ref_T_cam: Tensor) -> Tensor:
    """Inverse of :func:`project_points`: pixels ``... 2`` at ``depth`` to reference-frame points."""
    uvd = torch.cat([uv * depth[..., None], depth[..., None]], dim=-1)
    cam = uvd @ torch.linalg.inv(img_T_cam).T
    return cam @ ref_T_cam[:3, :3].T + ref_T_cam[:3, 3]


def ego_to_voxel(points: Tensor, grid: GridConfig) -> Tensor:
    """Continuous voxel coordinates of ego points ``... 3``; voxel ``i`` spans ``[i, i + 1)``."""
    lower = points.new_tensor(grid.lower)
    size = points.new_tensor(grid.voxel_size)
    return (points - lower) / size


def voxel_centres(grid: GridConfig) -> Tensor:
    """Ego coordinates of every voxel centre, ``X Y Z 3``."""
    axes = [
        lo + (torch.arange(n, dtype=torch.float32) + 0.5) * s
        for lo, n, s in zip(grid.lower, grid.size, grid.voxel_size)
    ]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


def axis_angle_to_matrix(rotvec: Tensor) -> Tensor:
    """Rodrigues' formula, differentiable at zero: ``... 3`` -> ``... 3 3``."""
    theta2 = (rotvec * rotvec).sum(-1, keepdim=True)[..., None]  # ... 1 1
    # Taylor-safe coefficients: sin(t)/t and (1 - cos t)/t^2.
    theta = torch.sqrt(theta2 + 1e-12)
    small = theta2 < 1e-8
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    bcoef = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / (theta2 + 1e-12))
    x, y, z = rotvec.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*rotvec.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device).expand_as(k)
    return eye + a * k + bcoef * (k @ k)


def quaternion_to_matrix(wxyz: np.ndarray | list[float]) -> np.ndarray:
    """Rotation matrix of a unit quaternion ``(w, x, y, z)`` (nuScenes order)."""
    w, x, y, z = (float(c) for c in wxyz)
    n = math.sqrt(w * w + x * x + y * y + z * z)
    if n < 1e-9:
        raise ValueError("zero quaternion")
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def make_transform(rotation: np.ndarray, translation: np.ndarray | list[float]) -> np.ndarray:
    """4x4 homogeneous transform from a 3x3 rotation and a translation."""
    T = np.eye(4)
    T[:3, :3] = rotation
    T[:3, 3] = np.asarray(translation, dtype=np.float64)
    return T
