"""Launch occ_node on a vehicle: ``ros2 launch scaocc_ros occ.launch.py model_path:=/models/scaocc.pt``.

Needs a full ROS 2 install (launch / launch_ros have no PyPI wheel); where they are missing,
the equivalent is ``scaocc node --params config/occ_node.yaml --model PATH --ros-args -r ...``.
Camera topics are relative in the node (``<cam>/image``, ``<cam>/camera_info``) and remapped
here to the vehicle's drivers under ``camera_ns``.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node

from launch import LaunchDescription

CAMERAS = ("cam_front_left", "cam_front", "cam_front_right", "cam_back_left", "cam_back", "cam_back_right")


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("scaocc_ros")
    camera_ns = LaunchConfiguration("camera_ns")
    remappings = []
    for cam in CAMERAS:
        for topic in ("image", "image/compressed", "camera_info"):
            remappings.append((f"{cam}/{topic}", [camera_ns, f"/{cam}/{topic}"]))
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "occ_node.yaml"),
                              description="occ_node parameters (ros__parameters YAML)"),
        DeclareLaunchArgument("model_path", default_value="", description="checkpoint or exported model"),
        DeclareLaunchArgument("device", default_value="cuda", description="cpu or cuda"),
        DeclareLaunchArgument("backend", default_value="torch", description="torch, onnxruntime or tensorrt"),
        DeclareLaunchArgument("image_transport", default_value="compressed", description="raw or compressed"),
        DeclareLaunchArgument("extrinsics_source", default_value="tf", description="params or tf"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay)"),
        DeclareLaunchArgument("camera_ns", default_value="/sensors/cameras",
                              description="namespace of the camera drivers' topics"),
        Node(
            package="scaocc_ros",
            executable="occ_node",
            name="occ_node",
            output="screen",
            emulate_tty=True,
            parameters=[
                LaunchConfiguration("params_file"),
                {
                    "model_path": LaunchConfiguration("model_path"),
                    "device": LaunchConfiguration("device"),
                    "backend": LaunchConfiguration("backend"),
                    "image_transport": LaunchConfiguration("image_transport"),
                    "extrinsics_source": LaunchConfiguration("extrinsics_source"),
                    "use_sim_time": PythonExpression(["'", LaunchConfiguration("use_sim_time"), "' == 'true'"]),
                },
            ],
            remappings=remappings,
        ),
    ])
