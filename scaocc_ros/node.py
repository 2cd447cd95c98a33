"""``occ_node``: N synchronised cameras in, semantic occupancy out (run it with ``scaocc node``).

Subscribes ``<cam>/image`` (or ``<cam>/image/compressed``) and ``<cam>/camera_info`` for every
camera of ``camera_names``; publishes ``~/voxels``, ``~/points``, ``~/markers``, ``~/bev``,
``~/calibration_offsets`` and ``/diagnostics``. Intrinsics come from every CameraInfo and
extrinsics from the parameters or ``/tf_static``; both travel with each camera set into the
predictor (which takes K and ego_T_cam per call), so calibration changes apply at once.
The node only adapts ROS to :class:`~scaocc_ros.pipeline.CameraSetPipeline` (shared with
``scaocc bag infer``): callbacks feed it, a worker thread (newest set wins) runs it and
publishes what it returns.
Example: ``scaocc node --params config/occ_node.yaml --ros-args -r cam_front/image:=/front/img``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from functools import partial
from pathlib import Path
from typing import Any

try:  # the interfaces built from msg/ by colcon (make setup)
    import scaocc_msgs.msg  # noqa: F401
    import tf2_msgs.msg  # noqa: F401
except ImportError as exc:
    raise ImportError(f"{exc.name} is not importable: build the interfaces with `make setup` and "
                      "`source install/local_setup.bash`") from exc

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.serialization import serialize_message
from scaocc_msgs.msg import CameraCalibrationOffsetArray, SemanticVoxelGrid
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from scaocc_ros import qos
from scaocc_ros.calibration import offset_magnitudes
from scaocc_ros.diagnostics import Thresholds, diagnostic_statuses
from scaocc_ros.params import EXTRINSIC_KEYS, NodeParams, ParamError, with_extrinsics
from scaocc_ros.pipeline import CameraFrame, CameraSetPipeline, StartupError, load_predictor
from scaocc_ros.sync import SyncedSet
from scaocc_ros.worker import LatestWorker

LOG_THROTTLE_S = 5.0
#: Output name -> message type; published on ``~/<name>``.
OUTPUT_TYPES: dict[str, type] = {"voxels": SemanticVoxelGrid, "points": PointCloud2, "markers": MarkerArray,
                                 "bev": OccupancyGrid, "calibration_offsets": CameraCalibrationOffsetArray}


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


def declare_and_read(node: Node) -> NodeParams:
    """Declare every parameter of :class:`NodeParams` on ``node`` (plus the extrinsics of the
    cameras named in ``camera_names``), read them and return them validated."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(NodeParams):
        if f.metadata.get("dynamic"):
            continue
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        value = node.declare_parameter(f.name, default, ParameterDescriptor(description=f.metadata["help"])).value
        values[f.name] = tuple(value) if isinstance(f.default, tuple) else value
    params = NodeParams(**values).validate()
    raw = {cam: {key: node.declare_parameter(f"extrinsics.{cam}.{key}", Parameter.Type.DOUBLE_ARRAY,
                                             ParameterDescriptor(description=f"ego_T_cam of {cam}: {key}")).value
                 for key in EXTRINSIC_KEYS} for cam in params.camera_names}
    return with_extrinsics(params, raw)


class OccNode(Node):
    """The occupancy node (see the module docstring): ROS callbacks over a :class:`CameraSetPipeline`."""

    def __init__(self, node_name: str = "occ_node", **kwargs: object) -> None:
        super().__init__(node_name, **kwargs)  # type: ignore[arg-type]
        p = self.params = declare_and_read(self)
        predictor, notes = load_predictor(p, package_share())
        self.pipeline = CameraSetPipeline(predictor, p, serialize_message, self.get_logger().warning)
        self.pipeline.stats.add_notes(notes)
        sensor = qos.image_subscription(p.image_reliability, p.image_qos_depth)
        for cam in p.camera_names:
            if p.image_transport == "compressed":
                self.create_subscription(CompressedImage, f"{cam}/image/compressed", partial(self._on_image, cam),
                                         sensor)
            else:
                self.create_subscription(Image, f"{cam}/image", partial(self._on_image, cam), sensor)
            self.create_subscription(CameraInfo, f"{cam}/camera_info", partial(self._on_info, cam), sensor)
        if p.extrinsics_source == "tf":
            self.create_subscription(TFMessage, "/tf_static", self.pipeline.on_tf_static, qos.TF_STATIC_SUBSCRIBER)
        self.pubs = {name: self.create_publisher(kind, f"~/{name}", qos.OUTPUTS) for name, kind in OUTPUT_TYPES.items()}
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", qos.DIAGNOSTICS)
        self.worker: LatestWorker[SyncedSet[CameraFrame]] = LatestWorker(self._infer, self._on_worker_error)
        self.create_timer(p.diagnostics_period_s, self.publish_diagnostics)
        self.get_logger().info(f"occ_node ready: {len(p.camera_names)} cameras ({p.image_transport}), model grid "
                               f"{predictor.grid.size}, backend {p.backend} on {p.device}"
                               + "".join(f"; {n}" for n in notes))

    # ---- callbacks (executor thread) -------------------------------------------------------
    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_info(self, cam: str, msg: CameraInfo) -> None:
        self._submit(self.pipeline.on_camera_info(cam, msg, self._now_ns()))

    def _on_image(self, cam: str, msg: Image | CompressedImage) -> None:
        self._submit(self.pipeline.on_image(cam, msg, self._now_ns()))

    def _submit(self, sets: list[SyncedSet[CameraFrame]]) -> None:
        for s in sets:
            if not self.worker.submit(s):
                self.pipeline.stats.set_dropped()

    def publish_diagnostics(self) -> None:
        """Publish one ``DiagnosticArray`` (called by the timer)."""
        p = self.params
        limits = Thresholds(p.calibration_warn_deg, p.calibration_warn_m, p.min_cameras, p.camera_timeout_s,
                            p.warn_late_duplicate, p.warn_dropped)
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = diagnostic_statuses(self.pipeline.stats, self.pipeline.sync,  # type: ignore[arg-type]
                                         self._now_ns(), limits)
        for status in msg.status:
            status.hardware_id = self.get_fully_qualified_name()
        self.pub_diag.publish(msg)

    # ---- inference (worker thread) ---------------------------------------------------------
    def _infer(self, s: SyncedSet[CameraFrame]) -> None:
        out = self.pipeline.infer(s, markers=self.pubs["markers"].get_subscription_count() > 0)  # RViz only
        if out is None:
            return
        for name, msg in out.messages().items():
            self.pubs[name].publish(msg)
        pred = out.prediction
        self.pipeline.stats.inferred((self._now_ns() - out.stamp_ns) / 1e6,
                                     *offset_magnitudes(pred.rotation_offsets, pred.translation_offsets))

    def _on_worker_error(self, exc: BaseException) -> None:
        self.pipeline.stats.inference_failed(f"{type(exc).__name__}: {exc}")
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
