"""Visualisation: orientation of BEV maps, camera rendering of voxels, PNG files, the viz CLI."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from scaocc_core.checkpoint import save_checkpoint
from scaocc_core.cli import main as cli_main
from scaocc_core.config import DepthConfig, EncoderConfig, GridConfig, ImageConfig, ModelConfig, VoxelNetConfig
from scaocc_core.data.rig import load_nuscenes_sample_rig
from scaocc_core.grid import FREE, PALETTE
from scaocc_core.model.causal_occ import CausalOcc
from scaocc_core.viz import bev_image, bev_png, camera_overlay_png, overlay, render_voxels_to_cameras, voxels_3d_png
from tests.test_dataset import write_manifest


def _scene() -> np.ndarray:
    sem = np.full((200, 200, 16), FREE, np.uint8)
    sem[:, :, 1] = 11  # road everywhere
    sem[120:130, 110:115, 2:6] = 4  # a car 8-12 m ahead, 4-6 m to the left
    return sem


def _read_png(path: Path) -> np.ndarray:
    img = cv2.imread(str(path))
    assert img is not None, f"{path} is not a readable PNG"
    return img


def test_bev_orientation_and_masks() -> None:
    sem = _scene()
    img = bev_image(sem)
    assert img.shape == (200, 200, 3)
    # +x forward is up, +y left is left: the car (i 120..129, j 110..114) is above and left of centre.
    car = np.all(np.abs(img.astype(int) - PALETTE[4].astype(int)) < 60, axis=-1)
    rows, cols = np.nonzero(car)
    assert rows.min() == 200 - 130 and rows.max() == 200 - 121
    assert cols.min() == 200 - 115 and cols.max() == 200 - 111
    assert car.sum() == 50
    mask = np.zeros_like(sem, dtype=bool)
    mask[:100] = True  # only the rear half observed
    masked = bev_image(sem, mask)
    assert (masked[:100] == 200).all()  # front half: never observed -> grey
    assert not np.all(masked[100:] == 200)


def test_overlay_only_touches_labelled_pixels() -> None:
    img = np.full((40, 60, 3), 100, np.uint8)
    sem = np.full((40, 60), 255, np.uint8)
    sem[:30] = 4  # dense
    sem[:5] = FREE
    out = overlay(img, sem)
    assert (out[30:] == 100).all() and (out[:5] == 100).all() and not (out[10] == 100).all()
    sparse = np.full((40, 60), 255, np.uint8)
    sparse[20, 30] = 7
    dots = overlay(img, sparse)
    assert 4 <= int((dots != 100).any(-1).sum()) <= 25  # one point, dilated into a small square


def test_voxels_render_into_the_right_camera() -> None:
    rig = load_nuscenes_sample_rig()
    sem = np.full((200, 200, 16), FREE, np.uint8)
    sem[125:135, 95:105, 2:8] = 4  # 10-14 m straight ahead
    K = np.stack([c.K for c in rig.cameras])
    T = np.stack([c.ego_T_cam for c in rig.cameras])
    views = render_voxels_to_cameras(sem, GridConfig(), K, T, (900, 1600))
    assert views.shape == (6, 900, 1600)
    front, back = views[rig.names.index("CAM_FRONT")], views[rig.names.index("CAM_BACK")]
    assert (back == 255).all()
    v, u = np.nonzero(front == 4)
    assert 600 < u.mean() < 1000 and 350 < v.mean() < 650  # near the image centre


def test_pngs_are_written(tmp_path: Path) -> None:
    sem = _scene()
    pred = sem.copy()
    pred[120:130, 110:115, 2:6] = 10
    p = bev_png(sem, pred, tmp_path / "bev.png", mask=np.ones_like(sem, dtype=bool))
    assert _read_png(p).shape[1] > 1000
    assert _read_png(voxels_3d_png(sem, tmp_path / "vox.png")).shape[0] > 400
    images = np.full((6, 90, 160, 3), 128, np.uint8)
    labels = np.full((6, 90, 160), 255, np.uint8)
    labels[:, 60:] = 11
    assert _read_png(camera_overlay_png(images, labels, tmp_path / "cams.png")).shape[1] > 1000
    with pytest.raises(ValueError, match="gt or pred"):
        bev_png(None, None, tmp_path / "none.png")


def test_viz_cli_ground_truth_and_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_manifest(tmp_path / "data", frames=2)
    out = tmp_path / "gt"
    assert cli_main(["viz", "--data", str(tmp_path / "data"), "--index", "0", "--split", "val",
                     "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"cameras_gt.png", "bev.png", "voxels_gt.png"}
    cfg = ModelConfig(
        grid=GridConfig(size=(20, 20, 4)),
        image=ImageConfig(num_cams=6, height=32, width=64),
        encoder=EncoderConfig(depth=18, width=8, stride=16, neck_channels=16),
        depth=DepthConfig(d_min=1.0, d_max=9.0, d_step=1.0, context_channels=8, groups=2),
        voxel=VoxelNetConfig(propagation_blocks=1, channels=(8, 8)),
    ).validate()
    ckpt = save_checkpoint(tmp_path / "m.pt", CausalOcc(cfg), cfg)
    out2 = tmp_path / "pred"
    assert cli_main(["viz", "--data", str(tmp_path / "data"), "--split", "val", "--checkpoint", str(ckpt),
                     "--out", str(out2)]) == 0
    names = {p.name for p in out2.iterdir()}
    assert names == {"cameras_gt.png", "cameras_pred.png", "bev.png", "voxels_gt.png", "voxels_pred.png"}
    assert "bev.png" in capsys.readouterr().out
