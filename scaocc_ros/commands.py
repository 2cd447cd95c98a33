"""The ``scaocc`` subcommands this package adds, registered through the ``scaocc.commands``
entry point (see ``setup.py``), so the core CLI names no ROS module.

Only names live here; each module is imported when its subcommand runs.
"""

from __future__ import annotations

#: subcommand -> (module with ``add_arguments(parser)`` and ``run(args)``, one-line help).
COMMANDS: dict[str, tuple[str, str]] = {
    "node": ("scaocc_ros.node", "run the ROS 2 occupancy node (same as occ_node)"),
    "cameras": ("scaocc_ros.tools.cameras", "publish the synthetic world as a six-camera car over ROS 2"),
    "bag": ("scaocc_ros.tools.bag", "rosbag2 tools: synth, play, infer"),
}
