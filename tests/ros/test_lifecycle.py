"""occ_node as a managed node: no-argument start, transitions, parameter descriptors and runtime changes.

A lifecycle manager is played by a client of the node's ``~/change_state`` and ``~/get_state``
services; parameters are set through the node's own API (the same callbacks ``ros2 param set``
reaches). The installed console script is started once with no arguments at all.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import ParameterType
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy

from scaocc_ros.node import OccNode
from scaocc_ros.params import NUSCENES_CAMERAS
from scaocc_ros.tools.processes import ChildProcesses, free_domain_id, ros_environment

ROOT = Path(__file__).resolve().parents[2]
PARAMS = ROOT / "config" / "occ_node.yaml"


@pytest.fixture
def nodes(ros_context: Context) -> Iterator[Callable[..., OccNode]]:
    """Build occ_node instances (destroyed after the test)."""
    made: list[Node] = []

    def build(*cli: str, **overrides: Any) -> OccNode:
        occ = OccNode(context=ros_context, cli_args=["--ros-args", *cli],
                      parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        made.append(occ)
        return occ

    yield build
    for n in made:
        n.destroy_node()


def topics_subscribed(occ: OccNode) -> set[str]:
    return {name for name, _ in occ.get_subscriber_names_and_types_by_node(occ.get_name(), occ.get_namespace())}


def test_no_arguments_configures_activates_and_waits(nodes: Callable[..., OccNode]) -> None:
    """The installed node's defaults: autostart, extrinsics from /tf_static, device auto, the nuScenes rig."""
    occ = nodes()  # no parameters file, no overrides
    assert occ.autostart
    assert occ.trigger_configure() == TransitionCallbackReturn.SUCCESS, occ.configure_error
    assert occ.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert occ.params is not None and occ.params.extrinsics_source == "tf" and occ.params.device in ("cpu", "cuda")
    time.sleep(0.2)  # the graph cache sees the node's own subscriptions
    subscribed = topics_subscribed(occ)
    assert {f"/{c}/image" for c in NUSCENES_CAMERAS} | {f"/{c}/camera_info" for c in NUSCENES_CAMERAS} <= subscribed
    assert {"/tf_static", "/tf"} <= subscribed
    occ.publish_diagnostics()  # waiting, not failing: no images yet
    assert occ.pipeline is not None and occ.pipeline.sync.sets_emitted == 0


class Manager(Node):
    """What a lifecycle manager does: ChangeState and GetState on the managed node."""

    def __init__(self, context: Context, target: str) -> None:
        super().__init__("test_lifecycle_manager", context=context)
        self.change = self.create_client(ChangeState, f"{target}/change_state")
        self.get = self.create_client(GetState, f"{target}/get_state")

    def call(self, ex: SingleThreadedExecutor, client: Any, request: Any) -> Any:
        end = time.monotonic() + 20.0
        while not client.service_is_ready():
            assert time.monotonic() < end, "service not available"
            ex.spin_once(timeout_sec=0.05)
        future = client.call_async(request)
        ex.spin_until_future_complete(future, timeout_sec=60.0)
        assert future.done()
        return future.result()

    def transition(self, ex: SingleThreadedExecutor, transition_id: int) -> bool:
        return bool(self.call(ex, self.change, ChangeState.Request(transition=Transition(id=transition_id))).success)

    def state(self, ex: SingleThreadedExecutor) -> str:
        return str(self.call(ex, self.get, GetState.Request()).current_state.label)


def test_transitions_from_a_manager(nodes: Callable[..., OccNode], ros_context: Context) -> None:
    occ = nodes("--params-file", str(PARAMS), "-p", "autostart:=false")
    manager = Manager(ros_context, "/occ_node")
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(occ)
    ex.add_node(manager)
    try:
        assert manager.state(ex) == "unconfigured" and occ.pipeline is None and not topics_subscribed(occ) - {
            "/parameter_events"}
        assert manager.transition(ex, Transition.TRANSITION_CONFIGURE)  # loads and warms up the model
        assert manager.state(ex) == "inactive" and occ.pipeline is not None and occ.worker is not None
        assert set(occ.pubs) == {"voxels", "points", "obstacles", "markers", "bev", "calibration_offsets"}
        assert not any(p.is_activated for p in occ.pubs.values())
        assert "/cam_front/image" not in topics_subscribed(occ)
        assert occ.pubs["bev"].qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL  # Nav2's static layer
        assert manager.transition(ex, Transition.TRANSITION_ACTIVATE)
        assert manager.state(ex) == "active" and all(p.is_activated for p in occ.pubs.values())
        time.sleep(0.2)
        assert "/cam_front/image" in topics_subscribed(occ)
        assert manager.transition(ex, Transition.TRANSITION_DEACTIVATE)
        time.sleep(0.2)
        assert manager.state(ex) == "inactive" and "/cam_front/image" not in topics_subscribed(occ)
        assert not any(p.is_activated for p in occ.pubs.values())
        assert manager.transition(ex, Transition.TRANSITION_CLEANUP)  # releases the model
        assert manager.state(ex) == "unconfigured" and occ.pipeline is None and occ.worker is None and not occ.pubs
        assert manager.transition(ex, Transition.TRANSITION_CONFIGURE)  # and configures again
        assert manager.state(ex) == "inactive"
    finally:
        manager.destroy_node()


def test_a_rig_that_does_not_fit_the_model_fails_at_configure(nodes: Callable[..., OccNode]) -> None:
    occ = nodes("-p", "autostart:=false", camera_names=["left", "right", "rear"])
    assert occ.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert occ.configure_error == ("the model expects 6 cameras, camera_names has 3: ['left', 'right', 'rear']")
    assert occ.pipeline is None


def test_descriptors_carry_ranges_and_read_only_flags(nodes: Callable[..., OccNode]) -> None:
    occ = nodes("--params-file", str(PARAMS))
    slop, model, cams, queue = occ.describe_parameters(["sync_slop_s", "model_path", "camera_names",
                                                         "sync_queue_size"])
    assert not slop.read_only and slop.floating_point_range[0].from_value == pytest.approx(0.001)
    assert slop.floating_point_range[0].to_value == pytest.approx(1.0) and "runtime" in slop.additional_constraints
    assert model.read_only and cams.read_only and "read-only" in model.additional_constraints
    assert queue.type == ParameterType.PARAMETER_INTEGER and queue.integer_range[0].to_value == 100
    (ext,) = occ.describe_parameters(["extrinsics.cam_front.translation"])
    assert ext.read_only


def test_runtime_parameters_apply_or_are_refused_with_a_reason(nodes: Callable[..., OccNode]) -> None:
    occ = nodes("--params-file", str(PARAMS))
    assert occ.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert occ.pipeline is not None

    def set_one(name: str, value: Any) -> tuple[bool, str]:
        (result,) = occ.set_parameters([Parameter(name, value=value)])
        return result.successful, result.reason

    assert set_one("sync_slop_s", 0.08) == (True, "")
    assert occ.pipeline.sync.slop_ns == 80_000_000 and occ.params is not None and occ.params.sync_slop_s == 0.08
    assert set_one("camera_timeout_s", 2.5)[0] and occ.pipeline.sync.timeout_ns == 2_500_000_000
    assert set_one("publish_markers", False)[0] and not occ.pipeline.params.publish_markers
    assert set_one("ground_classes", ["driveable_surface", "terrain"])[0]
    assert occ.pipeline.params.ground_classes == ("driveable_surface", "terrain")
    refusals = {
        "model_path": ("/other.pt", "read-only"),
        "camera_names": (["a"], "read-only"),
        "sync_slop_s": (5.0, "range"),
        "min_cameras": (7, "min_cameras must be in 1..6"),
        "ground_classes": (["road"], "ground_classes: ['road'] are not classes of the model"),
        "drivable_classes": (["terrain", "terrain"], "repeated classes"),
    }
    for name, (value, reason) in refusals.items():
        ok, why = set_one(name, value)
        assert not ok and reason in why, (name, why)
    assert occ.params.sync_slop_s == 0.08 and occ.get_parameter("sync_slop_s").value == 0.08  # unchanged


def test_diagnostics_are_named_after_the_node(nodes: Callable[..., OccNode], ros_context: Context) -> None:
    occ = OccNode("front_occ", context=ros_context, namespace="/vehicle1",
                  cli_args=["--ros-args", "--params-file", str(PARAMS)])
    try:
        assert occ.trigger_configure() == TransitionCallbackReturn.SUCCESS
        received: list[Any] = []
        occ.pub_diag.publish = received.append  # type: ignore[union-attr]
        occ.publish_diagnostics()
        names = [s.name for s in received[0].status]
        assert names == [f"vehicle1/front_occ: {k}" for k in ("inputs", "sync", "inference", "calibration",
                                                               "motion")]
    finally:
        occ.destroy_node()


@pytest.mark.slow
def test_installed_console_script_with_no_arguments_starts_and_waits(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "occ_node"
    assert script.is_file(), "pip install -e . (make setup) installs the occ_node console script"
    with ChildProcesses(ros_environment(free_domain_id()), tmp_path) as children:
        children.start("node", [str(script)])
        end = time.monotonic() + 300.0  # importing torch alone took 80 s on this shared 2-core machine
        while "active: waiting for" not in children.log_tail("node", 50):
            assert time.monotonic() < end, children.log_tail("node")
            children.check_alive()
            assert children.procs["node"].poll() is None, children.log_tail("node")
            time.sleep(0.5)
        time.sleep(2.0)  # still running: waiting for cameras
        assert children.procs["node"].poll() is None, children.log_tail("node")
        assert children.stop("node", timeout=60.0) == 0, children.log_tail("node")  # SIGINT: a clean exit
    log = (tmp_path / "node.log").read_text()
    assert "extrinsics from tf" in log and "random weights" in log
