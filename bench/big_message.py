"""A hostile 200 MB image against occ_node: is it counted, and does the node keep the memory?

Starts occ_node (raw ``bgr8`` transport, a child process, private localhost domain, the
shipped Fast DDS profile unless ``--profile``), feeds it good camera sets from the nuScenes
sample rig at ``--rate`` and, after ``--warm-s``, publishes ``--count`` raw images of about
``--mb`` MB each on one camera (reliable, as the camera tools publish), ``--gap-s`` apart.
Good sets go on for ``--after-s``. The node's resident memory is sampled twice a second.

    python bench/big_message.py --mb 200 --count 3 --json bench/results/big_message.json

The result: ``oversize_counted`` (of ``count`` sent), RSS before, peak and after (MiB), and
the good sets answered after the big messages (the node still works).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image

from scaocc_ros.tools import synth_msgs as sm
from scaocc_ros.tools.harness import CAMERAS, append_row, node_and_feeder, rss_mb, spin_for


def big_image(cam: str, mb: float, stamp_ns: int) -> bytes:
    """A serialised bgr8 ``Image`` of about ``mb`` MB (square, zeros), stamped ``stamp_ns``."""
    side = int((mb * 1e6 / 3) ** 0.5)
    msg = Image(height=side, width=side, encoding="bgr8", step=3 * side)
    msg.header.frame_id = sm.optical_frame(cam)
    msg.header.stamp = sm.stamp_msg(stamp_ns)
    msg.data = np.zeros(3 * side * side, np.uint8).tobytes()
    return serialize_message(msg)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The measurement; returns its row."""
    with node_and_feeder("big", "raw", [], Path(args.logs), Path(args.profile) if args.profile else None) \
            as (children, pid, feeder):
        rss: list[tuple[float, float]] = []
        start = time.monotonic()

        def feed(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                children.check_alive()
                feeder.publish_set(feeder.now_ns())
                rss.append((time.monotonic() - start, rss_mb(pid) or float("nan")))
                spin_for([feeder], 1.0 / args.rate)

        feed(args.warm_s)
        before = rss[-1][1]
        answered_before = len(feeder.answers)
        cam = CAMERAS[1]
        sent_at = []
        for _ in range(args.count):
            sent_at.append(round(time.monotonic() - start, 1))
            feeder.images[cam].publish(big_image(cam, args.mb, feeder.now_ns()))
            feed(args.gap_s)
        feed(args.after_s)
        spin_for([feeder], 4.0)  # the last diagnostics
        return {"mb": args.mb, "count": args.count, "sent_at_s": sent_at,
                "oversize_counted": feeder.dropped_by_node()[cam].get("oversize", 0),
                "profile": os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"),
                "rss_mb_before": round(before, 1), "rss_mb_peak": round(max(m for _, m in rss), 1),
                "rss_mb_after": round(rss[-1][1], 1), "sets_answered_after": len(feeder.answers) - answered_before,
                "node_alive": children.procs["node"].poll() is None,
                "rss_mb_every_s": [[round(t, 1), round(m, 1)] for t, m in rss[:: max(1, int(args.rate))]]}


def main() -> None:
    """``python bench/big_message.py``: prints the row; exit 0 when every big message was counted."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=200.0, help="size of each big image (MB)")
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--rate", type=float, default=2.0, help="good camera sets per second")
    parser.add_argument("--warm-s", type=float, default=30.0)
    parser.add_argument("--gap-s", type=float, default=10.0, help="good sets between big messages (s)")
    parser.add_argument("--after-s", type=float, default=30.0)
    parser.add_argument("--profile", help="Fast DDS XML profile instead of config/fastdds_localhost.xml")
    parser.add_argument("--logs", default="/tmp/scaocc_big_message_logs")
    parser.add_argument("--json", type=Path, help="append the row to this JSON list")
    args = parser.parse_args()
    row = run(args)
    print(json.dumps({k: v for k, v in row.items() if k != "rss_mb_every_s"}, indent=1))
    if args.json:
        append_row(args.json, row)
    sys.exit(0 if row["oversize_counted"] == args.count and row["node_alive"] else 1)


if __name__ == "__main__":
    main()
