"""``scaocc cameras``: the synthetic world published as a six-camera car over ROS 2.

Per camera ``<cam>/image`` (``sensor_msgs/Image`` rgb8; or ``<cam>/image/compressed``, JPEG,
with ``--compressed``) and ``<cam>/camera_info`` (K, zero plumb_bob distortion), sensor-data
QoS; ``/tf_static`` (``base_link -> <cam>_optical``, transient local) and ``/tf``
(``odom -> base_link``); and the Occ3D ground truth on ``~/ground_truth``
(``scaocc_msgs/SemanticVoxelGrid``; ``confidence`` = 255 where a camera sees the voxel).
Camera names are the rig's in lower case (``cam_front``...), the node's defaults.

Frames are rendered first (the renderer is slower than real time on a CPU), then published
at ``--rate`` with the current time as stamp. Example::

    scaocc cameras --rate 10 --frames 20 --compressed
    scaocc node --params config/occ_node.yaml --ros-args -p extrinsics_source:=tf -p image_transport:=compressed
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable

import rclpy
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import ReliabilityPolicy
from rclpy.timer import Timer
from scaocc_msgs.msg import SemanticVoxelGrid
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from tf2_msgs.msg import TFMessage

from scaocc_core.data.synthetic import SynthFrame, SynthSpec
from scaocc_ros import qos
from scaocc_ros.params import NUSCENES_CAMERAS
from scaocc_ros.tools import synth_msgs as sm
from scaocc_ros.tools.synth_msgs import add_world_arguments, render_all, spec_from_args

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``scaocc cameras``."""
    add_world_arguments(parser)
    parser.add_argument("--loop", action="store_true", help="start again after the last frame (until Ctrl-C)")
    parser.add_argument("--wait-subscribers", type=float, default=0.0, metavar="SECONDS",
                        help="wait up to SECONDS for --subscribers readers on every image and camera_info topic "
                             "before publishing (0: start at once); exit 1 if they did not all come")
    parser.add_argument("--subscribers", type=int, default=1, metavar="N",
                        help="readers to wait for on each of those topics (the demo: 2, occ_node and its recorder; "
                             "a reader discovered late misses the first frames)")
    parser.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=[],
                        help="ROS arguments (remappings, use_sim_time...)")


class SyntheticCameras(Node):
    """Publishes pre-rendered synthetic frames at a fixed rate (see the module docstring)."""

    def __init__(self, spec: SynthSpec, frames: list[tuple[SynthFrame, list[bytes] | None]],
                 compressed: bool, loop: bool) -> None:
        super().__init__(sm.NODE_NAME)
        self.spec, self.frames, self.compressed, self.loop = spec, frames, compressed, loop
        first = frames[0][0]
        self.cameras = [sm.ros_camera_name(n) for n in first.camera_names]
        if self.cameras != list(NUSCENES_CAMERAS):
            self.get_logger().warning(f"cameras {self.cameras} differ from occ_node's default camera_names")
        kind = CompressedImage if compressed else Image
        self.pub_images = [self.create_publisher(kind, sm.image_topic(c, compressed), qos.CAMERA_PUBLISHER)
                           for c in self.cameras]
        self.pub_infos = {sm.info_topic(c): self.create_publisher(CameraInfo, sm.info_topic(c),
                                                                  qos.CAMERA_PUBLISHER) for c in self.cameras}
        self.pub_by_topic = dict(zip([sm.image_topic(c, compressed) for c in self.cameras], self.pub_images))
        self.pub_by_topic.update(self.pub_infos)
        self.pub_by_topic["/tf"] = self.create_publisher(TFMessage, "/tf", 100)
        self.pub_by_topic[sm.GROUND_TRUTH_TOPIC] = self.create_publisher(SemanticVoxelGrid, "~/ground_truth",
                                                                         qos.GROUND_TRUTH)
        self.pub_static = self.create_publisher(TFMessage, "/tf_static", qos.TF_STATIC_PUBLISHER)
        self.pub_static.publish(sm.tf_static_msg(self.cameras, first.ego_T_cam, self._now_ns()))
        self.index = 0
        self.published = 0
        self.done = False
        self.timer: Timer | None = None

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def reliable_publishers(self) -> list[Publisher]:
        """Publishers with reliable QoS (ground truth, tf): their last messages are awaited at exit."""
        return [p for p in self.pub_by_topic.values() if p.qos_profile.reliability == ReliabilityPolicy.RELIABLE]

    def waiting_for(self, readers: int = 1) -> list[str]:
        """Image and camera_info topics with fewer than ``readers`` subscribers (a reader needs both)."""
        return [p.topic_name for p in (*self.pub_images, *self.pub_infos.values())
                if p.get_subscription_count() < readers]

    def start(self, rate_hz: float) -> None:
        """Publish one frame every ``1 / rate_hz`` seconds from now on."""
        self.timer = self.create_timer(1.0 / rate_hz, self._tick)

    def _tick(self) -> None:
        if self.index >= len(self.frames):
            if not self.loop:
                self.done = True
                return
            self.index = 0
        frame, jpegs = self.frames[self.index]
        msgs = sm.frame_messages(frame, self._now_ns(), self.spec.grid, self.compressed, jpegs)
        for topic, msg in msgs.all():
            self.pub_by_topic[topic].publish(msg)
        self.index += 1
        self.published += 1


def spin_until(executor: SingleThreadedExecutor, done: Callable[[], bool], timeout: float) -> bool:
    """Spin ``executor`` until ``done()`` or ``timeout`` seconds; returns ``done()``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if done():
            return True
        executor.spin_once(timeout_sec=0.05)
    return done()


def run(args: argparse.Namespace) -> int:
    """Render, then publish until the frames (or Ctrl-C) run out; returns the exit code."""
    if not args.rate > 0:
        print(f"scaocc cameras: --rate must be positive, got {args.rate}", file=sys.stderr)
        return 2
    if args.subscribers < 1:
        print(f"scaocc cameras: --subscribers must be at least 1, got {args.subscribers}", file=sys.stderr)
        return 2
    try:
        spec = spec_from_args(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"scaocc cameras: {exc}", file=sys.stderr)
        return 2
    frames = render_all(spec, args.compressed)
    rclpy.init(args=["synthetic_cameras", "--ros-args", *args.ros_args])
    node = None
    try:
        node = SyntheticCameras(spec, frames, args.compressed, args.loop)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        if args.wait_subscribers > 0 and not spin_until(executor, lambda: not node.waiting_for(args.subscribers),
                                                         args.wait_subscribers):
            print(f"scaocc cameras: fewer than {args.subscribers} subscriber(s) after {args.wait_subscribers} s on "
                  f"{node.waiting_for(args.subscribers)}", file=sys.stderr)
            return 1
        spin_until(executor, lambda: False, 1.0 if args.wait_subscribers > 0 else 0.0)  # both ends matched
        node.start(args.rate)
        node.get_logger().info(f"publishing {len(frames)} frames of {len(node.cameras)} cameras at {args.rate} Hz"
                               + (" (JPEG)" if args.compressed else "") + (", looping" if args.loop else ""))
        while rclpy.ok() and not node.done:
            executor.spin_once(timeout_sec=0.1)
        for pub in node.reliable_publishers():  # the last ground truth / tf must reach late readers
            pub.wait_for_all_acked(Duration(seconds=2.0))
        spin_until(executor, lambda: False, 0.5)
        node.get_logger().info(f"published {node.published} frames")
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
