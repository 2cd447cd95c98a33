"""``scaocc bag``: rosbag2 tools (``ros2 bag`` has no wheel; these use rosbags).

- ``scaocc bag synth --out BAG [--frames N --compressed ...]``: write a synthetic drive
  (what ``scaocc cameras`` publishes) to an MCAP bag, no ROS runtime needed;
- ``scaocc bag play BAG [--rate R] [--loop]``: replay a bag over ROS 2 with its recorded
  timing and ``/clock`` (run the node with ``-p use_sim_time:=true``);
- ``scaocc bag infer BAG --out OUT [--checkpoint CKPT] [--backend torch|onnxruntime]``: the
  node's pipeline offline (sync, decode, predict, outputs) into a new MCAP bag, no ROS runtime.
"""

from __future__ import annotations

import argparse
import importlib

#: sub-subcommand -> (module, help). Imported on use, so ``infer`` and ``synth`` never load rclpy.
TOOLS: dict[str, tuple[str, str]] = {
    "synth": ("scaocc_ros.tools.bag_synth", "write a synthetic drive to an MCAP bag"),
    "play": ("scaocc_ros.tools.bag_play", "replay a bag over ROS 2 (recorded timing, /clock)"),
    "infer": ("scaocc_ros.tools.bag_infer", "run the node's pipeline offline into a new bag"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``scaocc bag``: one subparser per tool, its arguments added on use."""
    parser.add_argument("tool", choices=sorted(TOOLS), help="; ".join(f"{k}: {v[1]}" for k, v in TOOLS.items()))
    parser.add_argument("tool_args", nargs=argparse.REMAINDER, help="arguments of the tool (see TOOL --help)")


def run(args: argparse.Namespace) -> int:
    """Parse the tool's own arguments and run it."""
    module_name, help_text = TOOLS[args.tool]
    module = importlib.import_module(module_name)
    sub = argparse.ArgumentParser(prog=f"scaocc bag {args.tool}", description=module.__doc__ or help_text,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(sub)
    return int(module.run(sub.parse_args(args.tool_args)) or 0)
