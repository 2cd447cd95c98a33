"""Visualisation: orientation of BEV maps, camera rendering of voxels, PNG files, the viz CLI."""

from __future__ import annotations

import logging
import sys
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
from scaocc_core.viz3d import CHECKER_DARKEN, FACE_NORMALS, FACE_SHADE, cube_mesh, open3d_unavailable, warn_fallback

from .fixtures import write_manifest


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


def test_view3d_without_open3d(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "open3d", None)  # import open3d now raises ImportError
    warn_fallback.cache_clear()
    sem = _scene()
    with caplog.at_level(logging.WARNING, logger="scaocc_core.viz3d"):
        auto = _read_png(voxels_3d_png(sem, tmp_path / "auto.png"))
    assert "open3d is not installed" in caplog.text and "matplotlib" in caplog.text
    assert np.array_equal(auto, _read_png(voxels_3d_png(sem, tmp_path / "mpl.png", backend="matplotlib")))
    with pytest.raises(RuntimeError, match="open3d requested, but open3d is not installed"):
        voxels_3d_png(sem, tmp_path / "o3d.png", backend="open3d")
    with pytest.raises(ValueError, match="backend must be one of"):
        voxels_3d_png(sem, tmp_path / "x.png", backend="vtk")
    assert cli_main(["viz", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--view3d", "open3d"]) == 2
    assert "--view3d open3d, but open3d is not installed" in capsys.readouterr().err


def test_cube_mesh_of_two_voxels() -> None:
    grid = GridConfig(lower=(-1.0, 0.0, 0.0), upper=(1.0, 1.5, 2.0), size=(4, 3, 4))  # 0.5 m voxels
    idx = np.array([[1, 1, 2], [2, 1, 2]])  # side by side along x, inside the grid
    mesh = cube_mesh(idx, np.array([4, 7]), grid, max_edge=0.5)
    # 12 faces, less the 2 they share: 10 quads of 4 vertices and 2 triangles.
    assert mesh.vertices.shape == (40, 3) and mesh.colours.shape == (40, 3) and mesh.triangles.shape == (20, 3)
    corner = (mesh.vertices - np.array(grid.lower)) / 0.5  # in voxel units
    assert np.allclose(corner, np.round(corner))
    tri_corner = corner[mesh.triangles]  # T 3 3, voxel units
    tri_owner = (tri_corner[:, :, 0].mean(1) > 2).astype(int)  # voxel 0 spans x 1..2, voxel 1 x 2..3
    for k in range(2):
        rel = tri_corner[tri_owner == k].reshape(-1, 3) - idx[k]  # every vertex is a corner of its voxel
        assert set(map(tuple, np.round(rel).astype(int))) == {(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)}
    # Counter-clockwise from outside: each normal points away from its voxel's centre.
    v = mesh.vertices[mesh.triangles]  # T 3 3
    normal = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    centre = np.array(grid.lower) + (idx[tri_owner] + 0.5) * 0.5
    assert (np.einsum("tc,tc->t", normal, v.mean(1) - centre) > 0).all()
    # Colours: palette x shade of the face's direction x checker (voxel 1 + 1 + 2 even, 2 + 1 + 2 odd).
    face = np.argmax(normal / np.linalg.norm(normal, axis=1, keepdims=True) @ FACE_NORMALS.T, axis=1)  # T
    assert sorted(np.bincount(face * 2 + tri_owner, minlength=12).tolist()) == [0, 0] + [2] * 10  # 5 faces each
    checker = np.array([1.0, 1.0 - CHECKER_DARKEN])[tri_owner]  # T
    expected = PALETTE[np.array([4, 7])[tri_owner]] / 255.0 * (FACE_SHADE[face] * checker)[:, None]  # T 3
    assert np.allclose(mesh.colours[mesh.triangles], expected[:, None, :])
    top = face == 4  # +z: the top faces keep the exact palette colour on the even voxel
    assert np.allclose(mesh.colours[mesh.triangles[top & (tri_owner == 0)]], PALETTE[4] / 255.0)
    # Faces longer than max_edge are cut: 2 x 2 quads per face, same surface, same colours.
    fine = cube_mesh(idx, np.array([4, 7]), grid, max_edge=0.25)
    assert fine.triangles.shape == (80, 3) and fine.vertices.shape == (160, 3)
    fv = fine.vertices[fine.triangles]  # T 3 3
    area = np.linalg.norm(np.cross(fv[:, 1] - fv[:, 0], fv[:, 2] - fv[:, 0]), axis=1)
    assert np.allclose(area, 0.25**2) and np.isclose(area.sum() / 2, 10 * 0.5**2)
    fine_owner = ((fv[:, :, 0].mean(1) - grid.lower[0]) / 0.5 > 2).astype(int)  # T
    fine_normal = np.cross(fv[:, 1] - fv[:, 0], fv[:, 2] - fv[:, 0])
    fine_centre = np.array(grid.lower) + (idx[fine_owner] + 0.5) * 0.5  # T 3, centre of the owning voxel
    assert (np.einsum("tc,tc->t", fine_normal, fv.mean(1) - fine_centre) > 0).all()
    assert np.allclose(np.unique(fine.colours, axis=0), np.unique(mesh.colours, axis=0))
    with pytest.raises(ValueError, match="2 voxel indices but 1 labels"):
        cube_mesh(idx, np.array([4]), grid)


def test_open3d_render(tmp_path: Path) -> None:
    pytest.importorskip("open3d")
    reason = open3d_unavailable()
    if reason is not None:
        pytest.skip(reason)
    sem = _scene()
    img = _read_png(voxels_3d_png(sem, tmp_path / "o3d.png", backend="open3d"))[..., ::-1]  # RGB
    assert img.shape == (750, 1000 + 220, 3)  # render plus legend panel
    render = img[:, :1000]
    for cls, at_least in ((4, 30), (11, 5000)):  # top faces of even voxels keep the exact colour
        assert (render == PALETTE[cls]).all(-1).sum() >= at_least, f"class {cls} not drawn"
    cols = np.nonzero((render == PALETTE[4]).all(-1))[1]
    assert cols.mean() < 500  # the car (+y: left of the ego) is on the left of the picture
    assert (render[40:60] == 255).all()  # white background above the grid
