"""``scaocc bag synth``: a synthetic drive written to a rosbag2 (MCAP) with rosbags, no ROS runtime.

The bag holds exactly what ``scaocc cameras`` publishes (the same message builders): per
camera image (raw or JPEG) and camera_info, ``/tf_static``, ``/tf`` and the ground truth,
stamped ``start + k / rate`` and logged at their stamps, as if recorded from a live car.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path
from typing import Final, Literal

from rosbags.interfaces import Connection
from rosbags.rosbag2 import StoragePlugin, Writer

from scaocc_ros.tools import ros_types
from scaocc_ros.tools import synth_msgs as sm
from scaocc_ros.tools.synth_msgs import add_world_arguments, render_all, spec_from_args

log = logging.getLogger(__name__)
BAG_VERSION: Final[Literal[9]] = 9  # rosbag2 metadata version of Jazzy and Kilted


class BagWriter:
    """A rosbags MCAP writer that opens connections on first use and serialises any message."""

    def __init__(self, path: Path, overwrite: bool = False) -> None:
        path = Path(path)
        if path.exists():
            if not overwrite:
                raise FileExistsError(f"{path} exists (pass --overwrite to replace it)")
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        self.path = path
        self.writer = Writer(path, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        self.connections: dict[str, Connection] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> BagWriter:
        self.writer.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.writer.close()

    def write(self, topic: str, msg: object, log_time_ns: int, msgtype: str | None = None) -> None:
        """Serialise ``msg`` (rclpy or rosbags message; raw CDR bytes need ``msgtype``) and write it."""
        typename = msgtype or ros_types.msgtype_of(msg)
        data = msg if isinstance(msg, (bytes, memoryview)) else ros_types.serialize(msg, typename)
        conn = self.connections.get(topic)
        if conn is None:
            conn = self.writer.add_connection(topic, typename, typestore=ros_types.typestore())
            self.connections[topic] = conn
        elif conn.msgtype != typename:
            raise ValueError(f"topic {topic} already has type {conn.msgtype}, got {typename}")
        self.writer.write(conn, int(log_time_ns), bytes(data))
        self.counts[topic] = self.counts.get(topic, 0) + 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``scaocc bag synth``."""
    parser.add_argument("--out", type=Path, required=True, help="bag directory to create")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--start-time", type=float, default=None,
                        help="stamp of the first frame, seconds since the epoch (default: now)")
    add_world_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Render the drive and write the bag; prints the path and message counts."""
    spec = spec_from_args(args)
    frames = render_all(spec, args.compressed)
    start_ns = int((time.time() if args.start_time is None else args.start_time) * 1e9)
    period_ns = int(round(1e9 / args.rate))
    first = frames[0][0]
    cameras = [sm.ros_camera_name(n) for n in first.camera_names]
    with BagWriter(args.out, args.overwrite) as bag:
        bag.write("/tf_static", sm.tf_static_msg(cameras, first.ego_T_cam, start_ns), start_ns)
        for k, (frame, jpegs) in enumerate(frames):
            stamp = start_ns + k * period_ns
            for topic, msg in sm.frame_messages(frame, stamp, spec.grid, args.compressed, jpegs).all():
                bag.write(topic, msg, stamp)
    print(f"wrote {args.out}: {len(frames)} frames of {len(cameras)} cameras "
          f"({'JPEG' if args.compressed else 'rgb8'}), {sum(bag.counts.values())} messages on "
          f"{len(bag.counts)} topics")
    return 0
