"""``occ_node``: N synchronised cameras in, semantic occupancy out (run it with ``scaocc node``).

A managed (lifecycle) node, as yolo_ros's are:

- **configure** reads and checks the parameters, resolves ``device: auto``, loads the model,
  checks that it takes as many cameras as ``camera_names`` names, warms it up, and creates
  the publishers, the diagnostics timer and the inference worker;
- **activate** subscribes ``<cam>/image`` (or ``<cam>/image/compressed``) and
  ``<cam>/camera_info`` of every camera, ``/tf_static`` and ``/tf``, and starts publishing
  ``~/voxels``, ``~/points``, ``~/obstacles``, ``~/markers``, ``~/bev`` (transient local),
  ``~/calibration_offsets``;
- **deactivate** unsubscribes and stops publishing (the worker finishes its set first);
- **cleanup** releases the model, the worker, the publishers and the timer.

With ``autostart: true`` (the default: plain mode) the node drives configure and activate
itself at start, so ``occ_node`` with no arguments starts and waits for cameras (extrinsics
from ``/tf_static``); with ``autostart: false`` it waits, unconfigured, for a lifecycle manager
(the launch file emits the transitions). ``/diagnostics`` is published while configured, its
statuses named after the node. Parameters are declared with descriptors
(:mod:`scaocc_ros.node_params`); the runtime ones apply at once, the others are read-only.
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
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.serialization import serialize_message
from scaocc_msgs.msg import CameraCalibrationOffsetArray, SemanticVoxelGrid
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from scaocc_core.device import resolve_device
from scaocc_core.memory import keep_freed_memory
from scaocc_ros import cdr, node_params, qos
from scaocc_ros.calibration import offset_magnitudes
from scaocc_ros.diagnostics import Thresholds, diagnostic_statuses
from scaocc_ros.encodings import ConversionError
from scaocc_ros.params import NodeParams, ParamError
from scaocc_ros.pipeline import CameraFrame, CameraSetPipeline, StartupError, load_predictor
from scaocc_ros.set_outputs import class_ids
from scaocc_ros.sync import SyncedSet
from scaocc_ros.worker import LatestWorker

LOG_THROTTLE_S = 5.0
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
#: How long the inference thread may hold the GIL while the executor waits for it (s).
GIL_SWITCH_INTERVAL_S = 0.0005
#: Output name -> message type; published on ``~/<name>``.
OUTPUT_TYPES: dict[str, type] = {"voxels": SemanticVoxelGrid, "points": PointCloud2, "obstacles": PointCloud2,
                                 "markers": MarkerArray, "bev": OccupancyGrid,
                                 "calibration_offsets": CameraCalibrationOffsetArray}


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


class OccNode(LifecycleNode):
    """The occupancy node (see the module docstring): lifecycle and ROS callbacks over a
    :class:`CameraSetPipeline`. ``configure_error`` holds why the last configure failed."""

    def __init__(self, node_name: str = "occ_node", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        node_params.declare(self)
        self.autostart = bool(self.get_parameter("autostart").value)
        self.params: NodeParams | None = None
        self.pipeline: CameraSetPipeline | None = None
        self.worker: LatestWorker[SyncedSet[CameraFrame]] | None = None
        self.pubs: dict[str, Any] = {}
        self.pub_diag: Any = None
        self._timer: Any = None
        self._subs: list[Any] = []
        self.configure_error = ""
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

    # ---- lifecycle -------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Read the parameters, load and warm up the model, create publishers, timer and worker."""
        try:
            p = node_params.read(self)
            p = dataclasses.replace(p, device=resolve_device(p.device))
            predictor, notes = load_predictor(p, package_share())
            pipeline = CameraSetPipeline(predictor, p, serialize_message, self.get_logger().warning)
            predictor.warm_up()
        except (ParamError, StartupError, ValueError) as exc:
            return self._configure_failed(str(exc))
        except Exception as exc:  # noqa: BLE001 - anything else: one line too, never a silent ERROR transition
            return self._configure_failed(f"{type(exc).__name__}: {exc}")
        self.configure_error = ""
        self.params, self.pipeline = p, pipeline
        pipeline.stats.add_notes(notes)
        self.pubs = {name: self.create_lifecycle_publisher(kind, f"~/{name}", qos.BEV if name == "bev" else qos.OUTPUTS)
                     for name, kind in OUTPUT_TYPES.items()}
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", qos.DIAGNOSTICS)
        self._timer = self.create_timer(p.diagnostics_period_s, self.publish_diagnostics)
        self.worker = LatestWorker(self._infer, self._on_worker_error)
        auto = " (auto)" if self.get_parameter("device").value == "auto" else ""
        self.get_logger().info(f"configured: {len(p.camera_names)} cameras ({p.image_transport}), model grid "
                               f"{predictor.grid.size}, backend {p.backend} on {p.device}{auto}, extrinsics from "
                               f"{p.extrinsics_source}" + "".join(f"; {n}" for n in notes))
        return SUCCESS

    def _configure_failed(self, why: str) -> TransitionCallbackReturn:
        self.configure_error = why
        self.get_logger().error(f"configure failed: {why}")
        return FAILURE

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe the cameras, ``/tf_static`` and ``/tf``; enable the publishers."""
        p, pipe = self.params, self.pipeline
        assert p is not None and pipe is not None
        sensor = qos.image_subscription(p.image_reliability, p.image_qos_depth)
        for cam in p.camera_names:
            if p.image_transport == "compressed":
                sub = self.create_subscription(CompressedImage, f"{cam}/image/compressed",
                                               partial(self._on_image, cam), sensor)
            else:
                sub = self.create_subscription(Image, f"{cam}/image", partial(self._on_raw_image, cam),
                                               sensor, raw=True)  # pixels not copied (cdr.py)
            self._subs.append(sub)
            pipe.image_topics[cam] = sub.topic_name  # after remapping: rectification auto reads it
            self._subs.append(self.create_subscription(CameraInfo, f"{cam}/camera_info", partial(self._on_info, cam),
                                                       sensor))
        self._subs.append(self.create_subscription(TFMessage, "/tf_static", pipe.on_tf_static,
                                                   qos.TF_STATIC_SUBSCRIBER))
        if p.motion_compensation or p.output_frame:
            self._subs.append(self.create_subscription(TFMessage, "/tf", pipe.on_tf, qos.TF))
        self.get_logger().info(f"active: waiting for {', '.join(p.camera_names)}")
        return super().on_activate(state)

    def _unsubscribe(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        if self.worker is not None:
            self.worker.wait_idle(10.0)  # the set in progress is published before the publishers stop

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribe, let the worker finish, disable the publishers."""
        self._unsubscribe()
        self.get_logger().info("inactive: unsubscribed, publishers disabled")
        return super().on_deactivate(state)

    def _release(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        for pub in self.pubs.values():
            self.destroy_lifecycle_publisher(pub)
        if self.pub_diag is not None:
            self.destroy_publisher(self.pub_diag)
        if self._timer is not None:
            self.destroy_timer(self._timer)
        self.worker, self.pubs, self.pub_diag, self._timer = None, {}, None, None
        self.pipeline, self.params = None, None

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release the model, the worker, the publishers and the timer."""
        self._release()
        self.get_logger().info("unconfigured: model released")
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything, from any primary state."""
        self._unsubscribe()
        self._release()
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything; the node returns to unconfigured."""
        self.get_logger().error(f"error in state {state.label}: releasing everything")
        return self.on_shutdown(state)

    # ---- parameters ------------------------------------------------------------------------
    def _check_parameters(self, changes: list[Parameter[Any]]) -> SetParametersResult:
        """Refuse a runtime change that the parameters' validation or the model would refuse (rclpy
        itself refuses read-only and out-of-range values, with its reason)."""
        try:
            current = self.params or node_params.read(self, extrinsics=False)
            new = node_params.changed(current, changes)
            if self.pipeline is not None:
                class_ids(self.pipeline.predictor.class_names, new)
        except ParamError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, changes: list[Parameter[Any]]) -> None:
        """Apply accepted runtime changes to the running pipeline."""
        if self.params is None or self.pipeline is None:
            return  # read at the next configure
        self.params = node_params.changed(self.params, changes)
        self.pipeline.update_params(self.params)
        self.get_logger().info("parameters: " + ", ".join(f"{c.name}={c.value}" for c in changes))

    # ---- callbacks (executor thread) -------------------------------------------------------
    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_info(self, cam: str, msg: CameraInfo) -> None:
        if self.pipeline is not None:
            self._submit(self.pipeline.on_camera_info(cam, msg, self._now_ns()))

    def _on_image(self, cam: str, msg: Image | CompressedImage) -> None:
        if self.pipeline is not None:
            self._submit(self.pipeline.on_image(cam, msg, self._now_ns()))

    def _on_raw_image(self, cam: str, data: bytes) -> None:
        if self.pipeline is None:
            return
        try:
            msg = cdr.image_from_cdr(data)
        except ConversionError as exc:
            self.pipeline.reject(cam, "image", exc)
            return
        self._submit(self.pipeline.on_image(cam, msg, self._now_ns()))

    def _submit(self, sets: list[SyncedSet[CameraFrame]]) -> None:
        for s in sets:
            if self.worker is not None and not self.worker.submit(s) and self.pipeline is not None:
                self.pipeline.stats.set_dropped()

    def diagnostics_prefix(self) -> str:
        """The node's name, as its diagnostics statuses are named (``<prefix>: inputs``...)."""
        return self.get_fully_qualified_name().lstrip("/")

    def publish_diagnostics(self) -> None:
        """Publish one ``DiagnosticArray`` (called by the timer while configured)."""
        p, pipe = self.params, self.pipeline
        if p is None or pipe is None or self.pub_diag is None:
            return
        limits = Thresholds(p.calibration_warn_deg, p.calibration_warn_m, p.min_cameras, p.camera_timeout_s,
                            p.warn_late_duplicate, p.warn_dropped)
        prefix = self.diagnostics_prefix()
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = diagnostic_statuses(pipe.stats, pipe.sync, self._now_ns(), limits,  # type: ignore[arg-type]
                                         prefix=prefix)
        msg.status.append(pipe.motion.status(p.motion_compensation, p.odom_frame, p.ego_frame, p.output_frame,
                                             prefix))
        for status in msg.status:
            status.hardware_id = self.get_fully_qualified_name()
        self.pub_diag.publish(msg)

    # ---- inference (worker thread) ---------------------------------------------------------
    def _infer(self, s: SyncedSet[CameraFrame]) -> None:
        pipe, pubs = self.pipeline, self.pubs
        if pipe is None or not pubs:
            return
        out = pipe.infer(s, markers=pubs["markers"].get_subscription_count() > 0)  # RViz only
        if out is None:
            return
        for name, msg in out.messages().items():
            pubs[name].publish(msg)
        pred = out.prediction
        pipe.stats.inferred((self._now_ns() - out.stamp_ns) / 1e6,
                            *offset_magnitudes(pred.rotation_offsets, pred.translation_offsets))

    def _on_worker_error(self, exc: BaseException) -> None:
        if not self.context.ok():  # shut down (SIGTERM) while a set was in flight: nothing failed
            return
        if self.pipeline is not None:
            self.pipeline.stats.inference_failed(f"{type(exc).__name__}: {exc}")
        self.get_logger().error(f"inference failed: {type(exc).__name__}: {exc}",
                                throttle_duration_sec=LOG_THROTTLE_S)

    def destroy_node(self) -> None:
        """Release everything (worker thread included), then destroy the node."""
        self._unsubscribe()
        self._release()
        super().destroy_node()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``scaocc node`` / ``occ_node`` arguments; everything after ``--ros-args`` goes to ROS."""
    parser.add_argument("--params", help="parameters YAML (ros__parameters format), e.g. config/occ_node.yaml")
    parser.add_argument("--model", help="checkpoint, shorthand for -p model_path:=PATH")
    parser.add_argument("--managed", action="store_true",
                        help="wait unconfigured for a lifecycle manager (shorthand for -p autostart:=false)")
    parser.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=[],
                        help="ROS arguments (remappings -r, parameters -p, ...)")


def run(args: argparse.Namespace) -> int:
    """Run the node until shutdown; returns the process exit code (1 if autostart's configure fails)."""
    ros_args = ["--ros-args"]
    if args.params:
        if not Path(args.params).is_file():
            print(f"occ_node: parameters file {args.params!r} not found", file=sys.stderr)
            return 2
        ros_args += ["--params-file", args.params]
    if args.model:
        ros_args += ["-p", f"model_path:={args.model}"]
    if getattr(args, "managed", False):
        ros_args += ["-p", "autostart:=false"]
    # The inference thread holds the GIL between its many small ops; the executor thread that
    # takes camera messages gets it back after at most this long (CPython's default: 5 ms).
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    rclpy.init(args=["occ_node", *ros_args, *args.ros_args])
    node = None
    try:
        node = OccNode()
        if node.autostart:
            if node.trigger_configure() != SUCCESS:
                print(f"occ_node: {node.configure_error or 'configure failed'}", file=sys.stderr)
                return 1
            node.trigger_activate()
        else:
            node.get_logger().info("unconfigured: waiting for a lifecycle manager (configure, activate)")
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (ParamError, ValueError) as exc:
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
    args = parser.parse_args(sys.argv[1:])
    keep_freed_memory()  # inference reuses its tensors' memory instead of faulting it in (scaocc_core.memory)
    sys.exit(run(args))
