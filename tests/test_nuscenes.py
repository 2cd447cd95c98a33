"""The Occ3D-nuScenes converter on a pickle in the exact BEVDet schema, built from the real sample."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scaocc_core.cli import main as cli_main
from scaocc_core.config import ImageConfig, ModelConfig
from scaocc_core.data.dataset import OccDataset
from scaocc_core.data.labels import DataError, OccLabels, read_depth2d, read_sem2d, save_occ3d_labels
from scaocc_core.data.manifest import Manifest
from scaocc_core.data.nuscenes import LIDARSEG_TO_OCC3D, convert, project_points
from scaocc_core.data.rig import NUSCENES_CAMERAS, default_sample_dir
from scaocc_core.grid import FREE

SAMPLE = default_sample_dir()
META = json.loads((SAMPLE / "sample.json").read_text())


def matrix_to_quaternion(R: np.ndarray) -> list[float]:
    """(w, x, y, z) of a rotation matrix (Shepperd's method)."""
    t = np.trace(R)
    if t > 0:
        s = 2 * np.sqrt(t + 1)
        q = [s / 4, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2 * np.sqrt(1 + R[i, i] - R[j, j] - R[k, k])
        q = [0.0] * 4
        q[0] = (R[k, j] - R[j, k]) / s
        q[1 + i], q[1 + j], q[1 + k] = s / 4, (R[j, i] + R[i, j]) / s, (R[k, i] + R[i, k]) / s
    return [float(v) for v in q]


def _quat_trans(T: np.ndarray, prefix: str) -> dict[str, Any]:
    return {f"{prefix}_rotation": matrix_to_quaternion(T[:3, :3]), f"{prefix}_translation": T[:3, 3].tolist()}


def _link(data_root: Path, sub: str, name: str) -> str:
    """Symlink a real sample file into ``data_root/sub`` and return its path as an info would."""
    (data_root / sub).mkdir(parents=True, exist_ok=True)
    target = data_root / sub / name
    if not target.exists():
        target.symlink_to(SAMPLE / name)
    return f"./data/nuscenes/{sub}/{name}"


def make_info(data_root: Path, token: str, scene: str, camera_motion: bool) -> dict[str, Any]:
    """One info in the bevdetv2 schema; ``camera_motion`` uses the real per-camera ego poses."""
    G_l = np.asarray(META["ego2global"])
    lidar2ego = np.asarray(META["lidar"]["lidar2ego"])
    cams = {}
    for name in NUSCENES_CAMERAS:
        c = META["cameras"][name]
        cam2ego = np.asarray(c["cam2ego"])
        # Camera-time ego pose recovered from lidar2cam = inv(cam2ego) inv(G_c) G_l lidar2ego.
        G_c = G_l @ lidar2ego @ np.linalg.inv(np.asarray(c["lidar2cam"])) @ np.linalg.inv(cam2ego)
        cams[name] = {
            "data_path": _link(data_root, f"samples/{name}", c["file"]),
            "type": name,
            "sample_data_token": f"{token}-{name}",
            "timestamp": int(c["timestamp_s"] * 1e6),
            "cam_intrinsic": np.asarray(c["intrinsics_K"]),
            **_quat_trans(cam2ego, "sensor2ego"),
            **_quat_trans(G_c if camera_motion else G_l, "ego2global"),
        }
    return {
        "token": token,
        "scene_token": f"{scene}-token",
        "scene_name": scene,
        "timestamp": int(META["timestamp_s"] * 1e6),
        "lidar_path": _link(data_root, "samples/LIDAR_TOP", META["lidar"]["file"]),
        "lidar_token": f"lidar-{token}",
        "sweeps": [],
        "cams": cams,
        **_quat_trans(lidar2ego, "lidar2ego"),
        **_quat_trans(G_l, "ego2global"),
        "occ_path": f"./data/nuscenes/gts/{scene}/{token}",
    }


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Manifest, Path]:
    tmp = tmp_path_factory.mktemp("nusc")
    data_root = tmp / "nuscenes"
    seg_dir = tmp / "lidarseg"
    seg_dir.mkdir()
    points = np.fromfile(SAMPLE / META["lidar"]["file"], dtype=np.float32).reshape(-1, 5)
    z_ego = points[:, :3] @ np.asarray(META["lidar"]["lidar2ego"])[2, :3] + META["lidar"]["lidar2ego"][2][3]
    seg = np.where(z_ego < 0.3, 24, 28).astype(np.uint8)  # road below 0.3 m, man-made above
    seg[::50] = 17  # a sprinkling of cars
    infos = {
        "train": [make_info(data_root, "tokA", "scene-0001", True)],
        "val": [make_info(data_root, "tokB", "scene-0002", True), make_info(data_root, "tokC", "scene-0002", False)],
    }
    sem = np.full((200, 200, 16), FREE, np.uint8)
    sem[:, :, 1] = 11
    mask = np.zeros_like(sem, dtype=bool)
    mask[:, :, :4] = True
    for split, split_infos in infos.items():
        for info in split_infos:
            save_occ3d_labels(data_root / f"gts/{info['scene_name']}/{info['token']}/labels.npz",
                              OccLabels(sem, mask, mask))
            seg.tofile(seg_dir / f"{info['lidar_token']}_lidarseg.bin")
        with (tmp / f"infos_{split}.pkl").open("wb") as fh:
            pickle.dump({"infos": split_infos, "metadata": {"version": "v1.0-mini"}}, fh)
    out = tmp / "out"
    assert cli_main(["prepare-nuscenes", "--infos-train", str(tmp / "infos_train.pkl"),
                     "--infos-val", str(tmp / "infos_val.pkl"), "--data-root", str(data_root),
                     "--lidarseg", str(seg_dir), "--out", str(out)]) == 0
    return Manifest.load(out), tmp


def test_manifest_calibration(converted: tuple[Manifest, Path]) -> None:
    m, _ = converted
    assert m.splits == {"train": [0], "val": [1, 2]} and m.camera_names == list(NUSCENES_CAMERAS)
    assert [f.scene for f in m.frames] == ["scene-0001", "scene-0002", "scene-0002"]
    assert m.frames[0].timestamp == pytest.approx(META["timestamp_s"], abs=1e-6)
    lidar2ego = np.asarray(META["lidar"]["lidar2ego"])
    for name in NUSCENES_CAMERAS:
        c = META["cameras"][name]
        moving, static = m.frames[0].cameras[name], m.frames[2].cameras[name]
        np.testing.assert_allclose(moving.K(), c["intrinsics_K"])
        assert Path(moving.image).resolve() == (SAMPLE / c["file"]).resolve()
        # Same ego pose for camera and keyframe: ego_T_cam is cam2ego itself.
        np.testing.assert_allclose(static.T(), c["cam2ego"], atol=2e-6)
        # Real per-camera ego poses: the keyframe-ego extrinsics reproduce lidar2cam.
        np.testing.assert_allclose(np.linalg.inv(moving.T()) @ lidar2ego, c["lidar2cam"], atol=2e-5)
    np.testing.assert_allclose(m.frames[0].global_T_ego, META["ego2global"], atol=1e-5)


def test_lidarseg_projection(converted: tuple[Manifest, Path]) -> None:
    m, _ = converted
    points = np.fromfile(SAMPLE / META["lidar"]["file"], dtype=np.float32).reshape(-1, 5)[:, :3].astype(float)
    for name in NUSCENES_CAMERAS:
        rec = m.frames[0].cameras[name]
        assert rec.sem2d is not None and rec.depth2d is not None
        sem, depth = read_sem2d(m.resolve(rec.sem2d)), read_depth2d(m.resolve(rec.depth2d))
        assert sem.shape == depth.shape == (900, 1600)
        labelled = sem != 255
        # The sample's README: 3,000 to about 4,800 points land in each image (CAM_BACK: 4,826).
        assert 3000 <= labelled.sum() <= 4850, (name, labelled.sum())
        assert np.array_equal(labelled, depth > 0) and depth[labelled].min() > 1.0
        assert set(np.unique(sem[labelled])) <= {4, 11, 15} and (sem == 11).sum() > 100
        # Independent check straight from the sample's lidar2cam and K.
        c = META["cameras"][name]
        pc = points @ np.asarray(c["lidar2cam"])[:3, :3].T + np.asarray(c["lidar2cam"])[:3, 3]
        uvw = pc[pc[:, 2] > 1.0] @ np.asarray(c["intrinsics_K"]).T
        u, v = np.rint(uvw[:, 0] / uvw[:, 2]), np.rint(uvw[:, 1] / uvw[:, 2])
        ok = (u >= 0) & (u < 1600) & (v >= 0) & (v < 900)
        ref = np.zeros((900, 1600), bool)
        ref[v[ok].astype(int), u[ok].astype(int)] = True
        assert (ref & labelled).sum() >= 0.99 * labelled.sum() and abs(int(ref.sum()) - int(labelled.sum())) <= 10


def test_dataset_reads_converted(converted: tuple[Manifest, Path]) -> None:
    m, _ = converted
    cfg = ModelConfig(image=ImageConfig(6, 256, 704)).validate()
    b = OccDataset(m.root, "val", cfg)[0]
    assert b.inputs.images.shape == (1, 6, 3, 256, 704) and b.tokens == ["tokB"]
    assert b.targets.semantics is not None and b.targets.semantics.shape == (1, 200, 200, 16)
    assert (b.targets.semantics[0, :, :, 1] == 11).all()
    assert b.targets.sem2d is not None and b.targets.sem2d.shape == (1, 6, 256, 704)
    per_cam = (b.targets.sem2d[0] != 255).flatten(1).sum(1)
    assert (per_cam > 1000).all()  # sparse labels are scattered through the 0.44 resize


def test_mapping_and_errors(converted: tuple[Manifest, Path]) -> None:
    _, tmp = converted
    assert LIDARSEG_TO_OCC3D[17] == 4 and LIDARSEG_TO_OCC3D[24] == 11 and LIDARSEG_TO_OCC3D[2] == 7
    assert LIDARSEG_TO_OCC3D[0] == 255 and LIDARSEG_TO_OCC3D[31] == 255 and LIDARSEG_TO_OCC3D[1] == 0
    assert ((LIDARSEG_TO_OCC3D < 17) | (LIDARSEG_TO_OCC3D == 255)).all()
    sem, depth = project_points(np.array([[10.0, 0, 1.5], [0.5, 0, 1.5]]), np.array([4, 4], np.uint8),
                                np.array([[100.0, 0, 50], [0, 100, 50], [0, 0, 1]]),
                                np.array(META["cameras"]["CAM_FRONT"]["cam2ego"]), (100, 100))
    assert (sem != 255).sum() == 1 and depth.max() == pytest.approx(10.0 - 1.7, abs=0.05)
    with pytest.raises(DataError, match="not found"):
        convert(tmp / "infos_val.pkl", None, tmp / "out2")  # paths not re-rooted: ./data/... missing
    (tmp / "junk.pkl").write_bytes(b"junk")
    with pytest.raises(DataError, match="junk.pkl"):
        convert(tmp / "junk.pkl", None, tmp / "out3")
