"""Node parameters (defaults file, validation) and the extrinsics helpers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from scaocc_core.data.rig import load_nuscenes_sample_rig
from scaocc_core.geometry import make_transform
from scaocc_ros.calibration import (
    CalibrationError,
    StaticTransformTree,
    extrinsics_from_values,
    pose_to_matrix,
)
from scaocc_ros.params import NodeParams, ParamError, defaults

ROOT = Path(__file__).resolve().parents[2]
YAML = yaml.safe_load((ROOT / "config" / "occ_node.yaml").read_text())["occ_node"]["ros__parameters"]


def test_yaml_defaults_equal_the_declared_ones() -> None:
    declared = defaults()
    in_yaml = {k: v for k, v in YAML.items() if k not in ("extrinsics", "use_sim_time")}
    # the file carries the nuScenes sample rig's extrinsics; the node's default reads /tf_static
    assert in_yaml == {**declared, "extrinsics_source": "params"}
    assert declared["extrinsics_source"] == "tf" and declared["device"] == "auto"


def test_yaml_extrinsics_are_the_nuscenes_rig() -> None:
    rig = load_nuscenes_sample_rig()
    for cam in rig.cameras:
        e = YAML["extrinsics"][cam.name.lower()]
        T = extrinsics_from_values(cam.name, e["translation"], e["rotation_xyzw"], [])
        np.testing.assert_allclose(T, cam.ego_T_cam, atol=2e-4)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"device": "tpu"}, "device='tpu' must be one of"),
        ({"camera_names": ("a", "a")}, "unique"),
        ({"camera_names": ("cam-1",)}, "not valid ROS name tokens"),
        ({"sync_slop_s": 0.0}, "sync_slop_s must be > 0"),
        ({"min_cameras": 7}, r"min_cameras must be in 1\.\.6"),
        ({"model_path": "", "model_config": ""}, "set model_path"),
    ],
)
def test_validation_names_the_parameter(change: dict[str, object], match: str) -> None:
    with pytest.raises(ParamError, match=match):
        dataclasses.replace(NodeParams(), **change).validate()  # type: ignore[arg-type]


def test_extrinsics_values() -> None:
    T = extrinsics_from_values("c", [1, 2, 3], [0, 0, np.sin(0.25), np.cos(0.25)], [])  # 0.5 rad about z
    np.testing.assert_allclose(T[:3, 3], [1, 2, 3])
    np.testing.assert_allclose(T[:2, :2], [[np.cos(0.5), -np.sin(0.5)], [np.sin(0.5), np.cos(0.5)]], atol=1e-12)
    M = extrinsics_from_values("c", [], [], T.ravel().tolist())
    np.testing.assert_allclose(M, T)
    with pytest.raises(CalibrationError, match="no extrinsics for camera 'c'"):
        extrinsics_from_values("c", [], [], [])
    with pytest.raises(CalibrationError, match="not unit length"):
        extrinsics_from_values("c", [0, 0, 0], [0, 0, 0, 2], [])
    with pytest.raises(CalibrationError, match="either matrix or"):
        extrinsics_from_values("c", [0, 0, 0], [], T.ravel().tolist())
    bad = T.copy()
    bad[:3, :3] *= 2
    with pytest.raises(CalibrationError, match="not a proper rotation"):
        extrinsics_from_values("c", [], [], bad.ravel().tolist())


def test_static_tree_composes_chains() -> None:
    rng = np.random.default_rng(0)

    def random_pose() -> np.ndarray:
        q = rng.normal(size=4)
        return pose_to_matrix(rng.normal(size=3), q / np.linalg.norm(q))

    base_T_mount, mount_T_cam, base_T_lidar = random_pose(), random_pose(), random_pose()
    tree = StaticTransformTree()
    tree.set("base_link", "mount", base_T_mount)
    tree.set("mount", "cam", mount_T_cam)
    tree.set("base_link", "lidar", base_T_lidar)
    np.testing.assert_allclose(tree.lookup("base_link", "cam"), base_T_mount @ mount_T_cam, atol=1e-12)
    lidar_T_cam = np.linalg.inv(base_T_lidar) @ base_T_mount @ mount_T_cam
    np.testing.assert_allclose(tree.lookup("lidar", "cam"), lidar_T_cam, atol=1e-12)
    np.testing.assert_allclose(tree.lookup("cam", "cam"), np.eye(4))
    assert tree.lookup("base_link", "unknown_frame") is None
    version = tree.version
    tree.set("mount", "cam", mount_T_cam)  # unchanged: no new version
    assert tree.version == version
    tree.set("mount", "cam", make_transform(np.eye(3), [0, 0, 1]))
    assert tree.version == version + 1
    tree.set("cam", "mount", np.eye(4))  # a cycle
    with pytest.raises(CalibrationError, match="cycle"):
        tree.lookup("base_link", "cam")
