"""The demo's recorder (a raw-bytes subscriber writing MCAP) and its offline analysis.

:class:`Recorder` subscribes the node's outputs, ``/diagnostics``, the synthetic ground truth,
TF and CameraInfo with ``raw=True`` and writes the received CDR bytes unchanged into a bag
(log time = receive time). Camera images are kept in memory only (for the PNGs).
:func:`analyse` then reads that bag back with rosbags: latency (receive time - input
stamp), output rate, mIoU against the ground truth on the model grid, and the pictures.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rosbags.highlevel import AnyReader
from scaocc_msgs.msg import CameraCalibrationOffsetArray, SemanticVoxelGrid
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from scaocc_core.config import GridConfig
from scaocc_core.data.labels import OccLabels, downsample_labels, grid_factor
from scaocc_core.grid import IGNORE
from scaocc_core.metrics import OccMetric
from scaocc_core.viz import bev_png, camera_overlay_png, render_voxels_to_cameras
from scaocc_ros import convert, qos
from scaocc_ros.calibration import StaticTransformTree, pose_to_matrix
from scaocc_ros.tools import ros_types
from scaocc_ros.tools import synth_msgs as sm
from scaocc_ros.tools.bag_synth import BagWriter

NODE = "/occ_node"
OUTPUTS: dict[str, type] = {f"{NODE}/voxels": SemanticVoxelGrid, f"{NODE}/points": PointCloud2,
                            f"{NODE}/markers": MarkerArray, f"{NODE}/bev": OccupancyGrid,
                            f"{NODE}/calibration_offsets": CameraCalibrationOffsetArray}


def _type_name(cls: type) -> str:
    return f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}"


class Recorder(Node):
    """Writes what it receives to ``writer``; keeps the newest camera images in memory."""

    def __init__(self, writer: BagWriter, cameras: list[str], compressed: bool, keep_sets: int = 30) -> None:
        super().__init__("demo_recorder")
        self.writer = writer
        self.keep_sets = keep_sets
        self.images: OrderedDict[int, dict[str, bytes]] = OrderedDict()  # stamp -> camera -> CDR
        self.counts: dict[str, int] = {}
        topics: dict[str, tuple[type, QoSProfile | int]] = {t: (c, 10) for t, c in OUTPUTS.items()}
        topics["/diagnostics"] = (DiagnosticArray, 10)
        topics[sm.GROUND_TRUTH_TOPIC] = (SemanticVoxelGrid, qos.GROUND_TRUTH)
        topics["/tf"] = (TFMessage, 100)
        topics["/tf_static"] = (TFMessage, qos.TF_STATIC_SUBSCRIBER)
        for cam in cameras:
            topics[sm.info_topic(cam)] = (CameraInfo, qos.SENSOR)
        for topic, (cls, profile) in topics.items():
            self.create_subscription(cls, topic, partial(self._record, topic, _type_name(cls)), profile, raw=True)
        self.image_type = CompressedImage if compressed else Image
        for cam in cameras:
            self.create_subscription(self.image_type, sm.image_topic(cam, compressed), partial(self._image, cam),
                                     qos.SENSOR, raw=True)

    def _record(self, topic: str, msgtype: str, data: bytes) -> None:
        self.writer.write(topic, data, time.time_ns(), msgtype)
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def _image(self, cam: str, data: bytes) -> None:
        msg = ros_types.deserialize(data, _type_name(self.image_type))
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self.images.setdefault(stamp, {})[cam] = data
        while len(self.images) > self.keep_sets:
            self.images.popitem(last=False)
        self.counts["images"] = self.counts.get("images", 0) + 1

    def outputs_received(self) -> int:
        """Number of voxel grids received so far."""
        return self.counts.get(f"{NODE}/voxels", 0)


def _stamp_ns(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def grid_of(msg: Any) -> GridConfig:
    """The :class:`GridConfig` a ``SemanticVoxelGrid`` describes (identity-oriented origin)."""
    size = (int(msg.size_x), int(msg.size_y), int(msg.size_z))
    lower = (msg.origin.position.x, msg.origin.position.y, msg.origin.position.z)
    upper = tuple(lo + n * float(msg.voxel_size) for lo, n in zip(lower, size))
    return GridConfig(lower=tuple(float(v) for v in lower), upper=upper, size=size)  # type: ignore[arg-type]


def grid_labels(msg: Any) -> tuple[np.ndarray, np.ndarray]:
    """``X Y Z`` labels and confidence (zeros if absent) of a decoded ``SemanticVoxelGrid``."""
    shape = (int(msg.size_x), int(msg.size_y), int(msg.size_z))
    labels = np.array(msg.labels, dtype=np.uint8).reshape(shape)  # C order [x][y][z], a writable copy
    conf = np.asarray(msg.confidence, dtype=np.uint8)
    return labels, (conf.reshape(shape) if conf.size else np.zeros(shape, np.uint8))


@dataclass
class Recording:
    """What the analysis read back from the demo bag."""

    predictions: dict[int, Any] = field(default_factory=dict)  # stamp -> SemanticVoxelGrid
    receive_ns: dict[int, int] = field(default_factory=dict)  # stamp -> log time of its voxels
    truths: dict[int, Any] = field(default_factory=dict)  # stamp -> ground-truth grid
    infos: dict[str, Any] = field(default_factory=dict)  # camera -> last CameraInfo
    tf_tree: StaticTransformTree = field(default_factory=StaticTransformTree)
    diagnostics: Any = None
    counts: dict[str, int] = field(default_factory=dict)


def read_recording(bag: Path, cameras: list[str]) -> Recording:
    """Decode the demo bag."""
    rec = Recording()
    infos = {sm.info_topic(c): c for c in cameras}
    with AnyReader([bag], default_typestore=ros_types.typestore()) as reader:
        for conn, log_time, raw in reader.messages():
            rec.counts[conn.topic] = rec.counts.get(conn.topic, 0) + 1
            if conn.topic in OUTPUTS and conn.topic != f"{NODE}/voxels":
                continue
            msg: Any = reader.deserialize(raw, conn.msgtype)
            if conn.topic == f"{NODE}/voxels":
                rec.predictions[_stamp_ns(msg)] = msg
                rec.receive_ns[_stamp_ns(msg)] = log_time
            elif conn.topic == sm.GROUND_TRUTH_TOPIC:
                rec.truths[_stamp_ns(msg)] = msg
            elif conn.topic in infos:
                rec.infos[infos[conn.topic]] = msg
            elif conn.topic == "/tf_static":
                for t in msg.transforms:
                    tr, q = t.transform.translation, t.transform.rotation
                    rec.tf_tree.set(t.header.frame_id, t.child_frame_id,
                                    pose_to_matrix((tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w)))
            elif conn.topic == "/diagnostics":
                rec.diagnostics = msg
    return rec


def score(rec: Recording) -> tuple[OccMetric, list[int]]:
    """mIoU of every prediction with a ground truth of the same stamp (truth on the model grid)."""
    metric = OccMetric()
    matched = []
    for stamp, pred_msg in sorted(rec.predictions.items()):
        truth_msg = rec.truths.get(stamp)
        if truth_msg is None:
            continue
        pred, _ = grid_labels(pred_msg)
        sem, visible = grid_labels(truth_msg)
        truth = OccLabels(sem, visible > 0, visible > 0)
        truth = downsample_labels(truth, grid_factor(grid_of(truth_msg), grid_of(pred_msg)))
        metric.update(pred, truth.semantics, truth.mask_camera)
        matched.append(stamp)
    return metric, matched


def latency_stats(rec: Recording) -> dict[str, float | int | None]:
    """End-to-end latency (voxels received - input stamp) p50/p95 in ms and the output rate."""
    lat = np.array([(rec.receive_ns[s] - s) / 1e6 for s in sorted(rec.predictions)])
    times = np.array(sorted(rec.receive_ns.values())) / 1e9
    rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else None
    return {"latency_p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
            "latency_p95_ms": float(np.percentile(lat, 95)) if lat.size else None,
            "output_rate_hz": rate}


def node_diagnostics(rec: Recording) -> dict[str, str]:
    """Key/values of the node's last ``inference`` diagnostics status (empty if none)."""
    if rec.diagnostics is None:
        return {}
    for status in rec.diagnostics.status:
        if status.name.endswith("inference"):
            return {"message": status.message, **{kv.key: kv.value for kv in status.values}}
    return {}


def camera_calibration(rec: Recording, cameras: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray, tuple[int, int]]]:
    """Camera -> (``3 3`` K, ``4 4`` ego_T_cam from the recorded /tf_static, image ``(H, W)``).

    Only cameras whose CameraInfo and transform were both recorded: the recorder is one more
    best-effort subscriber and can miss every CameraInfo of one camera in a short run.
    """
    calib = {}
    for cam in cameras:
        if cam not in rec.infos:
            continue
        intr = convert.camera_info_to_intrinsics(rec.infos[cam])
        T = rec.tf_tree.lookup(sm.EGO_FRAME, intr.frame_id)
        if T is not None:
            calib[cam] = (intr.K, T, intr.image_hw)
    return calib


def picture_stamp(predictions: Iterable[int], images: Mapping[int, Mapping[str, bytes]]) -> int | None:
    """The answered set to draw: the newest among those whose camera images arrived most completely.

    The recorder is one more subscriber and may miss an image the node received (a loaded
    machine, best-effort image QoS); the pictures then show that camera as missing rather than
    not being drawn at all. ``None`` when the node answered nothing.
    """
    answered = list(predictions)
    return max(answered, key=lambda s: (len(images.get(s, {})), s)) if answered else None


def decode_images(raw: Mapping[str, bytes], cameras: list[str], compressed: bool) -> list[np.ndarray | None]:
    """``H W 3`` RGB images of one recorded camera set; ``None`` for a camera not received."""
    typename = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    return [convert.to_rgb(ros_types.deserialize(raw[c], typename)) if c in raw else None for c in cameras]


def write_pictures(rec: Recording, stamp: int, images: list[np.ndarray | None], cameras: list[str], out: Path,
                   title: str) -> list[Path]:
    """BEV prediction vs ground truth, and the predicted voxels rendered into every camera.

    What the recorder missed is drawn as missing and named in the title, never skipped
    silently: a camera without an image is grey, one without a recorded CameraInfo or
    /tf_static transform has no voxels drawn. The camera picture is left out only when no
    camera has either an image or a calibration (nothing gives its size).
    """
    pred, _ = grid_labels(rec.predictions[stamp])
    grid = grid_of(rec.predictions[stamp])
    truth = None
    mask = None
    if stamp in rec.truths:
        sem, visible = grid_labels(rec.truths[stamp])
        labels = downsample_labels(OccLabels(sem, visible > 0, visible > 0),
                                   grid_factor(grid_of(rec.truths[stamp]), grid))
        truth, mask = labels.semantics, labels.mask_camera
    paths = [bev_png(truth, pred, out / "bev.png", mask=mask, grid=grid)]
    calib = camera_calibration(rec, cameras)
    sizes = [c[2] for c in calib.values()] + [im.shape[:2] for im in images if im is not None]
    if not sizes:
        return paths
    hw = sizes[0]
    known = [c for c in cameras if c in calib]
    rendered: dict[str, np.ndarray] = {}
    if known:
        Ks, Ts = np.stack([calib[c][0] for c in known]), np.stack([calib[c][1] for c in known])
        rendered = dict(zip(known, render_voxels_to_cameras(pred, grid, Ks, Ts, hw)))
    shown = [np.full((*hw, 3), 128, np.uint8) if im is None else im for im in images]
    overlays = [rendered.get(c, np.full(hw, IGNORE, np.uint8)) for c in cameras]
    no_image = [c for c, im in zip(cameras, images) if im is None]
    no_calib = [c for c in cameras if c not in calib]
    missed = ([f"no image received from {', '.join(no_image)}"] if no_image else []) + (
        [f"no calibration received from {', '.join(no_calib)}"] if no_calib else [])
    note = f" ({'; '.join(missed)})" if missed else ""
    paths.append(camera_overlay_png(shown, overlays, out / "cameras_pred.png",
                                    suptitle=f"{title}: predicted voxels seen by each camera{note}"))
    return paths
