"""Motion compensation and fixed-frame outputs: pure math on the pipeline's calibration (no DDS).

A car drives at 30 m/s while turning; its two forward cameras fire 45 ms apart (nuScenes'
worst case), and ``/tf`` carries ``odom -> base_link`` every 10 ms. Each camera sees one world
point at its own stamp; lifting that pixel at its depth with the extrinsics the pipeline hands
the predictor must give the same ego point, and so the same voxel, for both cameras: the
point's position in the ego frame at the set's stamp.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import TransformStamped
from sensor_msgs.msg import CameraInfo, Image
from tf2_msgs.msg import TFMessage

from scaocc_core.geometry import ego_to_voxel, make_transform, unproject_pixels
from scaocc_core.predictor import Predictor, PredictorInput
from scaocc_ros.motion import TransformHistory, interpolate, rotation_to_xyzw
from scaocc_ros.params import NodeParams
from scaocc_ros.pipeline import CameraSetPipeline
from scaocc_ros.tools import ros_types
from tests.fixtures import micro_config

S = 10**9
MS = 10**6
CAMS = ("cam_a", "cam_b")
OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # optical z forward = ego x
RIG = np.stack([make_transform(OPTICAL, [1.5, 0.3, 1.5]), make_transform(OPTICAL, [1.5, -0.3, 1.5])])
PREDICTOR = Predictor.from_config(micro_config())
GRID = PREDICTOR.grid
SPEED, YAW_RATE = 30.0, 0.5  # m/s, rad/s
T0 = 100 * S
STAGGER = 45 * MS
WORLD_POINT = np.array([3007.0, 52.0, 0.7, 1.0])  # odom; ~6 m ahead of the car at T0


def odom_T_base(t_ns: int) -> np.ndarray:
    """The car's pose: 30 m/s along a circle (yaw rate 0.5 rad/s), 3000 m down the road at T0."""
    t = (t_ns - T0) / S
    yaw = YAW_RATE * t
    x = 3000.0 + SPEED / YAW_RATE * math.sin(yaw)
    y = 50.0 + SPEED / YAW_RATE * (1.0 - math.cos(yaw))
    R = np.array([[math.cos(yaw), -math.sin(yaw), 0.0], [math.sin(yaw), math.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
    return make_transform(R, [x, y, 0.0])


def transform(parent: str, child: str, stamp_ns: int, T: np.ndarray) -> TransformStamped:
    t = TransformStamped(child_frame_id=child)
    t.header.frame_id = parent
    t.header.stamp.sec, t.header.stamp.nanosec = divmod(stamp_ns, S)
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = T[:3, 3].tolist()
    q = rotation_to_xyzw(T[:3, :3]).tolist()
    t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z, t.transform.rotation.w = q
    return t


def odometry(start_ns: int = T0 - 200 * MS, end_ns: int = T0 + 200 * MS, step_ns: int = 10 * MS) -> TFMessage:
    """``odom -> base_link`` every ``step_ns``, as a localisation stack publishes on /tf."""
    return TFMessage(transforms=[transform("odom", "base_link", t, odom_T_base(t))
                                 for t in range(start_ns, end_ns + 1, step_ns)])


def info(cam: str) -> CameraInfo:
    msg = CameraInfo(width=64, height=32, distortion_model="plumb_bob")
    msg.header.frame_id = f"{cam}_optical"
    msg.k = [40.0, 0.0, 31.5, 0.0, 40.0, 15.5, 0.0, 0.0, 1.0]
    msg.d = [0.0] * 5
    return msg


def image(cam: str, stamp_ns: int) -> Image:
    msg = Image(height=32, width=64, encoding="rgb8", step=3 * 64)
    msg.data = np.zeros((32, 64, 3), np.uint8).tobytes()
    msg.header.frame_id = f"{cam}_optical"
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, S)
    return msg


def pipeline(**overrides: Any) -> CameraSetPipeline:
    params = NodeParams(**{"camera_names": CAMS, "extrinsics_source": "params",
                           "ego_T_cam": {c: RIG[i] for i, c in enumerate(CAMS)}, **overrides}).validate()
    return CameraSetPipeline(PREDICTOR, params, ros_types.serialize, lambda text: None)


def staggered_set(pipe: CameraSetPipeline) -> tuple[PredictorInput, list[int]]:
    """cam_a at T0, cam_b 45 ms later (each received at its stamp); the predictor input of the set."""
    stamps = [T0, T0 + STAGGER]
    sets = []
    for cam, stamp in zip(CAMS, stamps):
        sets += pipe.on_camera_info(cam, info(cam), stamp)
        sets += pipe.on_image(cam, image(cam, stamp), stamp)
    (s,) = sets
    assert s.stamps_ns == stamps and s.stamp_ns == T0 + STAGGER  # the reference: the newest stamp
    inp = pipe.camera_input(s)
    assert inp is not None
    return inp, stamps


def lift(inp: PredictorInput, stamps: list[int]) -> np.ndarray:
    """Each camera's view of WORLD_POINT at its own stamp (pixel and depth), lifted with the
    extrinsics and intrinsics the predictor was given: ``n 3`` ego points."""
    out = []
    for i, stamp in enumerate(stamps):
        cam_T_world = np.linalg.inv(odom_T_base(stamp) @ RIG[i])
        p = cam_T_world @ WORLD_POINT
        assert p[2] > 1.0  # in front of the camera
        uv = (inp.intrinsics[i] @ p[:3])[:2] / p[2]
        ego = unproject_pixels(torch.tensor(uv), torch.tensor(p[2]), torch.tensor(inp.intrinsics[i]),
                               torch.tensor(inp.ego_T_cam[i]))
        out.append(ego.numpy())
    return np.stack(out)


def voxel(points: np.ndarray) -> list[tuple[int, ...]]:
    return [tuple(v) for v in torch.floor(ego_to_voxel(torch.tensor(points), GRID)).long().tolist()]


def test_moving_ego_staggered_cameras_lift_a_world_point_to_one_voxel() -> None:
    pipe = pipeline()
    pipe.on_tf(odometry())
    inp, stamps = staggered_set(pipe)
    truth = (np.linalg.inv(odom_T_base(T0 + STAGGER)) @ WORLD_POINT)[:3]  # ego frame at the set's stamp
    lifted = lift(inp, stamps)
    np.testing.assert_allclose(lifted, np.stack([truth, truth]), atol=2e-3)
    assert voxel(lifted) == [voxel(truth[None])[0]] * 2
    assert all(0 <= v < n for v, n in zip(voxel(truth[None])[0], GRID.size))  # inside the grid
    np.testing.assert_allclose(inp.ego_T_cam[1], RIG[1], atol=1e-9)  # the reference camera is unchanged
    static = lift(PredictorInput(inp.images, inp.intrinsics, RIG, inp.camera_valid), stamps)
    assert np.linalg.norm(static[0] - static[1]) > 1.0  # without compensation: 45 ms at 30 m/s apart
    assert voxel(static)[0] != voxel(static)[1]
    assert pipe.motion.counts["compensated"] == 1


def test_without_tf_static_extrinsics_and_diagnostics_say_so() -> None:
    pipe = pipeline()
    inp, _ = staggered_set(pipe)
    np.testing.assert_array_equal(inp.ego_T_cam, RIG)
    status = pipe.motion.status(True, "odom", "base_link", "", "occ_node")
    assert status.level == DiagnosticStatus.WARN and status.name == "occ_node: motion"
    assert "1 of 1 sets with static extrinsics: no /tf odom -> base_link" in status.message
    off = pipeline(motion_compensation=False)
    off.on_tf(odometry())
    inp, _ = staggered_set(off)
    np.testing.assert_array_equal(inp.ego_T_cam, RIG)
    assert "off (parameter)" in off.motion.status(False, "odom", "base_link", "", "n").message


def test_tf_older_than_the_set_is_not_extrapolated_past_the_tolerance() -> None:
    pipe = pipeline(tf_tolerance_s=0.01)
    pipe.on_tf(odometry(end_ns=T0 + 20 * MS))  # odometry lags 25 ms behind the newest camera
    inp, _ = staggered_set(pipe)
    np.testing.assert_array_equal(inp.ego_T_cam, RIG)
    pipe = pipeline(tf_tolerance_s=0.05)  # within tolerance: constant velocity from the last two samples
    pipe.on_tf(odometry(end_ns=T0 + 20 * MS))
    inp, stamps = staggered_set(pipe)
    truth = (np.linalg.inv(odom_T_base(T0 + STAGGER)) @ WORLD_POINT)[:3]
    np.testing.assert_allclose(lift(inp, stamps), np.stack([truth, truth]), atol=0.05)


def test_history_chains_tf_and_tf_static_and_interpolates() -> None:
    from scaocc_ros.calibration import StaticTransformTree

    history, static = TransformHistory(), StaticTransformTree()
    static.set("base_footprint", "base_link", make_transform(np.eye(3), [0.0, 0.0, 0.3]))
    for t in (0, 100 * MS):
        history.add("odom", "base_footprint", t, odom_T_base(T0 + t))
    mid = history.lookup("odom", "base_link", 50 * MS, static)
    assert mid is not None
    expected = interpolate(odom_T_base(T0), odom_T_base(T0 + 100 * MS), 0.5) @ static.lookup("base_footprint",
                                                                                            "base_link")
    np.testing.assert_allclose(mid, expected, atol=1e-12)
    yaw = math.atan2(mid[1, 0], mid[0, 0])
    assert yaw == pytest.approx(YAW_RATE * 0.05, abs=1e-9)  # slerp: half the yaw
    assert history.lookup("odom", "base_link", -1, static) is None  # before the history
    assert history.lookup("map", "base_link", 50 * MS, static) is None  # not connected


def test_outputs_in_a_fixed_frame() -> None:
    pipe = pipeline(output_frame="odom")
    pipe.on_tf(odometry())
    inp, _ = staggered_set(pipe)
    pred = PREDICTOR.predict(inp)
    pred.labels[...] = 17
    pred.labels[10, 8, 1] = 4  # a car 2.5 m ahead, 0.5 m left
    pred.labels[:, :, 0] = 11  # the road
    pipe.predictor.predict = lambda _: pred  # type: ignore[method-assign]
    sets = []
    for cam, stamp in zip(CAMS, [T0 + S // 10, T0 + S // 10 + STAGGER]):
        sets += pipe.on_camera_info(cam, info(cam), stamp)
        sets += pipe.on_image(cam, image(cam, stamp), stamp)
    out = pipe.infer(sets[0])
    assert out is not None and out.obstacles is not None and out.bev is not None and out.voxels is not None
    ref = odom_T_base(sets[0].stamp_ns)
    assert out.obstacles.header.frame_id == "odom" and out.obstacles.width == 1
    xyz = np.frombuffer(bytes(out.obstacles.data), np.float32).reshape(-1, 6)[0, :3]
    centre = np.array([GRID.lower[i] + (v + 0.5) * GRID.voxel_size[i] for i, v in enumerate((10, 8, 1))])
    np.testing.assert_allclose(xyz, (ref @ np.append(centre, 1.0))[:3], atol=1e-3)
    assert out.points is not None and out.points.width == 1 + 16 * 16  # the road is in points, not obstacles
    bev, info_ = np.array(out.bev.data, np.int8).reshape(16, 16), out.bev.info
    assert out.bev.header.frame_id == "odom" and info_.origin.orientation.w == 1.0
    assert info_.origin.position.x % 1.0 == pytest.approx(0.0, abs=1e-9)  # snapped to the 1 m cells of odom
    car = ref @ np.append(centre, 1.0)
    col, row = (int((car[0] - info_.origin.position.x) // 1.0), int((car[1] - info_.origin.position.y) // 1.0))
    assert bev[row, col] == 100 and (bev == 0).sum() > 100 and (bev == -1).any()  # rotated: corners unknown
    assert out.markers is not None and out.calibration_offsets is not None
    assert out.voxels.header.frame_id == "odom"
    np.testing.assert_allclose([out.voxels.origin.position.x, out.voxels.origin.position.y],
                               (ref @ np.array([*GRID.lower, 1.0]))[:2], atol=1e-3)  # /tf interpolated
