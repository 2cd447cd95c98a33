"""End to end in real processes: ``scaocc cameras`` -> ``scaocc node`` -> this test's subscriber.

Both are child processes on a private localhost ROS domain; the node takes its extrinsics
from the publisher's ``/tf_static`` (without them it would publish nothing) and runs a tiny
random-weight checkpoint made in tmp. Raw and JPEG transports.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rclpy
from nav_msgs.msg import OccupancyGrid
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from scaocc_msgs.msg import SemanticVoxelGrid
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from scaocc_ros import qos
from scaocc_ros.tools.processes import ROOT, ChildProcesses, free_domain_id, ros_environment, scaocc_command
from tests.fixtures import tiny_checkpoint

OUTPUTS = {"voxels": SemanticVoxelGrid, "points": PointCloud2, "markers": MarkerArray, "bev": OccupancyGrid}
CAMS = ["cam_front_left", "cam_front", "cam_front_right", "cam_back_left", "cam_back", "cam_back_right"]
TIMEOUT_S = 90.0


def stamp(msg: Any) -> int:
    header = msg.markers[0].header if isinstance(msg, MarkerArray) else msg.header
    return int(header.stamp.sec) * 10**9 + int(header.stamp.nanosec)


class Listener(Node):
    """Records the node's outputs, the ground truth and every camera image's stamp."""

    def __init__(self, context: Context, compressed: bool) -> None:
        super().__init__("e2e_listener", context=context)
        self.outputs: dict[str, dict[int, Any]] = {k: {} for k in OUTPUTS}
        for name, kind in OUTPUTS.items():
            self.create_subscription(kind, f"/occ_node/{name}", self._store(name), 10)
        self.truth: dict[int, Any] = {}
        self.create_subscription(SemanticVoxelGrid, "/synthetic_cameras/ground_truth",
                                 lambda m: self.truth.__setitem__(stamp(m), m), qos.GROUND_TRUTH)
        self.image_stamps: dict[str, set[int]] = {c: set() for c in CAMS}
        kind, suffix = (CompressedImage, "image/compressed") if compressed else (Image, "image")
        for cam in CAMS:
            self.create_subscription(kind, f"/{cam}/{suffix}", lambda m, c=cam: self.image_stamps[c].add(stamp(m)),
                                     qos_profile_sensor_data)
            # a second reader of every camera topic, as the node is: the cameras wait for both
            self.create_subscription(CameraInfo, f"/{cam}/camera_info", lambda m: None, qos_profile_sensor_data)

    def _store(self, name: str) -> Any:
        return lambda m: self.outputs[name].__setitem__(stamp(m), m)

    def complete(self) -> list[int]:
        """Stamps for which every output arrived."""
        return sorted(set.intersection(*(set(v) for v in self.outputs.values())))


@pytest.fixture
def domain() -> Iterator[tuple[int, Context]]:
    """A private ROS domain and an rclpy context on it."""
    domain_id = free_domain_id()
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    yield domain_id, ctx
    rclpy.shutdown(context=ctx)


@pytest.mark.slow
@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "jpeg"])
def test_cameras_feed_the_node_across_processes(domain: tuple[int, Context], tmp_path: Path, compressed: bool) -> None:
    domain_id, ctx = domain
    ckpt = tiny_checkpoint(tmp_path / "micro.pt")
    listener = Listener(ctx, compressed)
    node_args = ["--model", str(ckpt), "--ros-args", "-p", "extrinsics_source:=tf",
                 *(["-p", "image_transport:=compressed"] if compressed else [])]
    # two readers per camera topic (the node and this listener): with one, the cameras could start as
    # soon as this listener matched and send all 4 frames before the node had (seen once in CI)
    camera_args = ["--frames", "4", "--rate", "4", "--resolution", "64x176", "--wait-subscribers", str(TIMEOUT_S),
                   "--subscribers", "2", *(["--compressed"] if compressed else [])]
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(listener)
    with ChildProcesses(ros_environment(domain_id), tmp_path / "logs") as children:
        children.start("node", scaocc_command("node", "--params", str(ROOT / "config" / "occ_node.yaml"), *node_args))
        children.start("cameras", scaocc_command("cameras", *camera_args))
        end = time.monotonic() + TIMEOUT_S
        while not listener.complete() or children.procs["cameras"].poll() is None:
            assert time.monotonic() < end, f"no complete output set:\n{children.log_tail('node')}"
            children.check_alive()
            ex.spin_once(timeout_sec=0.05)
        assert children.procs["cameras"].returncode == 0, children.log_tail("cameras")
        end = time.monotonic() + 10.0  # reliable ground truth still in this process' queue
        while len(listener.truth) < 4 and time.monotonic() < end:
            ex.spin_once(timeout_sec=0.05)
    published = set(listener.truth)  # one ground truth per published frame, stamped like its images
    assert len(published) == 4
    received_images = set.union(*listener.image_stamps.values())
    assert received_images <= published
    assert listener.complete()
    # every output carries the stamp of one input frame: its ground truth (reliable) is stamped like its
    # images; the images themselves may miss this listener, so they are not the reference
    for s in listener.complete():
        assert s in published
        grid = listener.outputs["voxels"][s]
        assert (grid.size_x, grid.size_y, grid.size_z) == (50, 50, 4) and len(grid.labels) == 50 * 50 * 4
        assert grid.header.frame_id == "base_link"
        assert listener.outputs["bev"][s].info.width == 50
    listener.destroy_node()
