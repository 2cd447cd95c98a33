"""One camera set from messages to outputs: the pipeline of occ_node and ``scaocc bag infer``.

:class:`CameraSetPipeline` holds everything between "a camera message arrived" and "these
outputs are ready", and imports no ROS runtime (rclpy), so the node's callbacks and the
offline bag reader are thin adapters over the same code:

- executor side, in message order: :meth:`~CameraSetPipeline.on_camera_info` keeps the
  newest valid intrinsics, :meth:`~CameraSetPipeline.on_tf_static` the static transform
  tree, and :meth:`~CameraSetPipeline.on_image` checks the stamp and the image, attaches the
  calibration valid at arrival (intrinsics, and extrinsics from the parameters or
  ``/tf_static`` as ``extrinsics_source`` says), holds an image whose CameraInfo has not come
  yet, and feeds the synchroniser; each returns the camera sets its message completed;
- worker side: :meth:`~CameraSetPipeline.infer` decodes a set (compressed images at the
  reduction the predictor allows, then undistorted; an image that overtook the CameraInfo of
  a new resolution is decoded again with the newest intrinsics), puts a black image with the
  camera's last known calibration in place of a missing or undecodable camera, predicts, and
  builds the output messages.

The node passes ``now`` from its clock, a bag the log time of each message. Messages may be
rclpy's (pure Python classes, no runtime needed) or rosbags' alike.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from nav_msgs.msg import OccupancyGrid
from scaocc_msgs.msg import CameraCalibrationOffsetArray, SemanticVoxelGrid
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from scaocc_core.config import load_config
from scaocc_core.predictor import Prediction, Predictor, PredictorInput
from scaocc_ros import convert, outputs
from scaocc_ros.calibration import CalibrationError, StaticTransformTree, pose_to_matrix
from scaocc_ros.diagnostics import NodeStats
from scaocc_ros.params import NodeParams, resolve_file
from scaocc_ros.sync import ApproximateTimeSync, SyncedSet

log = logging.getLogger(__name__)
#: A kind of warning is logged at most once per this many seconds.
WARN_INTERVAL_S = 5.0


class StartupError(RuntimeError):
    """The pipeline cannot start (model, backend or configuration); the message says why."""


def load_predictor(params: NodeParams, share_dir: Path | None = None) -> tuple[Predictor, list[str]]:
    """The predictor the parameters ask for, plus notes for diagnostics; raises :class:`StartupError`.

    Relative model paths are looked up from the working directory, then ``share_dir`` (the
    installed package's share directory), then the repository.
    """
    try:
        if params.model_path:
            path = resolve_file(params.model_path, share_dir)
            return Predictor.from_checkpoint(path, device=params.device, backend=params.backend), []
        if params.backend != "torch":
            raise StartupError(f"backend {params.backend!r} needs model_path (an exported model)")
        cfg = load_config(resolve_file(params.model_config, share_dir))
        return Predictor.from_config(cfg, device=params.device), [f"random weights ({cfg.name}): no model_path"]
    except StartupError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to load is reported in one line
        raise StartupError(f"cannot load the model (backend {params.backend}, device {params.device}): "
                           f"{type(exc).__name__}: {exc}") from exc


@dataclass
class CameraFrame:
    """One received image with the calibration valid when it arrived."""

    msg: Any  # sensor_msgs Image or CompressedImage (rclpy or rosbags)
    intrinsics: convert.Intrinsics
    ego_T_cam: np.ndarray  # 4 4


@dataclass
class SetOutputs:
    """The node's outputs for one camera set, stamped with its newest image's stamp."""

    stamp_ns: int
    prediction: Prediction
    voxels: SemanticVoxelGrid
    points: PointCloud2
    markers: bytes | None  # serialised MarkerArray; None when not asked for
    bev: OccupancyGrid
    calibration_offsets: CameraCalibrationOffsetArray

    def messages(self) -> dict[str, Any]:
        """Output name (the topic under the node's namespace) -> message; markers as CDR bytes."""
        out: dict[str, Any] = {"voxels": self.voxels, "points": self.points}
        if self.markers is not None:
            out["markers"] = self.markers
        out.update(bev=self.bev, calibration_offsets=self.calibration_offsets)
        return out


def stamp_of(msg: Any) -> int:
    """``header.stamp`` of a message in integer nanoseconds."""
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


class CameraSetPipeline:
    """Messages of N cameras in, :class:`SetOutputs` out (see the module docstring).

    ``serialize`` turns a ``MarkerArray`` into CDR bytes (rclpy's serialiser in the node,
    rosbags' offline); ``warn`` receives warnings, at most one per kind every
    :data:`WARN_INTERVAL_S` seconds.
    """

    def __init__(self, predictor: Predictor, params: NodeParams, serialize: Callable[[MarkerArray], bytes],
                 warn: Callable[[str], None] = log.warning) -> None:
        self.names = list(params.camera_names)
        if predictor.num_cams != len(self.names):
            raise StartupError(f"the model expects {predictor.num_cams} cameras, camera_names has "
                               f"{len(self.names)}: {self.names}")
        outputs.cubic_voxel_size(predictor.grid)
        self.predictor, self.params = predictor, params
        self._serialize, self._warn = serialize, warn
        self.sync: ApproximateTimeSync[CameraFrame] = ApproximateTimeSync(
            self.names, int(params.sync_slop_s * 1e9), params.sync_queue_size, int(params.camera_timeout_s * 1e9))
        self.stats = NodeStats(self.names)
        self.undistorter = convert.Undistorter(params.distortion)
        self.intrinsics: dict[str, convert.Intrinsics] = {}  # newest valid CameraInfo per camera
        self.pending: dict[str, Any] = {}  # newest image waiting for a first camera_info
        self.tf_tree = StaticTransformTree()
        self.last_frame: dict[str, tuple[np.ndarray, np.ndarray, tuple[int, int]]] = {}  # K, T, hw (worker)
        self.shown_classes: set[int] = set()  # classes of the last markers (worker)
        self._warned: dict[str, float] = {}

    def warn(self, kind: str, text: str) -> None:
        """Pass ``text`` to ``warn`` unless a warning of ``kind`` went out in the last interval."""
        now = time.monotonic()
        if now - self._warned.get(kind, -math.inf) >= WARN_INTERVAL_S:
            self._warned[kind] = now
            self._warn(text)

    def _malformed(self, cam: str, kind: str, exc: Exception) -> None:
        self.stats.malformed_message(cam, kind)
        self.warn(kind, f"{cam}: skipped {kind} message: {exc}")

    # ---- executor side ---------------------------------------------------------------------
    def on_camera_info(self, cam: str, msg: Any, now_ns: int) -> list[SyncedSet[CameraFrame]]:
        """Keep the intrinsics of a valid CameraInfo; an image that waited for it goes on."""
        try:
            intr = convert.camera_info_to_intrinsics(msg)
            self.undistorter.check(intr)
        except convert.ConversionError as exc:
            self._malformed(cam, "camera_info", exc)
            return []
        self.intrinsics[cam] = intr
        pending = self.pending.pop(cam, None)
        return [] if pending is None else self._accept(cam, pending, now_ns)

    def on_tf_static(self, msg: Any) -> None:
        """Add every transform of a ``TFMessage`` to the static tree (invalid ones are skipped)."""
        for t in msg.transforms:
            tr, q = t.transform.translation, t.transform.rotation
            try:
                self.tf_tree.set(t.header.frame_id, t.child_frame_id,
                                 pose_to_matrix((tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w)))
            except CalibrationError as exc:
                self.warn("tf_static", f"/tf_static: ignored {t.child_frame_id}: {exc}")

    def on_image(self, cam: str, msg: Any, now_ns: int) -> list[SyncedSet[CameraFrame]]:
        """Check an image received at ``now_ns`` and queue it; returns the sets it completes."""
        self.stats.received(cam, now_ns)
        p = self.params
        try:
            convert.check_stamp(stamp_of(msg), now_ns, int(p.max_future_s * 1e9), int(p.max_age_s * 1e9))
        except convert.ConversionError as exc:
            self._malformed(cam, "stamp", exc)
            return []
        if not convert.is_compressed(msg):
            try:
                convert.check_image(msg)
            except convert.ConversionError as exc:
                self._malformed(cam, "image", exc)
                return []
        return self._accept(cam, msg, now_ns)

    def _extrinsics(self, cam: str, frame_id: str) -> np.ndarray | None:
        if self.params.extrinsics_source == "params":
            return self.params.ego_T_cam[cam]
        return self.tf_tree.lookup(self.params.ego_frame, frame_id)

    def _accept(self, cam: str, msg: Any, now_ns: int) -> list[SyncedSet[CameraFrame]]:
        """Attach the calibration to a valid image and hand it to the synchroniser."""
        intr = self.intrinsics.get(cam)
        if intr is None:
            if cam in self.pending:  # the older waiting image is given up
                self.stats.no_camera_info(cam)
                self.warn("no_camera_info", f"{cam}: no valid camera_info yet")
            self.pending[cam] = msg
            return []
        ego_T_cam = self._extrinsics(cam, intr.frame_id)
        if ego_T_cam is None:
            self.stats.no_extrinsics(cam)
            self.warn("no_extrinsics", f"{cam}: no /tf_static chain {self.params.ego_frame} -> {intr.frame_id}")
            return []
        return self.sync.add(cam, stamp_of(msg), CameraFrame(msg, intr, ego_T_cam), now_ns)

    # ---- worker side -----------------------------------------------------------------------
    def _decode(self, cam: str, frame: CameraFrame) -> tuple[np.ndarray, convert.Intrinsics] | None:
        """The image (undistorted) and the intrinsics of its pixels; compressed images are decoded
        at the reduction the predictor allows for their size. ``None`` (counted) if unusable."""
        try:
            image, intr = convert.decode(frame.msg, frame.intrinsics,
                                         self.predictor.decode_reduction(frame.intrinsics.image_hw))
            latest = self.intrinsics.get(cam)
            if image.shape[:2] != intr.image_hw and latest is not None and latest is not frame.intrinsics:
                # resolution changed; the image overtook its camera_info
                retry, retry_intr = convert.decode(frame.msg, latest, self.predictor.decode_reduction(latest.image_hw))
                if retry.shape[:2] == retry_intr.image_hw:
                    image, intr = retry, retry_intr
            convert.check_image_size(image, intr)
            return self.undistorter(image, intr), intr
        except convert.ConversionError as exc:
            self._malformed(cam, "decode", exc)
            return None

    def _placeholder(self, cam: str) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        """Last known K, ego_T_cam and size of a camera (a generic pinhole if never seen)."""
        if cam in self.last_frame:
            return self.last_frame[cam]
        h, w = self.predictor.image_hw
        K = np.array([[w, 0.0, (w - 1) / 2], [0.0, w, (h - 1) / 2], [0.0, 0.0, 1.0]])
        return K, self.params.ego_T_cam.get(cam, np.eye(4)), (h, w)

    def camera_input(self, s: SyncedSet[CameraFrame]) -> PredictorInput | None:
        """The predictor input of a set; ``None`` (counted) if fewer than ``min_cameras`` are usable."""
        images: list[np.ndarray] = []
        Ks, Ts, valid = [], [], []
        for cam, frame in zip(self.names, s.items):
            decoded = self._decode(cam, frame) if frame is not None else None
            if frame is not None and decoded is not None:
                image, K, T = decoded[0], decoded[1].K, frame.ego_T_cam
                self.last_frame[cam] = (K, T, (image.shape[0], image.shape[1]))
            else:  # camera missing or undecodable: black image, last known calibration, features zeroed
                K, T, hw = self._placeholder(cam)
                image = np.zeros((*hw, 3), np.uint8)
            images.append(image)
            Ks.append(K)
            Ts.append(T)
            valid.append(frame is not None and decoded is not None)
        if sum(valid) < self.params.min_cameras:
            self.stats.set_skipped()
            return None
        return PredictorInput(images, np.stack(Ks), np.stack(Ts), np.array(valid))

    def infer(self, s: SyncedSet[CameraFrame], markers: bool = True) -> SetOutputs | None:
        """Predict one set and build its outputs (the ``MarkerArray`` only if ``markers``);
        ``None`` if the set has too few usable cameras."""
        inp = self.camera_input(s)
        if inp is None:
            return None
        pred = self.predictor.predict(inp)
        stamp_ns = s.stamp_ns
        header = Header(stamp=Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000),
                        frame_id=self.params.ego_frame)
        grid = self.predictor.grid
        marker_bytes = None
        if markers:
            marker_bytes, self.shown_classes = outputs.marker_array_cdr(pred, grid, header, self.shown_classes,
                                                                        self._serialize)
        frames = [self.intrinsics[c].frame_id if c in self.intrinsics else c for c in self.names]
        return SetOutputs(stamp_ns, pred, outputs.voxel_grid_msg(pred, grid, self.predictor.class_names, header),
                          outputs.point_cloud_msg(pred, grid, header), marker_bytes,
                          outputs.bev_msg(pred, grid, header), outputs.calibration_msg(pred, header, frames))
