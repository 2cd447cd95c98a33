"""``scaocc bag play``: replay a rosbag2 over ROS 2, the way ``ros2 bag play --clock`` does.

Messages are read with rosbags and published as the recorded CDR bytes (rclpy publishes
serialized data as is, like rosbag2 does: no decode/re-encode of images); the rclpy class
of every topic is imported from its type name, and the first message of each topic is
decoded once with ``rclpy.serialization.deserialize_message`` to prove bag and installed type
agree. Timing follows the recorded log times scaled by ``--rate``; ``/clock`` carries the
recorded time, so a node run with ``-p use_sim_time:=true`` sees the recorded stamps as
current. QoS: ``/tf_static`` transient local; everything else reliable (which best-effort
subscribers, such as the node's camera subscriptions, accept too).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.serialization import deserialize_message
from rclpy.time import Time
from rosbags.highlevel import AnyReader, AnyReaderError
from rosgraph_msgs.msg import Clock

from scaocc_ros import qos
from scaocc_ros.tools import ros_types


class BagPlayError(RuntimeError):
    """The bag cannot be replayed (unknown message type, bad arguments)."""


def message_class(msgtype: str) -> type:
    """The rclpy message class of ``pkg/msg/Name``."""
    try:
        package, kind, name = msgtype.split("/")
        return getattr(importlib.import_module(f"{package}.{kind}"), name)  # type: ignore[no-any-return]
    except (ValueError, ImportError, AttributeError) as exc:
        raise BagPlayError(f"message type {msgtype} is not installed here ({exc}); build its package "
                           "into install/ and source install/local_setup.sh") from exc


class BagPlayer(Node):
    """Publishers for every topic of a bag, plus ``/clock``."""

    def __init__(self, connections: list[Any]) -> None:
        super().__init__("bag_player")
        self.pubs: dict[str, Any] = {}
        self.checked: set[str] = set()
        self.classes: dict[str, type] = {}
        for conn in connections:
            if conn.topic in self.pubs:
                continue
            cls = message_class(conn.msgtype)
            self.classes[conn.topic] = cls
            profile = qos.TF_STATIC_PUBLISHER if conn.topic == "/tf_static" else QoSProfile(depth=10)
            self.pubs[conn.topic] = self.create_publisher(cls, conn.topic, profile)
        self.clock = self.create_publisher(Clock, "/clock", 10)

    def publish(self, topic: str, data: bytes, log_time_ns: int) -> None:
        """Publish ``/clock`` = ``log_time_ns``, then the raw message."""
        if topic not in self.checked:
            deserialize_message(data, self.classes[topic])  # raises on a type mismatch
            self.checked.add(topic)
        self.clock.publish(Clock(clock=Time(nanoseconds=log_time_ns).to_msg()))
        self.pubs[topic].publish(data)


def play(bag: Path, rate: float, loop: bool, topics: list[str] | None, start_delay: float,
         wait_for: list[str] | None = None, wait_timeout: float = 60.0) -> int:
    """Replay ``bag``; returns the number of messages published.

    Playback starts once every topic of ``wait_for`` has a subscriber (at most ``wait_timeout``
    seconds, then :class:`BagPlayError`), and ``start_delay`` seconds after that: discovery is
    asymmetric, the subscriber may not yet have matched this publisher when it is seen here.
    """
    if not rate > 0:
        raise BagPlayError(f"--rate must be positive, got {rate}")
    published = 0
    with AnyReader([bag], default_typestore=ros_types.typestore()) as reader:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        if not conns:
            raise BagPlayError(f"{bag}: nothing to play (topics {sorted({c.topic for c in reader.connections})})")
        node = BagPlayer(conns)
        try:
            unknown = sorted(set(wait_for or []) - set(node.pubs) - {"/clock"})
            if unknown:
                raise BagPlayError(f"--wait-for topics {unknown} are not played")
            pubs = [node.clock if t == "/clock" else node.pubs[t] for t in wait_for or []]
            give_up = time.monotonic() + wait_timeout
            while any(p.get_subscription_count() == 0 for p in pubs):
                if time.monotonic() > give_up:
                    raise BagPlayError(f"no subscriber on {[p.topic_name for p in pubs]} after {wait_timeout} s")
                rclpy.spin_once(node, timeout_sec=0.05)
            end = time.monotonic() + start_delay
            while time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.05)
            while True:
                wall0, bag0 = time.monotonic(), None
                for conn, log_time, raw in reader.messages(connections=conns):
                    bag0 = log_time if bag0 is None else bag0
                    delay = wall0 + (log_time - bag0) / 1e9 / rate - time.monotonic()
                    if delay > 0:
                        rclpy.spin_once(node, timeout_sec=delay)
                    node.publish(conn.topic, bytes(raw), log_time)
                    published += 1
                if not loop or not rclpy.ok():
                    break
            end = time.monotonic() + 0.5  # let the last reliable messages go out
            while time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.05)
        finally:
            node.destroy_node()
    return published


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``scaocc bag play``."""
    parser.add_argument("bag", type=Path, help="bag directory or .mcap file")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    parser.add_argument("--loop", action="store_true", help="play again from the start until Ctrl-C")
    parser.add_argument("--topics", nargs="+", help="only these topics")
    parser.add_argument("--start-delay", type=float, default=1.0,
                        help="seconds to wait, once the --wait-for topics have subscribers, for them to "
                             "match the player")
    parser.add_argument("--wait-for", nargs="+", metavar="TOPIC",
                        help="also wait (up to 60 s) until these topics have a subscriber")
    parser.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=[],
                        help="ROS arguments (remappings...)")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``scaocc bag play``."""
    rclpy.init(args=["bag_player", "--ros-args", *args.ros_args])
    try:
        n = play(args.bag, args.rate, args.loop, args.topics, args.start_delay, args.wait_for)
        print(f"played {n} messages from {args.bag}")
    except (BagPlayError, FileNotFoundError) as exc:
        print(f"scaocc bag play: {exc}", file=sys.stderr)
        return 1
    except AnyReaderError as exc:
        print(f"scaocc bag play: cannot read {args.bag} (truncated or corrupt?): {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        rclpy.try_shutdown()
    return 0
