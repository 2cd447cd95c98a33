"""occ_node driven in-process through real publishers and subscribers (DDS on localhost).

The node runs the real Predictor (random weights of config/model/scaocc_tiny.yaml).
"""

from __future__ import annotations

import ast
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import TransformStamped
from nav_msgs.msg import OccupancyGrid
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from rosgraph_msgs.msg import Clock
from scaocc_msgs.msg import CameraCalibrationOffsetArray, SemanticVoxelGrid
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from scaocc_core.data.rig import load_nuscenes_sample_rig
from scaocc_ros import node as node_module
from scaocc_ros import qos
from scaocc_ros.node import OccNode
from scaocc_ros.pipeline import StartupError

ROOT = Path(__file__).resolve().parents[2]
PARAMS = ROOT / "config" / "occ_node.yaml"
CAMS = ["cam_front_left", "cam_front", "cam_front_right", "cam_back_left", "cam_back", "cam_back_right"]
RIG = load_nuscenes_sample_rig().resized(90, 160)
OUTPUTS = {"voxels": SemanticVoxelGrid, "points": PointCloud2, "obstacles": PointCloud2, "markers": MarkerArray,
           "bev": OccupancyGrid, "calibration_offsets": CameraCalibrationOffsetArray}


class Car(Node):
    """Publishes the six cameras and records everything occ_node publishes."""

    def __init__(self, context: Context, compressed: bool = False) -> None:
        super().__init__("test_car", context=context)
        self.compressed = compressed
        kind, suffix = (CompressedImage, "image/compressed") if compressed else (Image, "image")
        self.images = {c: self.create_publisher(kind, f"{c}/{suffix}", qos.CAMERA_PUBLISHER) for c in CAMS}
        self.infos = {c: self.create_publisher(CameraInfo, f"{c}/camera_info", qos.CAMERA_PUBLISHER) for c in CAMS}
        latched = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.tf_static = self.create_publisher(TFMessage, "/tf_static", latched)
        self.clock = self.create_publisher(Clock, "/clock", 10)
        self.received: dict[str, list[Any]] = {k: [] for k in [*OUTPUTS, "diagnostics"]}
        for name, kind in OUTPUTS.items():
            self.create_subscription(kind, f"/occ_node/{name}", self.received[name].append, 10)
        self.create_subscription(DiagnosticArray, "/diagnostics", self.received["diagnostics"].append, 10)
        self.rng = np.random.default_rng(0)
        self.rig = RIG

    def info(self, i: int, stamp: Any) -> CameraInfo:
        cam = self.rig.cameras[i]
        msg = CameraInfo(width=cam.width, height=cam.height, distortion_model="plumb_bob")
        msg.header.stamp, msg.header.frame_id = stamp, f"{CAMS[i]}_optical"
        msg.k = cam.K.ravel().tolist()
        msg.d = [0.0] * 5
        return msg

    def image(self, stamp: Any) -> Image | CompressedImage:
        h, w = self.rig.cameras[0].height, self.rig.cameras[0].width
        rgb = self.rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if self.compressed:
            msg = CompressedImage(format="jpeg")
            msg.data = cv2.imencode(".jpg", rgb)[1].tobytes()
        else:
            msg = Image(height=h, width=w, encoding="rgb8", step=3 * w)
            msg.data = rgb.tobytes()
        msg.header.stamp = stamp
        return msg

    def publish(self, stamp_ns: int, cams: list[str] | None = None,
                edit: Callable[[str, Any, CameraInfo], None] | None = None) -> None:
        """Publish camera_info then image of ``cams`` (all by default) at ``stamp_ns``."""
        stamp = Time(nanoseconds=stamp_ns).to_msg()
        for i, cam in enumerate(CAMS):
            if cams is not None and cam not in cams:
                continue
            img, info = self.image(stamp), self.info(i, stamp)
            img.header.frame_id = info.header.frame_id
            if edit is not None:
                edit(cam, img, info)
            self.infos[cam].publish(info)
            self.images[cam].publish(img)


@pytest.fixture
def make(ros_context: Context) -> Iterator[Callable[..., tuple[OccNode, Car, SingleThreadedExecutor]]]:
    """Build occ_node (config/occ_node.yaml + overrides) and the test car on one executor."""
    created: list[tuple[Node, ...]] = []

    def build(compressed: bool = False, **overrides: Any) -> tuple[OccNode, Car, SingleThreadedExecutor]:
        params = [Parameter(k, value=v) for k, v in overrides.items()]
        if compressed:
            params.append(Parameter("image_transport", value="compressed"))
        occ = OccNode(context=ros_context, cli_args=["--ros-args", "--params-file", str(PARAMS)],
                      parameter_overrides=params)
        created.append((occ,))
        if occ.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise StartupError(occ.configure_error)
        assert occ.trigger_activate() == TransitionCallbackReturn.SUCCESS
        car = Car(ros_context, compressed)
        ex = SingleThreadedExecutor(context=ros_context)
        ex.add_node(occ)
        ex.add_node(car)
        created.append((car,))
        until(ex, lambda: all(p.get_subscription_count() > 0 for p in [*car.images.values(), *car.infos.values()]))
        return occ, car, ex

    yield build
    for (node,) in created:
        node.destroy_node()


def until(ex: SingleThreadedExecutor, cond: Callable[[], bool], timeout: float = 20.0) -> None:
    """Spin ``ex`` until ``cond()`` holds; fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out waiting for the node"
        ex.spin_once(timeout_sec=0.02)


def spin_for(ex: SingleThreadedExecutor, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ex.spin_once(timeout_sec=0.01)


def set_sim_time(occ: OccNode, car: Car, ex: SingleThreadedExecutor, t_ns: int) -> None:
    """Publish /clock = ``t_ns`` and spin until occ_node (use_sim_time) has seen it."""
    car.clock.publish(Clock(clock=Time(nanoseconds=t_ns).to_msg()))
    until(ex, lambda: now_ns(occ) == t_ns)
    spin_for(ex, 0.05)  # let timers that became due run


def spy(occ: OccNode) -> list[Any]:
    """Record every PredictorInput the node passes to its (real) predictor."""
    calls: list[Any] = []
    predictor = occ.pipeline.predictor
    real = predictor.predict

    def predict(inp: Any) -> Any:
        calls.append(inp)
        return real(inp)

    predictor.predict = predict  # type: ignore[method-assign]
    return calls


def diagnostics(occ: OccNode, car: Car, ex: SingleThreadedExecutor) -> dict[str, DiagnosticStatus]:
    n = len(car.received["diagnostics"])
    occ.publish_diagnostics()
    until(ex, lambda: len(car.received["diagnostics"]) > n)
    return {s.name.split(": ")[1]: s for s in car.received["diagnostics"][-1].status}


def now_ns(occ: OccNode) -> int:
    return occ.get_clock().now().nanoseconds


def test_full_set_publishes_every_output(make: Callable[..., Any]) -> None:
    occ, car, ex = make(camera_timeout_s=60.0)  # no camera times out while the test inspects
    calls = spy(occ)
    stamp = now_ns(occ)
    car.publish(stamp)
    until(ex, lambda: all(car.received[k] for k in OUTPUTS))
    for k in OUTPUTS:
        header = car.received[k][0].markers[0].header if k == "markers" else car.received[k][0].header
        assert Time.from_msg(header.stamp).nanoseconds == stamp and header.frame_id == "base_link", k
    grid = car.received["voxels"][0]
    size = occ.pipeline.predictor.grid.size  # the output grid of config/model/scaocc_tiny.yaml
    assert (grid.size_x, grid.size_y, grid.size_z) == size and len(grid.labels) == np.prod(size)
    assert [o.frame_id for o in car.received["calibration_offsets"][0].offsets] == [f"{c}_optical" for c in CAMS]
    assert calls[-1].camera_valid.tolist() == [True] * 6
    np.testing.assert_allclose(calls[-1].intrinsics[1], RIG.cameras[1].K)
    np.testing.assert_allclose(calls[-1].ego_T_cam[1], RIG.cameras[1].ego_T_cam, atol=2e-4)
    status = diagnostics(occ, car, ex)
    assert status["inputs"].level == DiagnosticStatus.OK and status["inputs"].message == "all 6 cameras"
    values = {kv.key: kv.value for kv in status["inference"].values}
    assert int(values["sets_inferred"]) == 1 and float(values["latency_p50_ms"]) > 0
    assert "random weights" in status["inference"].message  # no checkpoint: said loudly
    assert float({kv.key: kv.value for kv in status["sync"].values}["success_rate"]) == 1.0


def test_missing_camera_runs_on_the_rest_and_recovers(make: Callable[..., Any]) -> None:
    """Simulated time (use_sim_time + /clock) makes the timeout independent of machine load."""
    occ, car, ex = make(camera_timeout_s=0.3, use_sim_time=True)
    calls = spy(occ)
    five = [c for c in CAMS if c != "cam_back"]
    t = 1_000 * 10**9
    period = 100_000_000  # the other five stream at 10 Hz while cam_back is silent
    for k in range(6):
        set_sim_time(occ, car, ex, t + k * period)
        car.publish(t + k * period, cams=five)
        until(ex, lambda k=k: sum(occ.pipeline.sync.stats(c).received for c in five) == 5 * (k + 1))
        if k <= 3:  # silent for <= 0.3 s: the sets wait for cam_back
            assert occ.pipeline.sync.sets_emitted == 0
    until(ex, lambda: occ.worker.wait_idle(0.01) and len(calls) > 0)
    assert occ.pipeline.sync.active() == [True, True, True, True, False, True]
    for call in calls:  # the newest set wins when the worker is busy, so maybe not all of them
        assert call.camera_valid.tolist() == [True, True, True, True, False, True]
        assert not call.images[4].any()  # black image for the missing camera
    until(ex, lambda: len(car.received["voxels"]) == len(calls))
    assert Time.from_msg(car.received["voxels"][-1].header.stamp).nanoseconds == t + 5 * period
    status = diagnostics(occ, car, ex)
    assert status["inputs"].level == DiagnosticStatus.WARN
    assert status["inputs"].message == "missing cameras (running without them): cam_back"
    n = len(calls)
    set_sim_time(occ, car, ex, t + 6 * period)
    car.publish(t + 6 * period)  # cam_back is back: the next set has all six
    until(ex, lambda: len(calls) == n + 1)
    assert calls[-1].camera_valid.tolist() == [True] * 6
    status = diagnostics(occ, car, ex)
    assert status["inputs"].level == DiagnosticStatus.OK, status["inputs"].message


def test_malformed_messages_are_counted_and_skipped(make: Callable[..., Any]) -> None:
    occ, car, ex = make(camera_timeout_s=60.0)

    def corrupt(cam: str, img: Any, info: CameraInfo) -> None:
        if cam == "cam_front":
            img.step = 100  # < width * 3
        elif cam == "cam_front_left":
            img.encoding = "32FC1"  # a depth image, not a camera image
        elif cam == "cam_back":
            img.header.stamp = Time(nanoseconds=now_ns(occ) + 10**10).to_msg()  # 10 s ahead
        elif cam == "cam_back_left":
            img.header.stamp = Time(nanoseconds=now_ns(occ) - 60 * 10**9).to_msg()  # a minute old
        elif cam == "cam_back_right":
            info.k = [float("nan")] * 9

    car.publish(now_ns(occ), edit=corrupt)
    expected = {"cam_front": "image", "cam_front_left": "image", "cam_back": "stamp", "cam_back_left": "stamp",
                "cam_back_right": "camera_info"}
    until(ex, lambda: all(occ.pipeline.stats.malformed_count(c, k) == 1 for c, k in expected.items()))
    assert "cam_back_right" in occ.pipeline.pending  # its image waits for a usable camera_info
    assert sum(occ.pipeline.sync.stats(c).received for c in CAMS) == 1  # only cam_front_right reached the sync
    status = diagnostics(occ, car, ex)
    assert status["inputs"].level == DiagnosticStatus.WARN
    assert all(f"{c}: 1 {k} since the last report" in status["inputs"].message for c, k in expected.items())
    car.publish(now_ns(occ))  # the node is unharmed
    until(ex, lambda: len(car.received["voxels"]) == 1)


def test_compressed_transport_and_undecodable_jpeg(make: Callable[..., Any]) -> None:
    occ, car, ex = make(compressed=True)
    calls = spy(occ)

    def garble(cam: str, img: Any, info: CameraInfo) -> None:
        if cam == "cam_front_right":  # a fine header, but 16-bit samples: only the decoder finds out
            data = bytearray(img.data)
            data[data.find(b"\xff\xc0") + 4] = 16
            img.data = bytes(data)
        elif cam == "cam_back":  # counted on arrival, never reaches the synchroniser
            img.data = b"\xff\xd8\xff\xe0 not really a jpeg"

    car.publish(now_ns(occ), edit=garble)
    until(ex, lambda: occ.pipeline.stats.malformed_count("cam_back", "image") == 1)
    car.publish(now_ns(occ), cams=["cam_back"])
    until(ex, lambda: len(car.received["voxels"]) == 1)
    assert calls[-1].camera_valid.tolist() == [True, True, False, True, True, True]
    assert occ.pipeline.stats.malformed_count("cam_front_right", "decode") == 1
    assert calls[-1].images[0].shape == (90, 160, 3)


def test_resolution_change_updates_the_intrinsics(make: Callable[..., Any]) -> None:
    occ, car, ex = make(camera_timeout_s=60.0, max_age_s=60.0)  # intrinsics, not stamps: a starved CI is slow
    calls = spy(occ)
    car.publish(now_ns(occ))
    until(ex, lambda: len(calls) == 1 and occ.worker.wait_idle(0.01))
    car.rig = load_nuscenes_sample_rig().resized(180, 320)  # the drivers switch resolution
    car.publish(now_ns(occ))
    until(ex, lambda: len(calls) == 2)
    assert calls[1].camera_valid.tolist() == [True] * 6
    for i in range(6):
        assert calls[1].images[i].shape == (180, 320, 3)
        np.testing.assert_allclose(calls[1].intrinsics[i], car.rig.cameras[i].K)
    assert occ.pipeline.stats.report(now_ns(occ)).malformed_total == 0


def test_compressed_images_are_decoded_reduced_with_matching_intrinsics(make: Callable[..., Any]) -> None:
    occ, car, ex = make(compressed=True, camera_timeout_s=60.0)
    calls = spy(occ)
    car.rig = load_nuscenes_sample_rig()  # 900x1600; tiny model: 1/2 (450x800) still covers 256x704
    car.publish(now_ns(occ))
    until(ex, lambda: len(calls) == 1)
    assert calls[0].camera_valid.tolist() == [True] * 6
    for i in range(6):
        assert calls[0].images[i].shape == (450, 800, 3)
        K = car.rig.cameras[i].K
        expected = np.array([[K[0, 0] / 2, 0, (K[0, 2] + 0.5) / 2 - 0.5], [0, K[1, 1] / 2, (K[1, 2] + 0.5) / 2 - 0.5],
                             [0, 0, 1]])
        np.testing.assert_allclose(calls[0].intrinsics[i], expected)
    until(ex, lambda: occ.worker.wait_idle(0.01))
    assert occ.pipeline.last_frame[CAMS[0]][2] == (450, 800)
    np.testing.assert_allclose(occ.pipeline.last_frame[CAMS[0]][0], calls[0].intrinsics[0])


def test_extrinsics_from_tf_static_chain(make: Callable[..., Any]) -> None:
    occ, car, ex = make(extrinsics_source="tf")
    calls = spy(occ)
    mount = np.array([1.0, 0.0, 1.5])  # base_link -> roof_mount, translation only
    msg = TFMessage()
    for i, cam in enumerate(CAMS):
        T = RIG.cameras[i].ego_T_cam.copy()
        T[:3, 3] -= mount  # roof_mount -> camera optical frame
        q = quaternion_xyzw(T[:3, :3])
        t = TransformStamped(child_frame_id=f"{cam}_optical")
        t.header.frame_id = "roof_mount"
        t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = T[:3, 3].tolist()
        t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z, t.transform.rotation.w = q
        msg.transforms.append(t)
    root = TransformStamped(child_frame_id="roof_mount")
    root.header.frame_id = "base_link"
    root.transform.translation.x, root.transform.translation.y, root.transform.translation.z = mount.tolist()
    root.transform.rotation.w = 1.0
    msg.transforms.append(root)
    car.tf_static.publish(msg)
    until(ex, lambda: occ.pipeline.tf_tree.lookup("base_link", "cam_back_optical") is not None)
    car.publish(now_ns(occ))
    until(ex, lambda: len(calls) == 1)
    for i in range(6):
        np.testing.assert_allclose(calls[0].ego_T_cam[i], RIG.cameras[i].ego_T_cam, atol=1e-6)


def quaternion_xyzw(R: np.ndarray) -> list[float]:
    w = np.sqrt(max(0.0, 1 + np.trace(R))) / 2
    x = np.copysign(np.sqrt(max(0.0, 1 + R[0, 0] - R[1, 1] - R[2, 2])) / 2, R[2, 1] - R[1, 2])
    y = np.copysign(np.sqrt(max(0.0, 1 - R[0, 0] + R[1, 1] - R[2, 2])) / 2, R[0, 2] - R[2, 0])
    z = np.copysign(np.sqrt(max(0.0, 1 - R[0, 0] - R[1, 1] + R[2, 2])) / 2, R[1, 0] - R[0, 1])
    return [float(x), float(y), float(z), float(w)]


def launch_parameter_names() -> set[str]:
    """Keys of the parameter dicts given to (Lifecycle)Node(...) in launch/occ.launch.py (parsed, not imported)."""
    tree = ast.parse((ROOT / "launch" / "occ.launch.py").read_text())
    names: set[str] = set()
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) in ("Node", "LifecycleNode"):
            for kw in call.keywords:
                if kw.arg == "parameters":
                    for d in ast.walk(kw.value):
                        if isinstance(d, ast.Dict):
                            names |= {k.value for k in d.keys if isinstance(k, ast.Constant)}
    return names


def test_launch_parameters_are_declared_and_in_the_yaml(make: Callable[..., Any]) -> None:
    occ, _, _ = make()
    names = launch_parameter_names()
    assert {"model_path", "use_sim_time", "device", "backend"} <= names
    yaml_params = yaml.safe_load(PARAMS.read_text())["occ_node"]["ros__parameters"]
    for name in names:
        assert occ.has_parameter(name), f"launch file sets {name!r}, which occ_node does not declare"
        assert name in yaml_params, f"launch file sets {name!r}, missing from config/occ_node.yaml"


def test_configure_errors_are_one_clear_line(make: Callable[..., Any], ros_context: Context) -> None:
    with pytest.raises(StartupError, match="backend 'onnxruntime' needs model_path"):
        make(backend="onnxruntime")
    with pytest.raises(StartupError, match="model expects 6 cameras"):
        make(camera_names=["cam_front", "cam_back"])
    with pytest.raises(StartupError, match="cannot load the model.*not found"):
        make(model_path="/nonexistent/model.pt")


def test_run_reports_a_bad_parameter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = yaml.safe_load(PARAMS.read_text())
    params["occ_node"]["ros__parameters"]["device"] = "tpu"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(params))
    parser = __import__("argparse").ArgumentParser()
    node_module.add_arguments(parser)
    assert node_module.run(parser.parse_args(["--params", str(path), "--ros-args", "-p", "sync_slop_s:=0.1"])) == 1
    assert "device='tpu' must be one of ['auto', 'cpu', 'cuda']" in capsys.readouterr().err
    assert not rclpy.ok()  # the default context was shut down again
