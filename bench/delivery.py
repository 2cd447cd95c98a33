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

from scaocc_ros.tools.harness import append_row, node_and_feeder, rss_mb, spin_for, summary_of


def run(args: argparse.Namespace) -> dict[str, object]:
    """One delivery measurement; returns its row."""
    params = ["-p", f"image_reliability:={args.reliability}", "-p", f"image_qos_depth:={args.depth}"]
    with node_and_feeder("bench", args.transport, params, Path(args.logs), Path(args.profile) if args.profile else None,
                         args.publisher_depth) as (children, pid, feeder):
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
        return {"transport": args.transport, "rate_hz": args.rate, "achieved_rate_hz": round(tick / elapsed, 2),
                "reliability": args.reliability, "depth": args.depth, "publisher_depth": args.publisher_depth,
                "profile": os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"), "seconds": args.seconds,
                "node_rss_mb": rss_mb(pid), **summary_of(feeder)}


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
        append_row(args.json, row)
    sys.exit(0 if worst >= 0.99 else 1)


if __name__ == "__main__":
    main()
