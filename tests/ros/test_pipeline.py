"""CameraSetPipeline without ROS: what occ_node and ``scaocc bag infer`` both do with messages.

Where the node and the old offline pipeline disagreed, these pin the node's behaviour: a
missing camera keeps its last known calibration, an image waits for its first CameraInfo,
extrinsics follow ``extrinsics_source``, an image that overtook the CameraInfo of a
new resolution waits for it, and stamps and images are checked before they reach the synchroniser.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from geometry_msgs.msg import TransformStamped
from sensor_msgs.msg import CameraInfo, Image
from tf2_msgs.msg import TFMessage

from scaocc_core.geometry import make_transform
from scaocc_core.predictor import Predictor
from scaocc_ros.params import NodeParams
from scaocc_ros.pipeline import CameraFrame, CameraSetPipeline, StartupError
from scaocc_ros.sync import SyncedSet
from scaocc_ros.tools import ros_types
from scaocc_ros.tools.synth_msgs import quaternion_xyzw
from tests.fixtures import look_at_cameras, micro_config

CAMS = ("cam_a", "cam_b")
RIG = look_at_cameras(2).numpy()  # 2 4 4 ego_T_cam
S = 10**9
PREDICTOR = Predictor.from_config(micro_config())


def params(**overrides: Any) -> NodeParams:
    values: dict[str, Any] = {"camera_names": CAMS, "ego_T_cam": {c: RIG[i] for i, c in enumerate(CAMS)},
                              "extrinsics_source": "params"}
    return NodeParams(**{**values, **overrides}).validate()


def make_pipeline(**overrides: Any) -> tuple[CameraSetPipeline, list[str]]:
    warnings: list[str] = []
    return CameraSetPipeline(PREDICTOR, params(**overrides), ros_types.serialize, warnings.append), warnings


def info(cam: str, h: int = 32, w: int = 64, f: float = 40.0) -> CameraInfo:
    msg = CameraInfo(width=w, height=h, distortion_model="plumb_bob")
    msg.header.frame_id = f"{cam}_optical"
    msg.k = [f, 0.0, (w - 1) / 2, 0.0, f, (h - 1) / 2, 0.0, 0.0, 1.0]
    msg.d = [0.0] * 5
    return msg


def image(stamp_ns: int, h: int = 32, w: int = 64, value: int = 128, cam: str = "cam_a") -> Image:
    msg = Image(height=h, width=w, encoding="rgb8", step=3 * w)
    msg.data = np.full((h, w, 3), value, np.uint8).tobytes()
    msg.header.frame_id = f"{cam}_optical"
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, S)
    return msg


def feed(pipe: CameraSetPipeline, stamp_ns: int, cams: tuple[str, ...] = CAMS, **size: int) -> list[SyncedSet[Any]]:
    """CameraInfo then image of ``cams`` at ``stamp_ns`` (received at that time)."""
    sets = []
    for cam in cams:
        sets += pipe.on_camera_info(cam, info(cam, **size), stamp_ns)
        sets += pipe.on_image(cam, image(stamp_ns, cam=cam, **size), stamp_ns)
    return sets


def test_missing_camera_keeps_its_last_calibration() -> None:
    pipe, _ = make_pipeline()
    pipe.on_camera_info("cam_a", info("cam_a"), S)
    never = pipe.camera_input(SyncedSet([S, None], [CameraFrame(image(S), pipe.intrinsics["cam_a"], RIG[0]), None]))
    assert never is not None and never.camera_valid.tolist() == [True, False]
    np.testing.assert_allclose(never.ego_T_cam[1], RIG[1])  # never seen: the parameters' extrinsics
    assert never.images[1].shape == (32, 64, 3) and not never.images[1].any()
    (full,) = feed(pipe, 2 * S, h=64, w=128)  # both cameras, a new size
    assert pipe.camera_input(full) is not None
    frame_a = full.items[0]
    assert frame_a is not None
    later = pipe.camera_input(SyncedSet([3 * S, None], [frame_a, None]))
    assert later is not None and later.camera_valid.tolist() == [True, False]
    np.testing.assert_allclose(later.intrinsics[1], full.items[1].intrinsics.K)  # type: ignore[union-attr]
    np.testing.assert_allclose(later.ego_T_cam[1], RIG[1])
    assert later.images[1].shape == (64, 128, 3) and not later.images[1].any()


def test_image_waits_for_its_first_camera_info() -> None:
    pipe, warnings = make_pipeline()
    assert pipe.on_camera_info("cam_a", info("cam_a"), S) == []
    assert pipe.on_image("cam_a", image(S), S) == []
    assert pipe.on_image("cam_b", image(S, cam="cam_b"), S) == []  # no camera_info yet: held
    assert pipe.on_image("cam_b", image(S + 1, cam="cam_b"), S + 1) == []  # the older held image is given up
    assert pipe.stats.report(S).no_camera_info == {"cam_b": 1}
    assert "cam_b: no_camera_info (1 since the last line): no valid camera_info yet" in warnings
    (done,) = pipe.on_camera_info("cam_b", info("cam_b"), S + 2)  # the held image goes on and completes a set
    assert done.stamps_ns == [S, S + 1]


def tf_static(frames: dict[str, np.ndarray], parent: str = "base_link") -> TFMessage:
    msg = TFMessage()
    for child, T in frames.items():
        t = TransformStamped(child_frame_id=child)
        t.header.frame_id = parent
        t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = T[:3, 3].tolist()
        q = quaternion_xyzw(T[:3, :3])
        t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z, t.transform.rotation.w = q
        msg.transforms.append(t)
    return msg


def test_extrinsics_follow_extrinsics_source() -> None:
    moved = {f"{c}_optical": make_transform(RIG[i][:3, :3], RIG[i][:3, 3] + 1.0) for i, c in enumerate(CAMS)}
    pipe, _ = make_pipeline()  # extrinsics_source: params, even when /tf_static says otherwise
    pipe.on_tf_static(tf_static(moved))
    (s,) = feed(pipe, S)
    np.testing.assert_array_equal(s.items[0].ego_T_cam, RIG[0])  # type: ignore[union-attr]
    pipe, warnings = make_pipeline(extrinsics_source="tf")
    assert feed(pipe, S) == []  # no chain yet: dropped and counted, not an error
    assert pipe.stats.report(S).no_extrinsics == {"cam_a": 1, "cam_b": 1}
    assert any("no /tf_static chain 'base_link' -> 'cam_a_optical'" in w for w in warnings)
    pipe.on_tf_static(tf_static(moved))
    (s,) = feed(pipe, 2 * S)
    np.testing.assert_allclose(s.items[1].ego_T_cam, moved["cam_b_optical"], atol=1e-12)  # type: ignore[union-attr]


def test_invalid_tf_static_transform_is_skipped_and_named() -> None:
    pipe, warnings = make_pipeline(extrinsics_source="tf")
    bad = tf_static({"cam_a_optical": RIG[0], "cam_b_optical": RIG[1]})
    bad.transforms[0].transform.rotation.w = float("nan")
    pipe.on_tf_static(bad)  # the other transform is kept
    assert any("/tf_static: ignored 'cam_a_optical'" in w for w in warnings)
    assert feed(pipe, S, cams=("cam_b",)) == [] and pipe.stats.report(S).no_extrinsics == {}


def test_new_resolution_is_decoded_with_the_newest_intrinsics() -> None:
    pipe, _ = make_pipeline()
    feed(pipe, S)
    # the driver switched resolution and its image overtook the new camera_info: it waits for it
    assert pipe.on_image("cam_a", image(2 * S, h=64, w=128), 2 * S) == [] and "cam_a" in pipe.pending
    assert pipe.on_camera_info("cam_a", info("cam_a", h=64, w=128, f=80.0), 2 * S) == []
    (s,) = pipe.on_image("cam_b", image(2 * S, cam="cam_b"), 2 * S)
    inp = pipe.camera_input(s)
    assert inp is not None and inp.camera_valid.tolist() == [True, True]
    np.testing.assert_allclose(inp.intrinsics[0], pipe.intrinsics["cam_a"].K)
    assert pipe.intrinsics["cam_a"].image_hw == (64, 128)
    assert pipe.stats.report(2 * S).malformed_total == 0


def test_stamps_and_images_are_checked_before_the_synchroniser() -> None:
    pipe, _ = make_pipeline()
    pipe.on_camera_info("cam_a", info("cam_a"), S)
    assert pipe.on_image("cam_a", image(S + S), S) == []  # 1 s in the future (max_future_s 0.5)
    assert pipe.on_image("cam_a", image(S), 7 * S) == []  # 6 s old (max_age_s 5)
    bad = image(S)
    bad.step = 10
    assert pipe.on_image("cam_a", bad, S) == []
    assert pipe.stats.malformed_count("cam_a", "stamp") == 2 and pipe.stats.malformed_count("cam_a", "image") == 1
    assert pipe.sync.stats("cam_a").received == 0


def test_infer_builds_every_output_and_markers_on_request() -> None:
    pipe, _ = make_pipeline()
    (s,) = feed(pipe, 5 * S + 7)
    out = pipe.infer(s)
    assert out is not None and out.stamp_ns == 5 * S + 7
    assert list(out.messages()) == ["voxels", "points", "obstacles", "markers", "bev", "calibration_offsets"]
    assert (out.voxels.header.stamp.sec, out.voxels.header.stamp.nanosec) == (5, 7)
    assert out.voxels.header.frame_id == "base_link"
    assert [o.frame_id for o in out.calibration_offsets.offsets] == ["cam_a_optical", "cam_b_optical"]
    markers = ros_types.deserialize(out.markers, "visualization_msgs/msg/MarkerArray")  # type: ignore[arg-type]
    assert {m.id for m in markers.markers} == set(np.unique(out.prediction.labels).tolist()) - {17}
    (s,) = feed(pipe, 6 * S)
    quiet = pipe.infer(s, markers=False)
    assert quiet is not None and quiet.markers is None and "markers" not in quiet.messages()
    pipe.update_params(dataclasses.replace(pipe.params, publish_points=False, publish_bev=False))  # switches
    (s,) = feed(pipe, 7 * S)
    some = pipe.infer(s)
    assert some is not None and list(some.messages()) == ["voxels", "obstacles", "markers", "calibration_offsets"]


def test_too_few_cameras_are_skipped_and_the_model_must_fit() -> None:
    pipe, _ = make_pipeline(min_cameras=2)
    (s,) = feed(pipe, S)
    assert pipe.infer(SyncedSet([S, None], [s.items[0], None])) is None
    assert pipe.stats.report(S).sets_skipped == 1
    with pytest.raises(StartupError, match="the model expects 2 cameras, camera_names has 3"):
        CameraSetPipeline(PREDICTOR, params(camera_names=(*CAMS, "cam_c"), ego_T_cam={}), ros_types.serialize)


def rectified_info(cam: str) -> CameraInfo:
    """An ``image_rect`` stream's CameraInfo: raw K and D, the rectified P (its own focal
    length and centre) and R, a 2 degree rotation about y."""
    msg = info(cam)
    msg.d = [-0.3, 0.1, 0.001, 0.002, 0.0]
    msg.p = [50.0, 0.0, 30.0, 0.0, 0.0, 50.0, 15.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    a = np.deg2rad(2.0)
    msg.r = [np.cos(a), 0.0, np.sin(a), 0.0, 1.0, 0.0, -np.sin(a), 0.0, np.cos(a)]
    return msg


@pytest.mark.parametrize(("mode", "topic", "rectified"), [
    ("auto", "/cam_a/image_rect", True), ("auto", "/cam_a/image", False),
    ("rect", "/cam_a/image", True), ("raw", "/cam_a/image_rect_color", False)])
def test_rectified_images_use_p_and_r_and_are_not_undistorted(mode: str, topic: str, rectified: bool) -> None:
    pipe, _ = make_pipeline(rectification=mode)
    pipe.image_topics["cam_a"] = topic  # as the node sets it after remapping
    pipe.on_camera_info("cam_a", rectified_info("cam_a"), S)
    pipe.on_camera_info("cam_b", info("cam_b"), S)
    msg = image(S)
    msg.data = np.random.default_rng(0).integers(0, 255, (32, 64, 3), np.uint8).tobytes()
    assert pipe.on_image("cam_a", msg, S) == []
    (s,) = pipe.on_image("cam_b", image(S, cam="cam_b"), S)
    inp = pipe.camera_input(s)
    assert inp is not None
    sent = np.frombuffer(bytes(msg.data), np.uint8).reshape(32, 64, 3)
    R = np.asarray(rectified_info("cam_a").r).reshape(3, 3)
    if rectified:
        np.testing.assert_allclose(inp.intrinsics[0], [[50, 0, 30], [0, 50, 15], [0, 0, 1]])
        np.testing.assert_allclose(inp.ego_T_cam[0][:3, :3], RIG[0][:3, :3] @ R.T, atol=1e-12)
        np.testing.assert_array_equal(inp.images[0], sent)  # already rectified: untouched
    else:
        np.testing.assert_allclose(inp.intrinsics[0], np.asarray(info("cam_a").k).reshape(3, 3))
        np.testing.assert_allclose(inp.ego_T_cam[0], RIG[0])
        assert not np.array_equal(inp.images[0], sent)  # undistorted once with K and D
