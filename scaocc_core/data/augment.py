"""BEVDet-style image augmentation and BEV (ego-frame) augmentation of the voxel labels.

Image augmentation is one affine map of pixel coordinates (original image -> network
image): resize, crop, horizontal flip, rotation about the image centre. It is returned in
the BEVDet convention ``aug_uvd = post_rot @ uvd + post_tran`` (third row of ``post_rot``
and third entry of ``post_tran`` are identity and 0). Pixel ``j`` spans ``[j - 0.5, j + 0.5]``
and OpenCV's warps use the same centre convention, so the maps are exact.

Extrinsic noise (off by default) hands the model a perturbed ``ego_T_cam`` for some items,
images and labels untouched: what a mis-calibrated rig looks like, so that the learnable
camera offsets have a calibration error to learn to correct.

Low-resolution augmentation (off by default) degrades all of an item's network images to what a
source of half the size gives once resized up (2x area shrink, bilinear enlarge; geometry
unchanged), so a model trained on large frames also learns from small cameras' blurred input.

BEV augmentation is ``bda = egoaug_T_ego`` (4x4: rotation about +z, optional isotropic
scale, flips of x and/or y). The label grid is resampled with it (nearest neighbour), so a
point ``p`` of the original ego frame and ``bda @ p`` carry the same class.

All randomness comes from the ``numpy.random.Generator`` passed in; nothing here seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from scaocc_core.config import GridConfig
from scaocc_core.data.noise import CameraNoise, perturb_extrinsics
from scaocc_core.grid import FREE


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation ranges (BEVDet defaults for the image part).

    ``resize_range`` multiplies the base resize (the one that makes the stored image just
    cover the network input); ``bottom_crop_range`` is the fraction of the resized height
    cut from the bottom (BEVDet ``bot_pct_lim``); horizontal crop placement is uniform.
    """

    resize_range: tuple[float, float] = (0.86, 1.25)
    bottom_crop_range: tuple[float, float] = (0.0, 0.22)
    flip_prob: float = 0.5
    rot_deg: float = 5.4
    bev_flip_x_prob: float = 0.5
    bev_flip_y_prob: float = 0.5
    bev_rot_deg: float = 0.0
    bev_scale_range: tuple[float, float] = (1.0, 1.0)
    extrinsic_noise_prob: float = 0.0
    extrinsic_noise_deg: float = 3.0
    extrinsic_noise_m: float = 0.15
    lowres_prob: float = 0.0

    def validate(self) -> AugmentConfig:
        """Raise ``ValueError`` on impossible ranges; return ``self``."""
        lo, hi = self.resize_range
        if not 0 < lo <= hi:
            raise ValueError(f"augment.resize_range must satisfy 0 < lo <= hi, got {self.resize_range}")
        blo, bhi = self.bottom_crop_range
        if not 0 <= blo <= bhi < 1:
            raise ValueError(f"augment.bottom_crop_range must lie in [0, 1), got {self.bottom_crop_range}")
        for name in ("flip_prob", "bev_flip_x_prob", "bev_flip_y_prob", "extrinsic_noise_prob", "lowres_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"augment.{name} must be a probability, got {getattr(self, name)}")
        slo, shi = self.bev_scale_range
        if not 0 < slo <= shi:
            raise ValueError(f"augment.bev_scale_range must satisfy 0 < lo <= hi, got {self.bev_scale_range}")
        if not (self.extrinsic_noise_deg >= 0 and self.extrinsic_noise_m >= 0):
            raise ValueError("augment.extrinsic_noise_deg and extrinsic_noise_m must be >= 0")
        return self


@dataclass(frozen=True)
class ImageAug:
    """One sampled image augmentation.

    ``resize`` is the scale factor, ``crop`` the top-left corner ``(x, y)`` of the network
    window in the resized image, ``rot_deg`` the counter-clockwise (as displayed) rotation
    about the window centre.
    """

    resize: float
    crop: tuple[int, int]
    flip: bool
    rot_deg: float


def eval_image_aug(src_hw: tuple[int, int], out_hw: tuple[int, int]) -> ImageAug:
    """Deterministic resize + crop keeping the bottom centre (BEVDet test-time crop)."""
    (H, W), (fH, fW) = src_hw, out_hw
    resize = max(fH / H, fW / W)
    new_h, new_w = int(H * resize), int(W * resize)
    return ImageAug(resize, ((new_w - fW) // 2, new_h - fH), False, 0.0)


def sample_image_aug(
    src_hw: tuple[int, int], out_hw: tuple[int, int], cfg: AugmentConfig, rng: np.random.Generator
) -> ImageAug:
    """Random BEVDet-style resize, crop, flip and rotation."""
    (H, W), (fH, fW) = src_hw, out_hw
    resize = max(fH / H, fW / W) * float(rng.uniform(*cfg.resize_range))
    new_h, new_w = int(H * resize), int(W * resize)
    crop_y = int((1 - rng.uniform(*cfg.bottom_crop_range)) * new_h) - fH
    crop_x = int(rng.uniform(0, max(0, new_w - fW)))
    flip = bool(rng.uniform() < cfg.flip_prob)
    rot = float(rng.uniform(-cfg.rot_deg, cfg.rot_deg))
    return ImageAug(resize, (crop_x, crop_y), flip, rot)


def _resize_matrix(src_hw: tuple[int, int], resize: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Exact pixel map of ``cv2.resize`` to ``int(size * resize)`` (3x3) and the new ``(h, w)``."""
    H, W = src_hw
    new_h, new_w = max(1, int(H * resize)), max(1, int(W * resize))
    sx, sy = new_w / W, new_h / H
    # Pixel-centre convention: u' = sx (u + 0.5) - 0.5.
    R = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])
    return R, (new_h, new_w)


def _window_matrix(aug: ImageAug, out_hw: tuple[int, int]) -> np.ndarray:
    """Crop, flip and rotation applied after the resize (3x3 map of pixel coordinates)."""
    fH, fW = out_hw
    crop = np.array([[1, 0, -aug.crop[0]], [0, 1, -aug.crop[1]], [0, 0, 1.0]])
    flip = np.array([[-1, 0, fW - 1], [0, 1, 0], [0, 0, 1.0]]) if aug.flip else np.eye(3)
    a = math.radians(aug.rot_deg)
    c, s = math.cos(a), math.sin(a)
    cu, cv = (fW - 1) / 2, (fH - 1) / 2
    # Counter-clockwise on screen with v pointing down.
    rot = np.array([[c, s, cu - c * cu - s * cv], [-s, c, cv + s * cu - c * cv], [0, 0, 1.0]])
    return rot @ flip @ crop


def image_aug_matrix(src_hw: tuple[int, int], out_hw: tuple[int, int], aug: ImageAug) -> np.ndarray:
    """The full 3x3 affine map from original to network pixel coordinates."""
    R, _ = _resize_matrix(src_hw, aug.resize)
    return _window_matrix(aug, out_hw) @ R


def network_camera(
    K: np.ndarray, src_hw: tuple[int, int], out_hw: tuple[int, int], A: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the model is handed for one camera whose ``src_hw`` image reaches the network by
    the pixel affine ``A``: ``(K_net, post_rot, post_tran)``.

    ``K_net`` is the source ``K`` (3x3) carried to network scale by the test-time resize and
    crop (:func:`eval_image_aug`), and ``post_rot``/``post_tran`` hold only the augmentation
    on top of that (identity at test time). The projection ``post_rot @ K_net + post_tran`` is
    ``A @ K`` exactly, and the camera-aware depth net sees the same numbers for the same network
    image whether it came from a 128x352, a 256x704 or a 900x1600 camera. (Handed the source
    ``K`` and the whole resize in ``post_rot``, a model trained on one source size saw camera
    parameters it had never met on another and lost 40 % of its mIoU; EXPERIMENTS.md 1.)
    """
    B = image_aug_matrix(src_hw, out_hw, eval_image_aug(src_hw, out_hw))  # src -> network at test time
    post_rot, post_tran = post_rot_tran(A @ np.linalg.inv(B))
    return B @ K, post_rot, post_tran


def post_rot_tran(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BEVDet ``post_rot`` (3x3) and ``post_tran`` (3,) of a 3x3 pixel affine ``A``."""
    post_rot = np.eye(3)
    post_rot[:2, :2] = A[:2, :2]
    post_tran = np.zeros(3)
    post_tran[:2] = A[:2, 2]
    return post_rot, post_tran


def warp_image(image: np.ndarray, out_hw: tuple[int, int], aug: ImageAug) -> np.ndarray:
    """Apply ``aug`` to an ``H W 3`` uint8 image; returns ``fH fW 3`` uint8 (black outside)."""
    _, (new_h, new_w) = _resize_matrix(image.shape[:2], aug.resize)
    resized = image
    # Halve with exact 2x2 box filters (fast) while the image is over twice the target, then
    # finish with one area (shrink) or bilinear (enlarge) resize. The composed pixel map is
    # still u' = (new_w / W) (u + 0.5) - 0.5, so the matrices stay exact.
    while resized.shape[0] >= 2 * new_h and resized.shape[1] >= 2 * new_w and resized.shape[0] % 2 == 0 \
            and resized.shape[1] % 2 == 0:
        resized = cv2.resize(resized, (resized.shape[1] // 2, resized.shape[0] // 2), interpolation=cv2.INTER_AREA)
    shrink = new_h < resized.shape[0]
    resized = cv2.resize(resized, (new_w, new_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    M = _window_matrix(aug, out_hw)
    fH, fW = out_hw
    if np.allclose(M[:2, :2], np.eye(2)) and float(M[0, 2]).is_integer() and float(M[1, 2]).is_integer():
        return _shift_crop(resized, int(-M[0, 2]), int(-M[1, 2]), fH, fW)
    return cv2.warpAffine(resized, M[:2], (fW, fH), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


def _shift_crop(img: np.ndarray, x0: int, y0: int, fH: int, fW: int) -> np.ndarray:
    """Window ``[y0, y0 + fH) x [x0, x0 + fW)`` of ``img``, zero-padded where it leaves it."""
    out = np.zeros((fH, fW, *img.shape[2:]), dtype=img.dtype)
    ys, xs = max(0, y0), max(0, x0)
    ye, xe = min(img.shape[0], y0 + fH), min(img.shape[1], x0 + fW)
    if ye > ys and xe > xs:
        out[ys - y0 : ye - y0, xs - x0 : xe - x0] = img[ys:ye, xs:xe]
    return out


def is_sparse(valid: np.ndarray) -> bool:
    """True when fewer than half of the pixels (``H W`` bool of labelled pixels) carry a label."""
    return bool(np.count_nonzero(valid) < 0.5 * valid.size)


def warp_labels(
    sem: np.ndarray | None,
    depth: np.ndarray | None,
    A: np.ndarray,
    out_hw: tuple[int, int],
    ignore: int = 255,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Nearest-neighbour warp of a label map and/or a depth map (``H W`` each) by the affine ``A``.

    Labelled pixels are ``sem != ignore`` (or ``depth > 0`` without ``sem``). Dense maps are
    gathered (each output pixel reads the source pixel nearest to its pre-image); sparse
    maps (e.g. projected lidar) are scattered (each labelled pixel goes to its nearest
    output pixel, the nearest depth winning collisions), so shrinking never drops labels.
    Returns ``fH fW`` maps (``ignore`` / 0 where nothing lands), ``None`` for absent inputs.
    """
    fH, fW = out_hw
    ref = sem if sem is not None else depth
    if ref is None:
        return None, None
    valid = (sem != ignore) if sem is not None else (ref > 0)
    if not is_sparse(valid):
        Ainv = np.linalg.inv(A)

        def gather(values: np.ndarray, fill: float) -> np.ndarray:
            return cv2.warpAffine(values, Ainv[:2], (fW, fH), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=fill)

        return (None if sem is None else gather(sem, ignore)), (None if depth is None else gather(depth, 0.0))
    v, u = np.nonzero(valid)  # k, k
    uv = A[:2, :2] @ np.stack([u, v]).astype(np.float64) + A[:2, 2:3]  # 2 k
    iu, iv = np.rint(uv[0]).astype(np.int64), np.rint(uv[1]).astype(np.int64)
    keep = (iu >= 0) & (iu < fW) & (iv >= 0) & (iv < fH)
    v, u, iu, iv = v[keep], u[keep], iu[keep], iv[keep]
    if depth is not None:
        order = np.argsort(-depth[v, u], kind="stable")  # far first, near written last
        v, u, iu, iv = v[order], u[order], iu[order], iv[order]
    sem_out = depth_out = None
    if sem is not None:
        sem_out = np.full((fH, fW), ignore, dtype=sem.dtype)
        sem_out[iv, iu] = sem[v, u]
    if depth is not None:
        depth_out = np.zeros((fH, fW), dtype=depth.dtype)
        depth_out[iv, iu] = depth[v, u]
    return sem_out, depth_out


def sample_bda(cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Random ``egoaug_T_ego`` (4x4): flips of x / y, rotation about +z, isotropic scale."""
    a = math.radians(float(rng.uniform(-cfg.bev_rot_deg, cfg.bev_rot_deg)))
    scale = float(rng.uniform(*cfg.bev_scale_range))
    flip_x = bool(rng.uniform() < cfg.bev_flip_x_prob)
    flip_y = bool(rng.uniform() < cfg.bev_flip_y_prob)
    return make_bda(math.degrees(a), scale, flip_x, flip_y)


def sample_extrinsic_noise(ego_T_cam: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """``ego_T_cam`` (``n 4 4``) as the model is handed it: with probability
    ``extrinsic_noise_prob`` perturbed by the ``so3`` protocol of :mod:`scaocc_core.data.noise`
    at a strength drawn uniformly in [0, 1] times (``extrinsic_noise_deg``, ``extrinsic_noise_m``),
    so mild and strong errors are both seen; otherwise unchanged. Draws nothing when the
    probability is 0 (earlier augmentation draws stay as they were).
    """
    if cfg.extrinsic_noise_prob <= 0 or not rng.uniform() < cfg.extrinsic_noise_prob:
        return ego_T_cam
    strength = float(rng.uniform())
    noise = CameraNoise("so3", strength * cfg.extrinsic_noise_deg, strength * cfg.extrinsic_noise_m)
    return perturb_extrinsics(ego_T_cam, noise, rng)


def sample_lowres(cfg: AugmentConfig, rng: np.random.Generator) -> bool:
    """Whether this item's images are degraded by :func:`halve_resolution` (probability
    ``lowres_prob``). Draws nothing when the probability is 0 (earlier draws stay as they were).
    """
    return cfg.lowres_prob > 0 and bool(rng.uniform() < cfg.lowres_prob)


def halve_resolution(image: np.ndarray) -> np.ndarray:
    """``image`` (``H W 3``, even ``H`` and ``W``) as a source of half its size gives once
    resized back up: 2x area shrink, then bilinear enlarge. Both use OpenCV's pixel-centre
    convention, so a pixel stays where it was (only detail is lost).
    """
    h, w = image.shape[:2]
    small = cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def make_bda(rot_deg: float, scale: float, flip_x: bool, flip_y: bool) -> np.ndarray:
    """``egoaug_T_ego`` = flip @ scale @ rotation (about +z, counter-clockwise seen from above)."""
    a = math.radians(rot_deg)
    rot = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1.0]])
    flip = np.diag([-1.0 if flip_x else 1.0, -1.0 if flip_y else 1.0, 1.0])
    T = np.eye(4)
    T[:3, :3] = flip @ (scale * rot)
    return T


def apply_bda_to_grid(
    bda: np.ndarray,
    grid: GridConfig,
    semantics: np.ndarray,
    masks: list[np.ndarray],
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Resample ``X Y Z`` labels (and boolean masks) into the BEV-augmented ego frame.

    Each augmented voxel takes the label of the original voxel containing
    ``inverse(bda) @ centre``; voxels whose pre-image leaves the grid become free and
    unobserved (masks False). Returns the new semantics and masks (same shapes).
    """
    if np.allclose(bda, np.eye(4)):
        return semantics, masks
    lower, vs, size = np.asarray(grid.lower), np.asarray(grid.voxel_size), np.asarray(grid.size)
    inv = np.linalg.inv(bda)
    if np.allclose(bda[2], [0, 0, 1, 0]) and np.allclose(bda[:2, 2], 0):
        # z untouched: resample whole columns (X Y index maps).
        ii, jj = np.meshgrid(np.arange(size[0]), np.arange(size[1]), indexing="ij")  # X Y
        cx = lower[0] + (ii + 0.5) * vs[0]
        cy = lower[1] + (jj + 0.5) * vs[1]
        sx = inv[0, 0] * cx + inv[0, 1] * cy + inv[0, 3]
        sy = inv[1, 0] * cx + inv[1, 1] * cy + inv[1, 3]
        si = np.floor((sx - lower[0]) / vs[0]).astype(np.int64)
        sj = np.floor((sy - lower[1]) / vs[1]).astype(np.int64)
        inside = (si >= 0) & (si < size[0]) & (sj >= 0) & (sj < size[1])  # X Y
        si, sj = np.clip(si, 0, size[0] - 1), np.clip(sj, 0, size[1] - 1)
        sem = np.where(inside[..., None], semantics[si, sj], FREE).astype(semantics.dtype)
        return sem, [np.where(inside[..., None], m[si, sj], False) for m in masks]
    axes = [lower[a] + (np.arange(size[a]) + 0.5) * vs[a] for a in range(3)]
    centres = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)  # X Y Z 3
    src = centres @ inv[:3, :3].T + inv[:3, 3]
    idx = np.floor((src - lower) / vs).astype(np.int64)  # X Y Z 3
    inside = np.all((idx >= 0) & (idx < size), axis=-1)
    idx = np.clip(idx, 0, size - 1)
    gather = (idx[..., 0], idx[..., 1], idx[..., 2])
    sem = np.where(inside, semantics[gather], FREE).astype(semantics.dtype)
    return sem, [np.where(inside, m[gather], False) for m in masks]

