"""OccDataset on hand-written manifests: shapes, GT downsampling, augmentation, noise, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from scaocc_core.batch import collate
from scaocc_core.config import GridConfig, ImageConfig, ModelConfig
from scaocc_core.data.augment import AugmentConfig, eval_image_aug, image_aug_matrix
from scaocc_core.data.dataset import OccDataset, class_frequencies, parse_synthetic_source
from scaocc_core.data.labels import (
    DataError,
    OccLabels,
    downsample_labels,
    downsample_labels_reference,
)
from scaocc_core.data.manifest import Manifest
from scaocc_core.data.noise import CameraNoise
from scaocc_core.data.rig import load_nuscenes_sample_rig
from scaocc_core.grid import FREE

from .fixtures import MANIFEST_HW, MANIFEST_POINT, project, write_manifest

CFG = ModelConfig(grid=GridConfig(size=(100, 100, 8)), image=ImageConfig(6, 128, 352)).validate()


@pytest.fixture(scope="module")
def manifest_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("manifest")
    write_manifest(root)
    return root


def test_downsample_hand_made() -> None:
    sem = np.full((2, 2, 2), FREE, np.uint8)
    sem = np.tile(sem, (2, 1, 1))  # 4 2 2 -> two coarse voxels along x with factor (2, 2, 2)
    sem[0, 0, 0], sem[0, 1, 1], sem[1, 0, 0] = 4, 4, 7  # coarse 0: car x2, pedestrian x1
    sem[2, 1, 0] = 11  # coarse 1: a single road child among free
    mc = np.zeros_like(sem, dtype=bool)
    mc[3, 1, 1] = True
    out = downsample_labels(OccLabels(sem, mc, np.zeros_like(mc)), (2, 2, 2))
    assert out.semantics.shape == (2, 1, 1)
    assert out.semantics[:, 0, 0].tolist() == [4, 11]
    assert out.mask_camera[:, 0, 0].tolist() == [False, True] and not out.mask_lidar.any()
    empty = downsample_labels(OccLabels(np.full((2, 2, 2), FREE, np.uint8), mc[:2], mc[:2]), (2, 2, 2))
    assert empty.semantics.item() == FREE
    tie = np.full((2, 2, 2), FREE, np.uint8)
    tie[0, 0, 0], tie[1, 1, 1] = 9, 2  # one each: the lower class index wins
    assert downsample_labels(OccLabels(tie, mc[:2], mc[:2]), (2, 2, 2)).semantics.item() == 2


@pytest.mark.parametrize("factor", [(2, 2, 2), (1, 2, 4), (4, 1, 1)])
def test_downsample_kernel_equals_reference(factor: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(sum(factor))
    shape = (8, 12, 16)
    sem = np.where(rng.random(shape) < 0.6, FREE, rng.integers(0, 4, shape)).astype(np.uint8)  # many ties
    sem[:4, :4] = FREE  # all-free coarse voxels
    labels = OccLabels(sem, rng.random(shape) < 0.1, rng.random(shape) < 0.05)
    fast, ref = downsample_labels(labels, factor), downsample_labels_reference(labels, factor)
    for a, b in ((fast.semantics, ref.semantics), (fast.mask_camera, ref.mask_camera),
                 (fast.mask_lidar, ref.mask_lidar)):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_manifest_round_trip(manifest_dir: Path) -> None:
    m = Manifest.load(manifest_dir)
    again = Manifest.load(m.save(manifest_dir / "copy.json"))
    assert again.frames == m.frames and again.splits == m.splits and again.grid == m.grid


def test_item_shapes_and_values(manifest_dir: Path) -> None:
    ds = OccDataset(manifest_dir, "train", CFG)
    assert len(ds) == 2
    b = collate([ds[0], ds[1]])
    assert b.inputs.images.shape == (2, 6, 3, 128, 352) and b.inputs.images.dtype == torch.float32
    assert 0 <= float(b.inputs.images.min()) and float(b.inputs.images.max()) <= 1
    assert b.inputs.camera_valid.all() and b.tokens == ["tok0", "tok1"]
    rig = load_nuscenes_sample_rig().resized(*MANIFEST_HW)
    # test time: the intrinsics at network scale, no further augmentation
    B = image_aug_matrix(MANIFEST_HW, (128, 352), eval_image_aug(MANIFEST_HW, (128, 352)))
    np.testing.assert_allclose(b.inputs.intrinsics[0, 1].numpy(), B @ rig.cameras[1].K, rtol=1e-6)
    np.testing.assert_allclose(b.inputs.post_rot[0].numpy(), np.broadcast_to(np.eye(3), (6, 3, 3)), atol=1e-6)
    np.testing.assert_allclose(b.inputs.post_tran[0].numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(b.inputs.bda[0].numpy(), np.eye(4))
    t = b.targets
    assert t.semantics is not None and t.mask_camera is not None and t.sem2d is not None and t.depth2d is not None
    assert t.semantics.shape == (2, 100, 100, 8) and t.semantics.dtype == torch.long
    assert t.mask_camera.shape == (2, 100, 100, 8) and t.mask_camera.dtype == torch.bool
    assert (t.semantics[0, 50:60, 45:55, 1:3] == 4).all() and (t.semantics[0, :, :, 0] == 11).all()
    assert t.mask_camera[0, :, :, :4].all() and not t.mask_camera[0, :, :, 4:].any()
    assert t.sem2d.shape == (2, 6, 128, 352) and t.depth2d.shape == (2, 6, 128, 352)
    # Sparse 2D labels are scattered, not dropped, and labels and depths coincide.
    assert ((t.sem2d != 255) == (t.depth2d > 0)).all()
    # The eval crop keeps the bottom 128 of 198 resized rows: ~65 % of the 6 x 300 points.
    assert 0.55 * 1800 < int((t.sem2d[0] != 255).sum()) <= 0.7 * 1800


def _blob_centroid(img: torch.Tensor) -> np.ndarray:
    red = (img[0] - img[1]).clamp(min=0).numpy()  # H W
    red[red < 0.2] = 0
    vv, uu = np.mgrid[: red.shape[0], : red.shape[1]]
    return np.array([(uu * red).sum() / red.sum(), (vv * red).sum() / red.sum()])


def test_augmented_blob_and_bda(manifest_dir: Path) -> None:
    cfg = AugmentConfig(bev_rot_deg=30.0, rot_deg=8.0)
    ds = OccDataset(manifest_dir, "train", CFG, augment=cfg, seed=3)
    rig = load_nuscenes_sample_rig().resized(*MANIFEST_HW)
    checked = 0
    for epoch in range(4):
        ds.set_epoch(epoch)
        b = ds[0]
        K_net = b.inputs.intrinsics[0, 1].double().numpy()  # the camera the model is handed
        uv, _ = project(K_net, rig.cameras[1].ego_T_cam, MANIFEST_POINT)
        pr, pt = b.inputs.post_rot[0, 1].double().numpy(), b.inputs.post_tran[0, 1].double().numpy()
        want = pr[:2, :2] @ uv + pt[:2]
        if 5 < want[0] < 346 and 5 < want[1] < 122:
            np.testing.assert_allclose(_blob_centroid(b.inputs.images[0, 1]), want, atol=0.7)
            checked += 1
        # The car block's centre, mapped by bda, lies in a car voxel of the augmented GT.
        bda = b.inputs.bda[0].double().numpy()
        centre = bda @ np.array([0.0 + 4.0, 0.0, 0.6, 1.0])  # block spans x 0..8, y -4..4, z -0.2..1.4
        idx = np.floor((centre[:3] - np.array([-40, -40, -1.0])) / np.array([0.8, 0.8, 0.8])).astype(int)
        assert b.targets.semantics is not None
        assert int(b.targets.semantics[0, idx[0], idx[1], idx[2]]) == 4
    assert checked >= 2


def test_determinism(manifest_dir: Path) -> None:
    cfg = AugmentConfig(bev_rot_deg=10.0)
    a = OccDataset(manifest_dir, "train", CFG, augment=cfg, seed=1)[1]
    b = OccDataset(manifest_dir, "train", CFG, augment=cfg, seed=1)[1]
    for x, y in ((a.inputs.images, b.inputs.images), (a.inputs.post_rot, b.inputs.post_rot),
                 (a.inputs.bda, b.inputs.bda), (a.targets.semantics, b.targets.semantics)):
        assert x is not None and y is not None and torch.equal(x, y)
    other = OccDataset(manifest_dir, "train", CFG, augment=cfg, seed=2)[1]
    assert not torch.equal(a.inputs.post_rot, other.inputs.post_rot)


def test_lowres_augmentation_blurs_images_and_keeps_geometry(manifest_dir: Path) -> None:
    sharp = OccDataset(manifest_dir, "train", CFG, augment=AugmentConfig(bev_rot_deg=10.0), seed=3)[1]
    lowres = AugmentConfig(bev_rot_deg=10.0, lowres_prob=1.0)
    blurred = OccDataset(manifest_dir, "train", CFG, augment=lowres, seed=3)[1]
    for x, y in ((sharp.inputs.post_rot, blurred.inputs.post_rot), (sharp.inputs.bda, blurred.inputs.bda),
                 (sharp.inputs.ego_T_cam, blurred.inputs.ego_T_cam),
                 (sharp.targets.semantics, blurred.targets.semantics)):
        assert x is not None and y is not None and torch.equal(x, y)
    # detail lost (horizontal gradient energy falls), brightness kept
    def detail(img: torch.Tensor) -> float:
        return float((img[..., 1:] - img[..., :-1]).abs().mean())

    assert detail(blurred.inputs.images) < 0.9 * detail(sharp.inputs.images)
    assert abs(float(blurred.inputs.images.mean() - sharp.inputs.images.mean())) < 2e-3


def test_camera_noise_leaves_images(manifest_dir: Path) -> None:
    clean = OccDataset(manifest_dir, "val", CFG)[0]
    noisy_ds = OccDataset(manifest_dir, "val", CFG, camera_noise=CameraNoise.parse("so3:2,0.1"), noise_seed=4)
    noisy, again = noisy_ds[0], noisy_ds[0]
    assert torch.equal(clean.inputs.images, noisy.inputs.images)
    assert not torch.allclose(clean.inputs.ego_T_cam, noisy.inputs.ego_T_cam)
    assert torch.equal(noisy.inputs.ego_T_cam, again.inputs.ego_T_cam)


def test_bad_data_names_the_file(tmp_path: Path) -> None:
    m = write_manifest(tmp_path, frames=2, with_2d=False)
    img = m.resolve(m.frames[0].cameras["CAM_BACK"].image)
    img.write_bytes(b"not a png")
    with pytest.raises(DataError, match="CAM_BACK.png"):
        OccDataset(tmp_path, "train", CFG)[0]
    img.unlink()
    with pytest.raises(DataError, match="CAM_BACK.png"):
        OccDataset(tmp_path, "train", CFG)[0]
    (tmp_path / "gts/frame1/labels.npz").write_bytes(b"\x00" * 10)
    with pytest.raises(DataError, match="frame1/labels.npz"):
        OccDataset(tmp_path, "val", CFG)[0]
    with pytest.raises(DataError, match="integer multiple"):
        OccDataset(tmp_path, "val", ModelConfig(grid=GridConfig(size=(150, 150, 16))))


def test_class_frequencies(manifest_dir: Path) -> None:
    ds = OccDataset(manifest_dir, "all", CFG)
    counts = class_frequencies(ds, max_frames=2)
    assert counts.shape == (18,)
    # 2 frames x road (100 x 100 x 1 coarse layer) and the car block (10 x 10 x 2, observed).
    assert counts[11] == 2 * 100 * 100 and counts[4] == 2 * 10 * 10 * 2
    fine = class_frequencies(Manifest.load(manifest_dir), max_frames=1)
    assert fine[11] == 200 * 200 * 2 and fine[4] == 20 * 20 * 4


SYNTH = "synthetic:scenes=3,frames=2,seed=5,preset=easy,res=64x176,val_scenes=1"


def test_synthetic_source_parsing() -> None:
    spec, val = parse_synthetic_source(SYNTH)
    got = (spec.scenes, spec.frames, spec.seed, spec.preset, spec.height, spec.width, val)
    assert got == (3, 2, 5, "easy", 64, 176, 1)
    for bad, msg in (("synthetic:scenes=2,colour=red", "unknown key"), ("synthetic:res=64", "res"),
                     ("synthetic:scenes=2,val_scenes=3", "val_scenes"), ("synthetic:frames", "KEY=VALUE")):
        with pytest.raises(ValueError, match=msg):
            parse_synthetic_source(bad)


def test_synthetic_on_the_fly() -> None:
    train, val = OccDataset(SYNTH, "train", CFG), OccDataset(SYNTH, "val", CFG)
    assert len(train) == 4 and len(val) == 2
    b = val[1]
    assert b.tokens == [val.raw_frame(1).token] and "scene002" in b.tokens[0]
    assert b.inputs.images.shape == (1, 6, 3, 128, 352)
    assert b.targets.semantics is not None and b.targets.semantics.shape == (1, 100, 100, 8)
    assert b.targets.sem2d is not None and b.targets.depth2d is not None
    # Dense rendered labels: every pixel of the upscaled view has a class (17 = sky) and
    # sky is exactly where there is no depth.
    assert (b.targets.sem2d != 255).all()
    assert torch.equal(b.targets.sem2d == FREE, b.targets.depth2d == 0)
    again = val[1]
    assert again.targets.semantics is not None
    assert torch.equal(b.inputs.images, again.inputs.images)
    assert torch.equal(b.targets.semantics, again.targets.semantics)


def test_written_synthetic_set_matches_on_the_fly(tmp_path: Path) -> None:
    from scaocc_core.data.synthetic import write_dataset

    spec, val_scenes = parse_synthetic_source(SYNTH)
    write_dataset(tmp_path, spec, val_scenes)
    cfg = AugmentConfig(bev_rot_deg=15.0)
    from_disk = OccDataset(tmp_path, "val", CFG, augment=cfg, seed=9)
    live = OccDataset(SYNTH, "val", CFG, augment=cfg, seed=9)
    assert len(from_disk) == len(live) == 2
    a, b = from_disk[1], live[1]
    assert a.tokens == b.tokens
    for name in ("images", "intrinsics", "ego_T_cam", "post_rot", "post_tran", "bda"):
        assert torch.equal(getattr(a.inputs, name), getattr(b.inputs, name)), name
    for name in ("semantics", "mask_camera", "mask_lidar", "sem2d", "depth2d"):
        x, y = getattr(a.targets, name), getattr(b.targets, name)
        assert x is not None and y is not None and torch.equal(x, y), name
    freq = class_frequencies(from_disk, max_frames=2)
    assert freq.sum() == int(sum(from_disk.labels(i).mask_camera.sum() for i in range(2)))  # type: ignore[union-attr]
