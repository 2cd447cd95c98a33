"""The synthetic world: 2D/3D label consistency, visibility masks, determinism, classes, files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scaocc_core.config import GridConfig
from scaocc_core.data.manifest import Manifest
from scaocc_core.data.rig import load_nuscenes_sample_rig
from scaocc_core.data.synthetic import SynthFrame, SynthSpec, render_frame, write_dataset
from scaocc_core.data.synthetic.scene import get_scene
from scaocc_core.data.synthetic.voxelize import camera_mask
from scaocc_core.grid import CLASS_NAMES, FREE

SPEC = SynthSpec(seed=3, scenes=4, frames=10, height=64, width=176)


@pytest.fixture(scope="module")
def frames() -> list[SynthFrame]:
    return [render_frame(SPEC, s, f) for s, f in ((0, 0), (1, 4), (2, 9))]


def _pixel_rays(frame: SynthFrame, stride: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Origins, directions (unit optical-axis component), depths and labels of sampled pixels (ego frame)."""
    _, H, W = frame.depth2d.shape
    v, u = np.mgrid[0:H:stride, 0:W:stride]
    pix = np.stack([u, v, np.ones_like(u)], axis=-1).reshape(-1, 3).astype(np.float64)  # (h w) 3
    origins, dirs, depth, labels = [], [], [], []
    for c in range(len(frame.camera_names)):
        K, T = frame.intrinsics[c], frame.ego_T_cam[c]
        d = pix @ np.linalg.inv(K).T @ T[:3, :3].T
        dirs.append(d)
        origins.append(np.broadcast_to(T[:3, 3], d.shape))
        depth.append(frame.depth2d[c][v, u].ravel())
        labels.append(frame.sem2d[c][v, u].ravel())
    return np.concatenate(origins), np.concatenate(dirs), np.concatenate(depth), np.concatenate(labels)


def _voxel_index(points: np.ndarray, grid: GridConfig) -> tuple[np.ndarray, np.ndarray]:
    idx = np.floor((points - np.asarray(grid.lower)) / np.asarray(grid.voxel_size)).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < np.asarray(grid.size)), axis=-1)
    return idx, inside


def test_pixel_labels_match_first_occupied_voxel(frames: list[SynthFrame]) -> None:
    agree = total = 0
    for frame in frames:
        o, d, depth, labels = _pixel_rays(frame, 2)
        _, inside = _voxel_index(o + depth[:, None] * d, SPEC.grid)
        keep = (depth > 0) & inside
        o, d, depth, labels = o[keep], d[keep], depth[keep], labels[keep]
        steps = np.arange(0.0, 1.0 + 1e-9, 0.005)  # fractions of the hit depth, plus a margin below
        for a in range(0, len(o), 2000):
            t = depth[a:a + 2000, None] * steps[None] * 1.02 + 0.05  # r s
            pts = o[a:a + 2000, None] + t[..., None] * d[a:a + 2000, None]  # r s 3
            idx, ok = _voxel_index(pts, SPEC.grid)
            cls = np.full(ok.shape, FREE, np.uint8)
            cls[ok] = frame.semantics[idx[ok][:, 0], idx[ok][:, 1], idx[ok][:, 2]]
            occupied = cls != FREE
            first = np.argmax(occupied, axis=1)
            hit = occupied.any(axis=1)
            found = cls[np.arange(len(first)), first]
            agree += int(np.sum(hit & (found == labels[a:a + 2000])))
            total += len(first)
    assert total > 5000
    assert agree / total >= 0.95, f"only {agree / total:.3f} of pixels agree with their first GT voxel"


def test_depth_unprojects_onto_occupied_voxels(frames: list[SynthFrame]) -> None:
    near = total = 0
    for frame in frames:
        o, d, depth, _ = _pixel_rays(frame, 2)
        pts = o + depth[:, None] * d
        idx, inside = _voxel_index(pts, SPEC.grid)
        idx = idx[(depth > 0) & inside]
        occ = np.pad(frame.semantics != FREE, 1)  # a free border so neighbours never wrap
        hit = np.zeros(len(idx), bool)
        for off in np.ndindex(3, 3, 3):  # the voxel or one of its 26 neighbours
            q = idx + np.asarray(off)
            hit |= occ[q[:, 0], q[:, 1], q[:, 2]]
        near += int(hit.sum())
        total += len(idx)
    assert total > 5000
    assert near / total >= 0.97, f"only {near / total:.3f} of unprojected pixels land near occupied voxels"


def test_mask_camera_stops_at_walls() -> None:
    grid = GridConfig()
    rig = load_nuscenes_sample_rig().resized(64, 176)
    K = np.stack([c.K for c in rig.cameras])
    T = np.stack([c.ego_T_cam for c in rig.cameras])
    sem = np.full(grid.size, FREE, np.uint8)
    sem[:, :, 2] = 11  # road layer
    sem[125:127, 75:125, 3:] = 15  # a wall at x = 10..10.8 m, y = -10..10 m
    mask = camera_mask(sem, grid, K, T, 64, 176)
    assert mask[125, 90:110, 3:10].all(), "the wall's face must be observed"
    assert mask[115:124, 95:105, 4:8].all(), "free space in front of the wall must be observed"
    assert not mask[127:, 85:115, 3:].any(), "voxels behind the wall must stay unobserved"
    assert not mask[:, :, :2].any(), "voxels below the road layer must stay unobserved"


def test_masks_of_a_rendered_frame(frames: list[SynthFrame]) -> None:
    for frame in frames:
        occupied = frame.semantics != FREE
        assert frame.mask_camera[occupied].any() and frame.mask_lidar[occupied].any()
        # the ground layer (z index 2) is closed everywhere, so nothing below it can be seen
        assert occupied[:, :, 2].mean() > 0.9 and not frame.mask_camera[:, :, :2].any()
        assert frame.mask_camera.mean() < 0.8 and frame.mask_lidar.mean() < 0.8


def test_determinism_of_frames() -> None:
    spec = SynthSpec(seed=5, scenes=1, frames=3, height=32, width=88)
    a = render_frame(spec, 0, 2)
    get_scene.cache_clear()
    b = render_frame(spec, 0, 2, parallel=True)
    for name in ("images", "sem2d", "depth2d", "semantics", "mask_camera", "mask_lidar", "global_T_ego"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    c = render_frame(SynthSpec(seed=6, scenes=1, frames=3, height=32, width=88), 0, 2)
    assert not np.array_equal(a.images, c.images)
    assert not np.array_equal(a.semantics, c.semantics)
    moved = render_frame(spec, 0, 0)
    assert not np.allclose(moved.global_T_ego, a.global_T_ego), "the ego must move between frames"


def test_write_dataset_is_byte_identical_and_round_trips(tmp_path: Path) -> None:
    spec = SynthSpec(seed=2, scenes=2, frames=2, height=32, width=88)
    m1 = write_dataset(tmp_path / "a", spec, val_scenes=1)  # this process, numba threads
    write_dataset(tmp_path / "b", spec, val_scenes=1, workers=2)  # two single-threaded processes
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    loaded = Manifest.load(tmp_path / "a")
    assert loaded.source == "synthetic" and len(loaded.frames) == 4 == len(m1.frames)
    assert loaded.extra["synth_spec"]["seed"] == 2
    train = {f.scene for f in loaded.split("train")}
    val = {f.scene for f in loaded.split("val")}
    assert len(train) == len(val) == 1 and not train & val
    for f in loaded.frames:
        assert f.occ_path is not None
        labels = np.load(loaded.resolve(f.occ_path))
        assert labels["semantics"].shape == (200, 200, 16) and labels["mask_camera"].dtype == bool
        for cam in f.cameras.values():
            assert loaded.resolve(cam.image).is_file() and loaded.resolve(cam.sem2d or "").is_file()
            assert np.load(loaded.resolve(cam.depth2d or "")).shape == (32, 88)


def test_every_class_occurs_with_realistic_imbalance() -> None:
    spec = SynthSpec(seed=0, scenes=4, frames=10, height=16, width=44)
    counts = np.zeros(18, np.int64)
    for scene in range(spec.scenes):
        for index in (0, 5, 9):
            counts += np.bincount(render_frame(spec, scene, index).semantics.ravel(), minlength=18)
    missing = [CLASS_NAMES[c] for c in range(17) if counts[c] == 0]
    assert not missing, f"classes never voxelised: {missing}"
    name = {n: i for i, n in enumerate(CLASS_NAMES)}
    big = counts[name["driveable_surface"]] + counts[name["manmade"]]
    small = counts[name["traffic_cone"]] + counts[name["bicycle"]]
    assert big > 50 * small
