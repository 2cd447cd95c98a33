"""Image and BEV augmentation: the returned matrices describe exactly what was done."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scaocc_core.config import GridConfig
from scaocc_core.data import augment as aug
from scaocc_core.data.rig import load_nuscenes_sample_rig
from scaocc_core.geometry import frustum_to_ego, project_points

SRC_HW = (450, 800)
OUT_HW = (256, 704)


def _blob_image(uv: np.ndarray, radius: float = 7.0) -> np.ndarray:
    """A grey image with a red disk centred on pixel ``uv``."""
    img = np.full((*SRC_HW, 3), 90, dtype=np.uint8)
    vv, uu = np.mgrid[: SRC_HW[0], : SRC_HW[1]]
    disk = (uu - uv[0]) ** 2 + (vv - uv[1]) ** 2 <= radius**2
    img[disk] = (255, 0, 0)
    return img


def _blob_centroid(img: np.ndarray) -> np.ndarray:
    red = (img[..., 0].astype(int) - img[..., 1].astype(int)).clip(0).astype(float)
    red[red < 40] = 0
    assert red.sum() > 0, "blob vanished from the augmented image"
    vv, uu = np.mgrid[: img.shape[0], : img.shape[1]]
    return np.array([(uu * red).sum() / red.sum(), (vv * red).sum() / red.sum()])


def _front_camera() -> tuple[np.ndarray, np.ndarray]:
    cam = load_nuscenes_sample_rig().cameras[1].resized(*SRC_HW)  # CAM_FRONT
    return cam.K, cam.ego_T_cam


@pytest.mark.parametrize("seed", range(6))
def test_blob_lands_where_post_rot_says(seed: int) -> None:
    K, ego_T_cam = _front_camera()
    point = np.array([14.0, 1.5, 0.8])  # ego frame, ahead of the car
    uv, depth = project_points(
        torch.tensor(point), torch.tensor(K), torch.linalg.inv(torch.tensor(ego_T_cam))
    )
    uv_np = uv.numpy()
    assert 200 < uv_np[0] < 600 and 150 < uv_np[1] < 350
    img = _blob_image(uv_np)
    cfg = aug.AugmentConfig(flip_prob=0.5, rot_deg=10.0)
    rng = np.random.default_rng(seed)
    a = aug.sample_image_aug(SRC_HW, OUT_HW, cfg, rng)
    if seed == 0:  # make sure flip and a big rotation are exercised
        a = aug.ImageAug(a.resize, a.crop, True, 9.0)
    A = aug.image_aug_matrix(SRC_HW, OUT_HW, a)
    post_rot, post_tran = aug.post_rot_tran(A)
    out = aug.warp_image(img, OUT_HW, a)
    assert out.shape == (*OUT_HW, 3)
    predicted = post_rot[:2, :2] @ uv_np + post_tran[:2]
    np.testing.assert_allclose(_blob_centroid(out), predicted, atol=0.6)
    # The model's geometry undoes the augmentation: the blob's pixel at the point's depth
    # goes back to the 3D point.
    frustum = torch.tensor([[[[*predicted, float(depth)]]]], dtype=torch.float32)  # D h w 3
    back = frustum_to_ego(
        frustum,
        torch.tensor(K, dtype=torch.float32)[None, None],
        torch.tensor(ego_T_cam, dtype=torch.float32)[None, None],
        torch.tensor(post_rot, dtype=torch.float32)[None, None],
        torch.tensor(post_tran, dtype=torch.float32)[None, None],
        torch.eye(4)[None],
    )
    np.testing.assert_allclose(back.reshape(3).numpy(), point, atol=1e-3)


def test_eval_crop_keeps_bottom_centre() -> None:
    a = aug.eval_image_aug((900, 1600), (256, 704))
    assert a.resize == pytest.approx(0.44) and a.crop == (0, 140) and not a.flip and a.rot_deg == 0
    A = aug.image_aug_matrix((900, 1600), (256, 704), a)
    # The bottom edge of the original is the bottom edge of the network image (pixel
    # j spans [j - 0.5, j + 0.5]) and the horizontal centres coincide.
    np.testing.assert_allclose(A @ np.array([799.5, 899.5, 1.0]), [351.5, 255.5, 1.0], atol=1e-9)


def test_sparse_labels_survive_shrinking() -> None:
    sem = np.full(SRC_HW, 255, dtype=np.uint8)
    depth = np.zeros(SRC_HW, dtype=np.float32)
    rng = np.random.default_rng(0)
    v, u = rng.integers(0, SRC_HW[0], 500), rng.integers(0, SRC_HW[1], 500)
    sem[v, u], depth[v, u] = 4, rng.uniform(2, 40, 500)
    sem[10, 10], depth[10, 10], sem[10, 11], depth[10, 11] = 7, 5.0, 9, 30.0  # collide after shrinking
    A = aug.image_aug_matrix(SRC_HW, (135, 240), aug.ImageAug(0.3, (0, 0), False, 0.0))
    out, d_out = aug.warp_labels(sem, depth, A, (135, 240))
    assert out is not None and d_out is not None
    assert (out != 255).sum() > 450 and set(np.unique(out)) <= {4, 7, 9, 255}
    assert np.array_equal(out != 255, d_out > 0)
    assert out[3, 3] == 7 and d_out[3, 3] == 5.0  # the nearer point wins
    only_depth = aug.warp_labels(None, depth, A, (135, 240))[1]
    assert only_depth is not None and np.array_equal(only_depth, d_out)


def test_dense_labels_are_gathered() -> None:
    sem = (np.arange(SRC_HW[1])[None].repeat(SRC_HW[0], 0) // 40).astype(np.uint8)  # stripes 40 px wide
    a = aug.ImageAug(0.5, (3, 2), True, 0.0)
    A = aug.image_aug_matrix(SRC_HW, (200, 380), a)
    out, none = aug.warp_labels(sem, None, A, (200, 380))
    assert none is None and out is not None
    Ainv = np.linalg.inv(A)
    for u_out in (0, 57, 200, 379):
        u_src = Ainv[0, 0] * u_out + Ainv[0, 1] * 100 + Ainv[0, 2]
        assert out[100, u_out] == sem[0, int(np.rint(u_src))]


def _blocky_grid(grid: GridConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X, Y, Z = grid.size
    coarse = rng.integers(0, 18, size=(X // 5, Y // 5, Z))
    sem = np.repeat(np.repeat(coarse, 5, 0), 5, 1).astype(np.uint8)
    mask = np.repeat(np.repeat(rng.uniform(size=(X // 5, Y // 5, Z)) < 0.7, 5, 0), 5, 1)
    return sem, mask


def _label_at(sem: np.ndarray, grid: GridConfig, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.floor((pts - np.array(grid.lower)) / np.array(grid.voxel_size)).astype(int)
    inside = np.all((idx >= 0) & (idx < np.array(grid.size)), axis=1)
    idx = idx[inside]
    return sem[idx[:, 0], idx[:, 1], idx[:, 2]], inside


@pytest.mark.parametrize(
    ("rot", "fx", "fy", "min_agree"),
    [(0.0, True, False, 1.0), (0.0, False, True, 1.0), (90.0, True, True, 1.0), (17.0, True, False, 0.9)],
)
def test_bda_consistent_with_augmented_grid(rot: float, fx: bool, fy: bool, min_agree: float) -> None:
    grid = GridConfig(size=(100, 100, 8))
    sem, mask = _blocky_grid(grid, 1)
    bda = aug.make_bda(rot, 1.0, fx, fy)
    sem_aug, (mask_aug,) = aug.apply_bda_to_grid(bda, grid, sem, [mask])
    centres = np.stack(
        np.meshgrid(*[lo + (np.arange(n) + 0.5) * s for lo, n, s in zip(grid.lower, grid.size, grid.voxel_size)],
                    indexing="ij"),
        axis=-1,
    ).reshape(-1, 3)
    mapped = centres @ bda[:3, :3].T + bda[:3, 3]
    got, inside = _label_at(sem_aug, grid, mapped)
    got_mask, _ = _label_at(mask_aug, grid, mapped)
    assert inside.mean() > 0.75
    agree = got == sem.reshape(-1)[inside]
    assert agree.mean() >= min_agree
    assert (got_mask == mask.reshape(-1)[inside]).mean() >= min_agree


def test_bda_scale_and_identity() -> None:
    grid = GridConfig(size=(50, 50, 8))
    sem, mask = _blocky_grid(grid, 2)
    same, (m,) = aug.apply_bda_to_grid(np.eye(4), grid, sem, [mask])
    assert same is sem and m is mask
    bda = aug.make_bda(0.0, 0.5, False, False)  # zoom out: the world shrinks towards the ego
    small, (smask,) = aug.apply_bda_to_grid(bda, grid, sem, [mask])
    # Outer voxels and the bottom layer have pre-images outside the grid: free, unobserved.
    assert (small[0] == 17).all() and (small[:, :, 0] == 17).all() and not smask[:, :, 0].any()
    # Points whose images are augmented-voxel centres: their classes must match exactly.
    aug_centres = np.array([[0.8, -2.4, 0.2], [-10.4, 12.0, 1.0], [18.4, 15.2, 1.8]])
    got, inside = _label_at(small, grid, aug_centres)
    want, _ = _label_at(sem, grid, aug_centres / 0.5)
    assert inside.all() and np.array_equal(got, want)


def test_config_validation_and_determinism() -> None:
    with pytest.raises(ValueError, match="flip_prob"):
        aug.AugmentConfig(flip_prob=1.5).validate()
    cfg = aug.AugmentConfig(bev_rot_deg=20.0)
    a1 = aug.sample_bda(cfg, np.random.default_rng(3))
    a2 = aug.sample_bda(cfg, np.random.default_rng(3))
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_allclose(a1[:3, :3] @ a1[:3, :3].T, np.eye(3), atol=1e-12)


def test_extrinsic_noise_augmentation_perturbs_rigidly_at_the_configured_rate() -> None:
    rig = load_nuscenes_sample_rig()
    T = np.stack([c.ego_T_cam for c in rig.cameras])  # n 4 4
    off = aug.AugmentConfig()
    rng = np.random.default_rng(0)
    assert aug.sample_extrinsic_noise(T, off, rng) is T
    assert rng.uniform() == np.random.default_rng(0).uniform()  # off draws nothing
    cfg = aug.AugmentConfig(extrinsic_noise_prob=0.5, extrinsic_noise_deg=3.0, extrinsic_noise_m=0.15)
    rng = np.random.default_rng(1)
    draws = [aug.sample_extrinsic_noise(T, cfg, rng) for _ in range(400)]
    changed = [d for d in draws if d is not T]
    assert 0.4 < len(changed) / len(draws) < 0.6
    angles, shifts = [], []
    for d in changed:
        R = d[:, :3, :3] @ np.transpose(T[:, :3, :3], (0, 2, 1))  # n 3 3, the rotation error
        assert np.allclose(R @ np.transpose(R, (0, 2, 1)), np.eye(3), atol=1e-6)  # still rigid
        angles.append(np.degrees(np.arccos(np.clip((np.trace(R, axis1=1, axis2=2) - 1) / 2, -1, 1))))
        shifts.append(np.abs(d[:, :3, 3] - T[:, :3, 3]))
    angle = np.concatenate(angles)
    # |N(0, s sigma)| with s ~ U(0, 1): mean sigma sqrt(2 / pi) / 2 = 1.20 deg, 6 cm per axis
    assert 1.0 < angle.mean() < 1.4 and 0.04 < np.concatenate(shifts).mean() < 0.08
    with pytest.raises(ValueError, match="extrinsic_noise_prob"):
        aug.AugmentConfig(extrinsic_noise_prob=1.5).validate()


def test_halve_resolution_keeps_pixels_in_place() -> None:
    h, w = 16, 24
    ramp = np.broadcast_to(np.arange(w, dtype=np.float32) * 8.0, (h, w))
    img = np.stack([ramp, ramp, ramp], axis=-1)  # h w 3
    out = aug.halve_resolution(img)
    assert out.shape == img.shape
    # a linear ramp survives area shrink + bilinear enlarge exactly away from the borders
    np.testing.assert_allclose(out[:, 2:-2], img[:, 2:-2], atol=1e-4)
    checker = ((np.indices((h, w)).sum(0) % 2) * 255).astype(np.uint8)[..., None].repeat(3, -1)
    flat = aug.halve_resolution(checker)
    assert np.abs(flat.astype(int) - 127).max() <= 1  # 1-pixel detail is gone


def test_lowres_draws_at_the_configured_rate() -> None:
    rng = np.random.default_rng(0)
    assert not aug.sample_lowres(aug.AugmentConfig(), rng)
    assert rng.uniform() == np.random.default_rng(0).uniform()  # off draws nothing
    cfg = aug.AugmentConfig(lowres_prob=0.25)
    rng = np.random.default_rng(2)
    rate = np.mean([aug.sample_lowres(cfg, rng) for _ in range(800)])
    assert 0.2 < rate < 0.3
    with pytest.raises(ValueError, match="lowres_prob"):
        aug.AugmentConfig(lowres_prob=-0.1).validate()


def test_network_camera_is_the_same_for_every_source_size() -> None:
    cam = load_nuscenes_sample_rig().cameras[1]  # 900 x 1600
    K = cam.K
    out = (256, 704)
    nets = []
    for src in ((900, 1600), (450, 800), (144, 256)):
        Ks = cam.resized(*src).K
        A = aug.image_aug_matrix(src, out, aug.eval_image_aug(src, out))
        K_net, post_rot, post_tran = aug.network_camera(Ks, src, out, A)
        np.testing.assert_allclose(post_rot, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(post_tran, 0.0, atol=1e-9)
        nets.append(K_net)
    for K_net in nets[1:]:
        np.testing.assert_allclose(K_net, nets[0], rtol=2e-3)  # up to the integer rounding of the resize
    # with augmentation the projection is unchanged: post_rot @ K_net + post_tran == A @ K
    a = aug.sample_image_aug((900, 1600), out, aug.AugmentConfig(), np.random.default_rng(3))
    A = aug.image_aug_matrix((900, 1600), out, a)
    K_net, post_rot, post_tran = aug.network_camera(K, (900, 1600), out, A)
    P = post_rot @ K_net
    P[:, 2] += post_tran
    np.testing.assert_allclose(P, A @ K, atol=1e-9)
