"""``occ_node``: N synchronised cameras in, semantic occupancy out (run it with ``scaocc node``).

Subscribes ``<cam>/image`` (or ``<cam>/image/compressed``) and ``<cam>/camera_info`` for every
camera of ``camera_names``; publishes ``~/voxels``, ``~/points``, ``~/markers``, ``~/bev``,
``~/calibration_offsets`` and ``/diagnostics``. Intrinsics come from every CameraInfo and
extrinsics from the parameters or ``/tf_static``; both travel with each camera set into the
predictor (which takes K and ego_T_cam per call), so calibration changes apply at once.
Example: ``scaocc node --params config/occ_node.yaml --ros-args -r cam_front/image:=/front/img``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

try:  # the interfaces built from msg/ by colcon (make setup)
    import scaocc_msgs.msg  # noqa: F401
    import tf2_msgs.msg  # noqa: F401
except ImportError as exc:
    raise ImportError(f"{exc.name} is not importable: build the interfaces with `make setup` and "
                      "`source install/local_setup.bash`") from exc

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.time import Time
from scaocc_msgs.msg import CameraCalibrationOffsetArray, SemanticVoxelGrid
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from scaocc_core.config import load_config
from scaocc_core.predictor import Predictor, PredictorInput
from scaocc_ros import convert, outputs
from scaocc_ros.calibration import CalibrationError, StaticTransformTree, offset_magnitudes, pose_to_matrix
from scaocc_ros.diagnostics import NodeStats, Thresholds, diagnostic_statuses
from scaocc_ros.params import NodeParams, ParamError, declare_and_read, resolve_file
from scaocc_ros.sync import ApproximateTimeSync, SyncedSet
from scaocc_ros.worker import LatestWorker

LOG_THROTTLE_S = 5.0


class StartupError(RuntimeError):
    """The node cannot start (model, backend or configuration); the message says why."""


@dataclass
class CameraFrame:
    """One received image with the calibration valid when it arrived."""

    msg: Image | CompressedImage
    intrinsics: convert.Intrinsics
    ego_T_cam: np.ndarray  # 4 4


def package_share() -> Path | None:
    """``share/scaocc_ros`` of a colcon install, if this package is installed that way."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory("scaocc_ros"))
    except PackageNotFoundError:
        return None


def load_predictor(params: NodeParams) -> tuple[Predictor, list[str]]:
    """The predictor the parameters ask for, plus notes for diagnostics; raises :class:`StartupError`."""
    try:
        if params.model_path:
            path = resolve_file(params.model_path, package_share())
            return Predictor.from_checkpoint(path, device=params.device, backend=params.backend), []
        if params.backend != "torch":
            raise StartupError(f"backend {params.backend!r} needs model_path (an exported model)")
        cfg = load_config(resolve_file(params.model_config, package_share()))
        return Predictor.from_config(cfg, device=params.device), [f"random weights ({cfg.name}): no model_path"]
    except StartupError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to load is reported in one line
        raise StartupError(f"cannot load the model (backend {params.backend}, device {params.device}): "
                           f"{type(exc).__name__}: {exc}") from exc


class OccNode(Node):
    """The occupancy node (see the module docstring)."""

    def __init__(self, node_name: str = "occ_node", **kwargs: object) -> None:
        super().__init__(node_name, **kwargs)  # type: ignore[arg-type]
        p = self.params = declare_and_read(self)
        self.predictor, notes = load_predictor(p)
        self.names = list(p.camera_names)
        if self.predictor.num_cams != len(self.names):
            raise StartupError(f"the model expects {self.predictor.num_cams} cameras, camera_names has "
                               f"{len(self.names)}: {self.names}")
        outputs.cubic_voxel_size(self.predictor.grid)
        self.sync: ApproximateTimeSync[CameraFrame] = ApproximateTimeSync(
            self.names, int(p.sync_slop_s * 1e9), p.sync_queue_size, int(p.camera_timeout_s * 1e9))
        self.stats = NodeStats(self.names)
        self.stats.notes += notes
        self.undistorter = convert.Undistorter(p.distortion)
        self.intrinsics: dict[str, convert.Intrinsics] = {}
        self.pending: dict[str, Image | CompressedImage] = {}  # newest image waiting for a first camera_info
        self.last_frame: dict[str, tuple[np.ndarray, np.ndarray, tuple[int, int]]] = {}  # K, T, hw
        self.tf_tree = StaticTransformTree()
        self._shown_classes: set[int] = set()
        for cam in self.names:
            if p.image_transport == "compressed":
                self.create_subscription(CompressedImage, f"{cam}/image/compressed", partial(self._on_image, cam),
                                         qos_profile_sensor_data)
            else:
                self.create_subscription(Image, f"{cam}/image", partial(self._on_image, cam), qos_profile_sensor_data)
            self.create_subscription(CameraInfo, f"{cam}/camera_info", partial(self._on_info, cam),
                                     qos_profile_sensor_data)
        if p.extrinsics_source == "tf":
            latched = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self.create_subscription(TFMessage, "/tf_static", self._on_tf_static, latched)
        self.pub_voxels = self.create_publisher(SemanticVoxelGrid, "~/voxels", 2)
        self.pub_points = self.create_publisher(PointCloud2, "~/points", 2)
        self.pub_markers = self.create_publisher(MarkerArray, "~/markers", 2)
        self.pub_bev = self.create_publisher(OccupancyGrid, "~/bev", 2)
        self.pub_calib = self.create_publisher(CameraCalibrationOffsetArray, "~/calibration_offsets", 2)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.worker: LatestWorker[SyncedSet[CameraFrame]] = LatestWorker(self._infer, self._on_worker_error)
        self.create_timer(p.diagnostics_period_s, self.publish_diagnostics)
        self.get_logger().info(f"occ_node ready: {len(self.names)} cameras ({p.image_transport}), model grid "
                               f"{self.predictor.grid.size}, backend {p.backend} on {p.device}"
                               + "".join(f"; {n}" for n in notes))

    # ---- callbacks (executor thread) -------------------------------------------------------
    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _malformed(self, cam: str, kind: str, exc: Exception) -> None:
        self.stats.malformed_message(cam, kind)
        self.get_logger().warning(f"{cam}: skipped {kind} message: {exc}", throttle_duration_sec=LOG_THROTTLE_S)

    def _on_info(self, cam: str, msg: CameraInfo) -> None:
        try:
            intr = convert.camera_info_to_intrinsics(msg)
            self.undistorter.check(intr)
        except convert.ConversionError as exc:
            self._malformed(cam, "camera_info", exc)
            return
        self.intrinsics[cam] = intr
        pending = self.pending.pop(cam, None)
        if pending is not None:  # its image came first (topics are not ordered among each other)
            self._accept(cam, pending, self._now_ns())

    def _on_tf_static(self, msg: TFMessage) -> None:
        for t in msg.transforms:
            tr, q = t.transform.translation, t.transform.rotation
            try:
                self.tf_tree.set(t.header.frame_id, t.child_frame_id,
                                 pose_to_matrix((tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w)))
            except CalibrationError as exc:
                self.get_logger().warning(f"/tf_static: ignored {t.child_frame_id}: {exc}",
                                          throttle_duration_sec=LOG_THROTTLE_S)

    def _extrinsics(self, cam: str, frame_id: str) -> np.ndarray | None:
        if self.params.extrinsics_source == "params":
            return self.params.ego_T_cam[cam]
        return self.tf_tree.lookup(self.params.ego_frame, frame_id)

    def _on_image(self, cam: str, msg: Image | CompressedImage) -> None:
        now = self._now_ns()
        self.stats.received(cam, now)
        stamp = Time.from_msg(msg.header.stamp).nanoseconds
        try:
            convert.check_stamp(stamp, now, int(self.params.max_future_s * 1e9), int(self.params.max_age_s * 1e9))
        except convert.ConversionError as exc:
            self._malformed(cam, "stamp", exc)
            return
        if isinstance(msg, Image):
            try:
                convert.check_image(msg)
            except convert.ConversionError as exc:
                self._malformed(cam, "image", exc)
                return
        self._accept(cam, msg, now)

    def _accept(self, cam: str, msg: Image | CompressedImage, now: int) -> None:
        """Attach the calibration to a valid image and hand it to the synchroniser."""
        intr = self.intrinsics.get(cam)
        if intr is None:
            if cam in self.pending:  # the older waiting image is given up
                self.stats.no_camera_info[cam] += 1
                self.get_logger().warning(f"{cam}: no valid camera_info yet", throttle_duration_sec=LOG_THROTTLE_S)
            self.pending[cam] = msg
            return
        ego_T_cam = self._extrinsics(cam, intr.frame_id)
        if ego_T_cam is None:
            self.stats.no_extrinsics[cam] += 1
            self.get_logger().warning(f"{cam}: no /tf_static chain {self.params.ego_frame} -> {intr.frame_id}",
                                      throttle_duration_sec=LOG_THROTTLE_S)
            return
        stamp = Time.from_msg(msg.header.stamp).nanoseconds
        for s in self.sync.add(cam, stamp, CameraFrame(msg, intr, ego_T_cam), now):
            self._submit(s)

    def _submit(self, s: SyncedSet[CameraFrame]) -> None:
        if not self.worker.submit(s):
            with self.stats.lock:
                self.stats.sets_dropped += 1

    def publish_diagnostics(self) -> None:
        """Publish one ``DiagnosticArray`` (called by the timer)."""
        p = self.params
        limits = Thresholds(p.calibration_warn_deg, p.calibration_warn_m, p.min_cameras, p.camera_timeout_s)
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = diagnostic_statuses(self.stats, self.sync, self._now_ns(), limits)  # type: ignore[arg-type]
        for status in msg.status:
            status.hardware_id = self.get_fully_qualified_name()
        self.pub_diag.publish(msg)

    # ---- inference (worker thread) ---------------------------------------------------------
    def _decode(self, cam: str, frame: CameraFrame) -> tuple[np.ndarray, convert.Intrinsics] | None:
        """The image (undistorted) and the intrinsics of its pixels; compressed images are decoded
        at the reduction the predictor allows for their size. ``None`` (counted) if unusable."""
        try:
            image, intr = convert.decode(frame.msg, frame.intrinsics,
                                         self.predictor.decode_reduction(frame.intrinsics.image_hw))
            latest = self.intrinsics.get(cam)
            if image.shape[:2] != intr.image_hw and latest is not None and latest is not frame.intrinsics:
                # resolution changed; the image overtook its camera_info
                retry, retry_intr = convert.decode(frame.msg, latest, self.predictor.decode_reduction(latest.image_hw))
                if retry.shape[:2] == retry_intr.image_hw:
                    image, intr = retry, retry_intr
            convert.check_image_size(image, intr)
            return self.undistorter(image, intr), intr
        except convert.ConversionError as exc:
            self._malformed(cam, "decode", exc)
            return None

    def _placeholder(self, cam: str) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        """Last known K, ego_T_cam and size of a camera (a generic pinhole if never seen)."""
        if cam in self.last_frame:
            return self.last_frame[cam]
        h, w = self.predictor.image_hw
        K = np.array([[w, 0.0, (w - 1) / 2], [0.0, w, (h - 1) / 2], [0.0, 0.0, 1.0]])
        T = self.params.ego_T_cam.get(cam, np.eye(4))
        return K, T, (h, w)

    def _infer(self, s: SyncedSet[CameraFrame]) -> None:
        images: list[np.ndarray] = []
        calib: list[tuple[np.ndarray, np.ndarray]] = []  # (K, ego_T_cam) per camera
        valid: list[bool] = []
        for cam, frame in zip(self.names, s.items):
            decoded = self._decode(cam, frame) if frame is not None else None
            if frame is not None and decoded is not None:
                image, K, T = decoded[0], decoded[1].K, frame.ego_T_cam
                self.last_frame[cam] = (K, T, (image.shape[0], image.shape[1]))
                valid.append(True)
            else:  # camera missing or undecodable: black image, last known calibration, features zeroed
                K, T, hw = self._placeholder(cam)
                image = np.zeros((*hw, 3), np.uint8)
                valid.append(False)
            images.append(image)
            calib.append((K, T))
        if sum(valid) < self.params.min_cameras:
            with self.stats.lock:
                self.stats.sets_skipped += 1
            return
        inp = PredictorInput(images, np.stack([k for k, _ in calib]), np.stack([t for _, t in calib]), np.array(valid))
        pred = self.predictor.predict(inp)
        newest = max((f for f in s.items if f is not None), key=lambda f: Time.from_msg(f.msg.header.stamp))
        header = Header(stamp=newest.msg.header.stamp, frame_id=self.params.ego_frame)
        grid = self.predictor.grid
        self.pub_voxels.publish(outputs.voxel_grid_msg(pred, grid, self.predictor.class_names, header))
        self.pub_points.publish(outputs.point_cloud_msg(pred, grid, header))
        if self.pub_markers.get_subscription_count() > 0:  # for RViz only: build only when watched
            markers, self._shown_classes = outputs.marker_array_cdr(pred, grid, header, self._shown_classes)
            self.pub_markers.publish(markers)
        self.pub_bev.publish(outputs.bev_msg(pred, grid, header))
        frames = [self.intrinsics[c].frame_id if c in self.intrinsics else c for c in self.names]
        self.pub_calib.publish(outputs.calibration_msg(pred, header, frames))
        latency_ms = (self._now_ns() - s.stamp_ns) / 1e6
        self.stats.inferred(latency_ms, *offset_magnitudes(pred.rotation_offsets, pred.translation_offsets))

    def _on_worker_error(self, exc: BaseException) -> None:
        with self.stats.lock:
            self.stats.inference_errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
        self.get_logger().error(f"inference failed: {type(exc).__name__}: {exc}",
                                throttle_duration_sec=LOG_THROTTLE_S)

    def destroy_node(self) -> None:
        """Stop the worker thread, then the node."""
        self.worker.stop()
        super().destroy_node()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``scaocc node`` / ``occ_node`` arguments; everything after ``--ros-args`` goes to ROS."""
    parser.add_argument("--params", help="parameters YAML (ros__parameters format), e.g. config/occ_node.yaml")
    parser.add_argument("--model", help="checkpoint, shorthand for -p model_path:=PATH")
    parser.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=[],
                        help="ROS arguments (remappings -r, parameters -p, ...)")


def run(args: argparse.Namespace) -> int:
    """Run the node until shutdown; returns the process exit code."""
    ros_args = ["--ros-args"]
    if args.params:
        if not Path(args.params).is_file():
            print(f"occ_node: parameters file {args.params!r} not found", file=sys.stderr)
            return 2
        ros_args += ["--params-file", args.params]
    if args.model:
        ros_args += ["-p", f"model_path:={args.model}"]
    rclpy.init(args=["occ_node", *ros_args, *args.ros_args])
    node = None
    try:
        node = OccNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (ParamError, StartupError, ValueError) as exc:
        print(f"occ_node: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main() -> None:
    """Entry point of the ``occ_node`` console script (also what ``ros2 run`` starts)."""
    parser = argparse.ArgumentParser(prog="occ_node", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    sys.exit(run(parser.parse_args(sys.argv[1:])))
