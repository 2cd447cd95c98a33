"""Launch occ_node on a vehicle: ``ros2 launch scaocc_ros occ.launch.py model_path:=/models/scaocc.pt``.

Needs a full ROS 2 install (launch / launch_ros have no PyPI wheel); where they are missing,
the equivalent is ``scaocc node --params config/occ_node.yaml --model PATH --ros-args -r ...``.
Camera topics are relative in the node (``<cam>/image``, ``<cam>/camera_info``). The cameras
are the ``camera_names`` of ``params_file`` (any number, any names); each is remapped to
``<camera_ns>/<cam>/<image_topic>`` (and ``/compressed``) and ``<camera_ns>/<cam>/camera_info``.

The node is a managed (lifecycle) node, started with ``autostart: false``: with
``autostart:=true`` (the default) this file emits its configure transition, then activate
once it is inactive; with ``autostart:=false`` it stays unconfigured for a lifecycle manager
(``nav2_lifecycle_manager``, ``ros2 lifecycle set /occ_node configure``).
"""

import os
from pathlib import Path

import yaml
from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch.launch_context import LaunchContext
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

from launch import LaunchDescription

NODE_NAME = "occ_node"
TRUE_WORDS = ("true", "1", "yes", "on")  # compared lower-cased: True, TRUE, true all count


def is_true(text: str) -> bool:
    """A launch argument as a boolean, case-insensitively (``True``, ``true``, ``1``...)."""
    return text.strip().lower() in TRUE_WORDS


def camera_names(params_file: str) -> list[str]:
    """The ``camera_names`` the node reads from ``params_file`` (its own section, else ``/**``);
    the node's declared default when the file names none."""
    doc = yaml.safe_load(Path(params_file).read_text()) or {}
    for key in (NODE_NAME, f"/{NODE_NAME}", "/**"):
        names = ((doc.get(key) or {}).get("ros__parameters") or {}).get("camera_names")
        if names:
            return [str(n) for n in names]
    from scaocc_ros.params import NodeParams

    return list(NodeParams().camera_names)


def remappings(cameras: list[str], camera_ns: str, image_topic: str) -> list[tuple[str, str]]:
    """The node's relative camera topics -> the drivers' topics under ``camera_ns``."""
    ns = "/" + camera_ns.strip("/") if camera_ns.strip("/") else ""
    out = []
    for cam in cameras:
        out.append((f"{cam}/image", f"{ns}/{cam}/{image_topic}"))
        out.append((f"{cam}/image/compressed", f"{ns}/{cam}/{image_topic}/compressed"))
        out.append((f"{cam}/camera_info", f"{ns}/{cam}/camera_info"))
    return out


def transitions(node: LifecycleNode) -> list[object]:
    """Configure ``node`` now and activate it when it reaches inactive (what autostart emits)."""

    def change(transition_id: int) -> EmitEvent:
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition_id))

    return [RegisterEventHandler(OnStateTransition(target_lifecycle_node=node, goal_state="inactive",
                                                   entities=[change(Transition.TRANSITION_ACTIVATE)])),
            change(Transition.TRANSITION_CONFIGURE)]


def launch_node(context: LaunchContext) -> list[object]:
    """The node, and its transitions when autostarted, with everything resolved from the launch
    arguments (run by ``OpaqueFunction``)."""

    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    params_file = arg("params_file")
    cameras = camera_names(params_file)
    node = LifecycleNode(
        package="scaocc_ros",
        executable="occ_node",
        name=NODE_NAME,
        namespace="",
        output="screen",
        emulate_tty=True,
        parameters=[
            params_file,
            {
                "model_path": arg("model_path"),
                "device": arg("device"),
                "backend": arg("backend"),
                "image_transport": arg("image_transport"),
                "extrinsics_source": arg("extrinsics_source"),
                "use_sim_time": is_true(arg("use_sim_time")),
                "autostart": False,  # the transitions come from here or from a lifecycle manager
            },
        ],
        remappings=remappings(cameras, arg("camera_ns"), arg("image_topic")),
    )
    return [node, *(transitions(node) if is_true(arg("autostart")) else [])]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("scaocc_ros")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "occ_node.yaml"),
                              description="occ_node parameters (ros__parameters YAML); its camera_names "
                                          "decide the remapped cameras"),
        DeclareLaunchArgument("model_path", default_value="", description="checkpoint or exported model"),
        DeclareLaunchArgument("device", default_value="auto",
                              description="auto (cuda when available, else cpu), cpu or cuda"),
        DeclareLaunchArgument("backend", default_value="torch", description="torch, onnxruntime or tensorrt"),
        DeclareLaunchArgument("image_transport", default_value="compressed", description="raw or compressed"),
        DeclareLaunchArgument("extrinsics_source", default_value="tf", description="params or tf"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="configure and activate the managed node (false: leave that to a "
                                          "lifecycle manager)"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (bag replay); true/True/1 (any case)"),
        DeclareLaunchArgument("camera_ns", default_value="/sensors/cameras",
                              description="namespace of the camera drivers' topics"),
        DeclareLaunchArgument("image_topic", default_value="image",
                              description="the drivers' image topic under <camera_ns>/<cam>: image, image_raw, "
                                          "image_rect, image_rect_color... (rectification: auto follows it)"),
        OpaqueFunction(function=launch_node),
    ])
