"""One bag, two ways: occ_node fed over DDS by ``scaocc bag play``, and ``scaocc bag infer``.

Both run as child processes with the same parameters (extrinsics from the bag's
``/tf_static``) and the same tiny checkpoint; every camera set both answered must have
identical voxel labels and identical calibration outputs. The node may answer fewer sets
(newest wins while it is busy, and images travel best effort), never different ones.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rosbags.highlevel import AnyReader
from scaocc_msgs.msg import CameraCalibrationOffsetArray, SemanticVoxelGrid

from scaocc_core.cli import main as scaocc
from scaocc_ros.pipeline import stamp_of
from scaocc_ros.tools import ros_types
from scaocc_ros.tools.processes import ROOT, ChildProcesses, free_domain_id, ros_environment, scaocc_command
from tests.fixtures import tiny_checkpoint

FRAMES = 6
CAMS = ["cam_front_left", "cam_front", "cam_front_right", "cam_back_left", "cam_back", "cam_back_right"]
#: The same for both: extrinsics from /tf_static; stamps up to an hour old (the bag is replayed
#: after the node has started, the live node checks the stamps against its clock).
PARAMS = ["-p", "extrinsics_source:=tf", "-p", "max_age_s:=3600.0"]
TIMEOUT_S = 120.0


class Listener(Node):
    """Keeps the node's voxel grids and calibration offsets by stamp."""

    def __init__(self, context: Context) -> None:
        super().__init__("equivalence_listener", context=context)
        self.voxels: dict[int, Any] = {}
        self.calibration: dict[int, Any] = {}
        self.create_subscription(SemanticVoxelGrid, "/occ_node/voxels",
                                 lambda m: self.voxels.__setitem__(stamp_of(m), m), 50)
        self.create_subscription(CameraCalibrationOffsetArray, "/occ_node/calibration_offsets",
                                 lambda m: self.calibration.__setitem__(stamp_of(m), m), 50)


def read_outputs(bag: Path) -> tuple[dict[int, Any], dict[int, Any]]:
    """Voxel grids and calibration offsets of a ``bag infer`` output, by stamp."""
    out: dict[str, dict[int, Any]] = {"/occ_node/voxels": {}, "/occ_node/calibration_offsets": {}}
    with AnyReader([bag], default_typestore=ros_types.typestore()) as reader:
        conns = [c for c in reader.connections if c.topic in out]
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            out[conn.topic][stamp_of(msg)] = msg
    return out["/occ_node/voxels"], out["/occ_node/calibration_offsets"]


def labels(grid: Any) -> np.ndarray:
    return np.asarray(grid.labels, dtype=np.uint8).reshape(int(grid.size_x), int(grid.size_y), int(grid.size_z))


def offsets(msg: Any) -> list[tuple[Any, ...]]:
    return [(o.frame_id, o.rotation.x, o.rotation.y, o.rotation.z, o.translation.x, o.translation.y,
             o.translation.z, o.rotation_deg, o.translation_m) for o in msg.offsets]


@pytest.mark.slow
def test_node_over_dds_and_bag_infer_agree(tmp_path: Path) -> None:
    bag, out = tmp_path / "drive", tmp_path / "inferred"
    start = int(time.time())
    assert scaocc(["bag", "synth", "--out", str(bag), "--start-time", str(start), "--frames", str(FRAMES),
                   "--rate", "10", "--resolution", "64x176", "--seed", "5"]) == 0
    ckpt = tiny_checkpoint(tmp_path / "micro.pt")
    domain = free_domain_id()
    env = ros_environment(domain)
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain)
    try:
        listener = Listener(ctx)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(listener)
        with ChildProcesses(env, tmp_path / "logs") as children:
            children.start("node", scaocc_command("node", "--params", str(ROOT / "config" / "occ_node.yaml"),
                                                  "--model", str(ckpt), "--ros-args", *PARAMS))
            children.start("play", scaocc_command("bag", "play", str(bag), "--rate", "0.5", "--start-delay", "2",
                                                      "--wait-for",
                                                  "/tf_static", *(f"/{c}/image" for c in CAMS)))
            end = time.monotonic() + TIMEOUT_S
            while children.procs["play"].poll() is None:
                assert time.monotonic() < end, children.log_tail("node")
                children.check_alive()
                ex.spin_once(timeout_sec=0.05)
            assert children.procs["play"].returncode == 0, children.log_tail("play")
            quiet_since, seen = time.monotonic(), len(listener.voxels)
            while time.monotonic() - quiet_since < 5.0:  # the node finishes the sets it has
                ex.spin_once(timeout_sec=0.05)
                if len(listener.voxels) != seen:
                    quiet_since, seen = time.monotonic(), len(listener.voxels)
            node_log = children.log_tail("node", 40)
        listener.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
    offline = subprocess.run(scaocc_command("bag", "infer", str(bag), "--out", str(out), "--checkpoint", str(ckpt),
                                            *PARAMS), env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert offline.returncode == 0, offline.stderr
    voxels, calibration = read_outputs(out)
    assert sorted(voxels) == [start * 10**9 + k * 10**8 for k in range(FRAMES)]  # offline answers every set
    both = sorted(set(voxels) & set(listener.voxels))
    assert len(both) >= 2, (sorted(listener.voxels), sorted(voxels), node_log)
    assert set(listener.voxels) <= set(voxels)
    for stamp in both:
        np.testing.assert_array_equal(labels(listener.voxels[stamp]), labels(voxels[stamp]), err_msg=str(stamp))
        assert offsets(listener.calibration[stamp]) == offsets(calibration[stamp]), stamp
