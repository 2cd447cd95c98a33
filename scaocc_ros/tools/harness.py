"""A load harness: occ_node in a child process, a camera feeder in this one, over real DDS.

Used by ``bench/delivery.py`` (full-size images: how many reach the node's synchroniser),
``bench/big_message.py`` (a hostile 200 MB image) and
``bench/soak.py`` (good sets mixed with hostile messages). Each :class:`Feeder` publishes
the nuScenes sample rig (six 1600x900 cameras, the real JPEGs, or the same pixels as raw
``bgr8``) to one node namespace, and reads back what the node says on ``/diagnostics``
(per-camera synchroniser and dropped-message counters) and when its ``~/voxels`` arrive.
The node's resident memory is read from ``/proc``.
"""

from __future__ import annotations

import json
import os
import re
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message
from scaocc_msgs.msg import SemanticVoxelGrid
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from scaocc_core.data.rig import NUSCENES_CAMERAS, default_sample_dir
from scaocc_ros import qos
from scaocc_ros.tools import synth_msgs as sm
from scaocc_ros.tools.processes import ROOT, ChildProcesses, join_private_domain, scaocc_command

CAMERAS = [sm.ros_camera_name(n) for n in NUSCENES_CAMERAS]


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process (MiB), ``None`` once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else None


def node_command(namespace: str, transport: str, params: list[str], workdir: Path) -> list[str]:
    """``scaocc node`` under ``/<namespace>`` with ``config/occ_node.yaml`` (re-keyed ``/**`` so that it
    applies in the namespace), extrinsics from the YAML. The model is the scaocc_tiny architecture
    with random weights unless ``SCAOCC_HARNESS_MODEL`` names a checkpoint: the same compute as the
    demo checkpoint, without depending on it loading."""
    doc = yaml.safe_load((ROOT / "config" / "occ_node.yaml").read_text())
    params_file = workdir / f"{namespace}_params.yaml"
    params_file.write_text(yaml.safe_dump({"/**": doc["occ_node"]}))
    model = ["--model", os.environ["SCAOCC_HARNESS_MODEL"]] if os.environ.get("SCAOCC_HARNESS_MODEL") else []
    ros = ["-r", f"__ns:=/{namespace}", "-p", f"image_transport:={transport}", "-p", "extrinsics_source:=params",
           "-p", "device:=cpu", *params]
    return scaocc_command("node", "--params", str(params_file), *model, "--ros-args", *ros)


class SampleRig:
    """The nuScenes sample frame: per camera its JPEG bytes, its raw bgr8 bytes and its K."""

    def __init__(self, sample_dir: Path | None = None) -> None:
        sample_dir = sample_dir or default_sample_dir()
        data = json.loads((sample_dir / "sample.json").read_text())
        self.jpeg: dict[str, bytes] = {}
        self.bgr: dict[str, np.ndarray] = {}
        self.K: dict[str, np.ndarray] = {}
        for cam, name in zip(CAMERAS, NUSCENES_CAMERAS):
            c = data["cameras"][name]
            self.jpeg[cam] = (sample_dir / c["file"]).read_bytes()
            bgr = cv2.imdecode(np.frombuffer(self.jpeg[cam], np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"{sample_dir / c['file']} is not a readable JPEG")
            self.bgr[cam] = bgr
            self.K[cam] = np.asarray(c["intrinsics_K"], dtype=np.float64)
        self.hw = self.bgr[CAMERAS[0]].shape[:2]


def parse_counts(text: str) -> dict[str, int]:
    """``"a=1 b=2"`` or ``"a=1, b=2"`` -> ``{"a": 1, "b": 2}`` (diagnostic values)."""
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", text)}


class Feeder(Node):
    """Publishes camera sets to the node under ``/<namespace>`` and reads its diagnostics and voxels."""

    def __init__(self, namespace: str, rig: SampleRig, compressed: bool, publisher_depth: int = 5) -> None:
        super().__init__(f"feeder_{namespace}")
        self.ns, self.rig, self.compressed = namespace, rig, compressed
        kind = CompressedImage if compressed else Image
        suffix = "image/compressed" if compressed else "image"
        profile = QoSProfile(depth=publisher_depth, reliability=qos.CAMERA_PUBLISHER.reliability)
        self.images = {c: self.create_publisher(kind, f"/{namespace}/{c}/{suffix}", profile) for c in CAMERAS}
        self.infos = {c: self.create_publisher(CameraInfo, f"/{namespace}/{c}/camera_info", profile) for c in CAMERAS}
        self.sent = {c: 0 for c in CAMERAS}
        self.last_sent_ns = {c: 0 for c in CAMERAS}  # the stamp of each camera's last good image
        self.good_stamps: set[int] = set()
        self.answers: dict[int, int] = {}  # voxels stamp -> receive time (ns)
        self.diagnostics: dict[str, dict[str, str]] = {}  # status name suffix -> key -> value
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics,
                                 QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        self.create_subscription(SemanticVoxelGrid, f"/{namespace}/occ_node/voxels", self._on_voxels,
                                 QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self._good = {c: self._good_message(c) for c in CAMERAS}
        # raw images go out pre-serialised, only the stamp patched: rclpy's own conversion of
        # six 4.3 MB messages per set costs more CPU than this machine has to spare
        self._good_cdr = {c: bytearray(serialize_message(self.good_image(c, 0))) for c in CAMERAS}

    def _good_message(self, cam: str) -> Image | CompressedImage:
        if self.compressed:
            return sm.compressed_msg(cam, self.rig.jpeg[cam], 0)
        bgr = self.rig.bgr[cam]
        msg = Image(height=bgr.shape[0], width=bgr.shape[1], encoding="bgr8", step=3 * bgr.shape[1])
        msg.header.frame_id = sm.optical_frame(cam)
        msg.data = bgr.tobytes()
        return msg

    def now_ns(self) -> int:
        """This process's ROS clock (system time), in ns."""
        return self.get_clock().now().nanoseconds

    def ready(self) -> bool:
        """Whether the node subscribes every image and camera_info topic."""
        return all(p.get_subscription_count() > 0 for p in (*self.images.values(), *self.infos.values()))

    def info(self, cam: str, stamp_ns: int) -> CameraInfo:
        """The good CameraInfo of ``cam``."""
        h, w = self.rig.hw
        return sm.camera_info_msg(cam, self.rig.K[cam], h, w, stamp_ns)

    def good_image(self, cam: str, stamp_ns: int) -> Image | CompressedImage:
        """The good image of ``cam`` (one preallocated message, restamped)."""
        msg = self._good[cam]
        msg.header = Header(stamp=sm.stamp_msg(stamp_ns), frame_id=sm.optical_frame(cam))
        return msg

    def publish_set(self, stamp_ns: int, skip: tuple[str, ...] = ()) -> None:
        """CameraInfo then image of every camera not in ``skip``, all stamped ``stamp_ns``."""
        for cam in CAMERAS:
            if cam in skip:
                continue
            self.infos[cam].publish(self.info(cam, stamp_ns))
            if self.compressed:
                self.images[cam].publish(self.good_image(cam, stamp_ns))
            else:  # CDR: 4-byte encapsulation header, then stamp.sec (int32), stamp.nanosec (uint32)
                buf = self._good_cdr[cam]
                struct.pack_into("<iI", buf, 4, stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000)
                self.images[cam].publish(bytes(buf))
            self.sent[cam] += 1
            self.last_sent_ns[cam] = stamp_ns
        self.good_stamps.add(stamp_ns)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.hardware_id == f"/{self.ns}/occ_node":
                suffix = status.name.rsplit(": ", 1)[-1]
                self.diagnostics[suffix] = {kv.key: kv.value for kv in status.values}
                self.diagnostics[suffix]["_message"] = status.message

    def _on_voxels(self, msg: SemanticVoxelGrid) -> None:
        stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        self.answers.setdefault(stamp, self.now_ns())

    def dropped_by_node(self) -> dict[str, dict[str, int]]:
        """Camera -> kind -> messages the node counted as unusable (its last diagnostics)."""
        values = self.diagnostics.get("inputs", {})
        out = {}
        for cam in CAMERAS:
            kinds = parse_counts(values.get(f"{cam}.malformed", ""))
            waiting = parse_counts(values.get(f"{cam}.waiting", ""))
            if waiting.get("extrinsics"):
                kinds["no_extrinsics"] = waiting["extrinsics"]
            out[cam] = kinds
        return out

    def synchroniser_received(self) -> dict[str, int]:
        """Camera -> images that reached the node's synchroniser (its last diagnostics)."""
        values = self.diagnostics.get("sync", {})
        return {cam: parse_counts(values.get(cam, "")).get("received", 0) for cam in CAMERAS}

    def latency_ms(self) -> tuple[float | None, float | None]:
        """p50, p95 of stamp -> voxels received, over the answered good sets."""
        lat = [(t - s) / 1e6 for s, t in self.answers.items() if s in self.good_stamps]
        if not lat:
            return None, None
        return float(np.percentile(lat, 50)), float(np.percentile(lat, 95))


def spin_for(nodes: Sequence[Node], seconds: float, until: Callable[[], bool] = lambda: False) -> bool:
    """Spin ``nodes`` for ``seconds`` or until ``until()``; returns ``until()``."""
    executor = rclpy.executors.SingleThreadedExecutor()
    for n in nodes:
        executor.add_node(n)
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            if until():
                return True
            executor.spin_once(timeout_sec=0.02)
        return until()
    finally:
        for n in nodes:
            executor.remove_node(n)


def start_node(children: ChildProcesses, name: str, namespace: str, transport: str, params: list[str]) -> int:
    """Start occ_node under ``/<namespace>`` as child ``name``; returns its pid."""
    env_before = dict(children.env)
    children.env = {**env_before, "OMP_NUM_THREADS": os.environ.get("SCAOCC_NODE_THREADS", "1")}
    try:
        return children.start(name, node_command(namespace, transport, params, children.log_dir)).pid
    finally:
        children.env = env_before


def summary_of(feeder: Feeder) -> dict[str, Any]:
    """Delivery per camera (good images that reached the synchroniser / sent) and latency."""
    received = feeder.synchroniser_received()
    dropped = feeder.dropped_by_node()
    delivery = {}
    for cam in CAMERAS:
        hostile_in_sync = dropped[cam].get("late", 0) + dropped[cam].get("duplicate", 0)
        sent = feeder.sent[cam]
        delivery[cam] = round((received[cam] - hostile_in_sync) / sent, 4) if sent else None
    p50, p95 = feeder.latency_ms()
    return {"images_sent": dict(feeder.sent), "synchroniser_received": received, "delivery": delivery,
            "good_sets_sent": len(feeder.good_stamps),
            "good_sets_answered": len(feeder.good_stamps & set(feeder.answers)),
            "latency_p50_ms": p50, "latency_p95_ms": p95}


@contextmanager
def node_and_feeder(namespace: str, transport: str, params: list[str], logs: Path, profile: Path | None = None,
                    publisher_depth: int = 5) -> Iterator[tuple[ChildProcesses, int, Feeder]]:
    """occ_node under ``/<namespace>`` in a child process on a private localhost domain (Fast DDS
    ``profile``, else the shipped one) and a :class:`Feeder` for it here, once the node subscribes
    every camera; yields ``(children, node pid, feeder)`` and shuts it all down on exit."""
    domain, env = join_private_domain(profile)
    rclpy.init(domain_id=domain)
    try:
        with ChildProcesses(env, logs) as children:
            pid = start_node(children, "node", namespace, transport, params)
            feeder = Feeder(namespace, SampleRig(), transport == "compressed", publisher_depth)
            try:
                if not spin_for([feeder], 900.0, lambda: feeder.ready() or children.procs["node"].poll() is not None) \
                        or not feeder.ready():
                    raise TimeoutError(f"occ_node did not subscribe:\n{children.log_tail('node')}")
                yield children, pid, feeder
            finally:
                feeder.destroy_node()
    finally:
        rclpy.try_shutdown()


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append ``row`` to the JSON list in ``path`` (a new list if the file is absent)."""
    rows = json.loads(path.read_text()) if path.is_file() else []
    path.write_text(json.dumps([*rows, row], indent=1))

