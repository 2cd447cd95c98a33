"""Full-size images between processes: how many reach occ_node's synchroniser, per camera.

Starts occ_node (a child process, private localhost domain, the shipped Fast DDS profile
unless ``--profile``) and publishes the nuScenes sample rig from this process: six 1600x900
cameras as JPEG ``CompressedImage`` or raw ``bgr8`` ``Image``, CameraInfo with each image,
at ``--rate`` for ``--seconds``. The node runs inference as usual. Delivery per camera =
images counted by the node's synchroniser (its ``/diagnostics``) / images sent.

    python bench/delivery.py --transport compressed --rate 12 --seconds 30 --json out.json
    python bench/delivery.py --transport raw --rate 10 --reliability best_effort
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import rclpy

from scaocc_ros.tools.harness import Feeder, SampleRig, rss_mb, spin_for, start_node, summary_of
from scaocc_ros.tools.processes import DOMAIN_VARIABLES, ChildProcesses, free_domain_id, ros_environment


def run(args: argparse.Namespace) -> dict[str, object]:
    """One delivery measurement; returns its row."""
    domain = free_domain_id()
    env = ros_environment(domain, profile=Path(args.profile) if args.profile else None)
    for key in (*DOMAIN_VARIABLES, "FASTDDS_BUILTIN_TRANSPORTS", "RMW_FASTRTPS_USE_QOS_FROM_XML"):
        if key in env:
            os.environ[key] = env[key]
    rclpy.init(domain_id=domain)
    compressed = args.transport == "compressed"
    try:
        with ChildProcesses(env, Path(args.logs)) as children:
            params = ["-p", f"image_reliability:={args.reliability}", "-p", f"image_qos_depth:={args.depth}"]
            pid = start_node(children, "node", "bench", args.transport, params)
            feeder = Feeder("bench", SampleRig(), compressed, args.publisher_depth)
            if not spin_for([feeder], 900.0, lambda: feeder.ready() or children.procs["node"].poll() is not None) \
                    or not feeder.ready():
                raise TimeoutError(f"occ_node did not subscribe:\n{children.log_tail('node')}")
            spin_for([feeder], 2.0)
            start = time.monotonic()
            tick = 0
            while time.monotonic() - start < args.seconds:
                children.check_alive()
                feeder.publish_set(feeder.now_ns())
                tick += 1
                spin_for([feeder], max(0.0, start + tick / args.rate - time.monotonic()))
            elapsed = time.monotonic() - start
            spin_for([feeder], 4.0)  # the last diagnostics after the last image
            row = {"transport": args.transport, "rate_hz": args.rate, "achieved_rate_hz": round(tick / elapsed, 2),
                   "reliability": args.reliability, "depth": args.depth,
                   "publisher_depth": args.publisher_depth,
                   "profile": env.get("FASTDDS_DEFAULT_PROFILES_FILE"), "seconds": args.seconds,
                   "node_rss_mb": rss_mb(pid), **summary_of(feeder)}
            feeder.destroy_node()
            return row
    finally:
        rclpy.try_shutdown()


def main() -> None:
    """``python bench/delivery.py``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transport", choices=("raw", "compressed"), default="compressed")
    parser.add_argument("--rate", type=float, default=12.0, help="camera sets per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--reliability", choices=("reliable", "best_effort"), default="reliable")
    parser.add_argument("--depth", type=int, default=5, help="image_qos_depth of the node")
    parser.add_argument("--publisher-depth", type=int, default=5, help="history depth of the camera publishers")
    parser.add_argument("--profile", help="Fast DDS XML profile instead of config/fastdds_localhost.xml")
    parser.add_argument("--logs", default="/tmp/scaocc_delivery_logs")
    parser.add_argument("--json", type=Path, help="append the row to this JSON list")
    args = parser.parse_args()
    row = run(args)
    delivery = row["delivery"]
    assert isinstance(delivery, dict)
    worst = min(v for v in delivery.values() if v is not None)
    print(json.dumps(row, indent=1))
    print(f"{args.transport} {args.rate} Hz {args.reliability} depth {args.depth}: worst camera {100 * worst:.2f} %")
    if args.json:
        rows = json.loads(args.json.read_text()) if args.json.is_file() else []
        args.json.write_text(json.dumps([*rows, row], indent=1))
    sys.exit(0 if worst >= 0.99 else 1)


if __name__ == "__main__":
    main()
