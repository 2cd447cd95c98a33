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
  an image that overtook the CameraInfo of a new resolution waited for it on arrival), puts a black image with the
  camera's last known calibration in place of a missing or undecodable camera, expresses
  every camera in the ego frame at the set's stamp when ``/tf`` has the ego poses
  (:mod:`scaocc_ros.motion`), predicts, and builds the outputs (:mod:`scaocc_ros.set_outputs`).

The node passes ``now`` from its clock, a bag the log time of each message. Messages may be
rclpy's (pure Python classes, no runtime needed) or rosbags' alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from visualization_msgs.msg import MarkerArray

from scaocc_core.config import load_config
from scaocc_core.device import resolve_device
from scaocc_core.predictor import Predictor, PredictorInput
from scaocc_ros import convert, headers, outputs
from scaocc_ros.calibration import CalibrationError, StaticTransformTree, pose_to_matrix
from scaocc_ros.diagnostics import NodeStats
from scaocc_ros.motion import EgoMotion
from scaocc_ros.params import NodeParams, resolve_file
from scaocc_ros.problems import ProblemLog
from scaocc_ros.set_outputs import SetOutputs, build_outputs, class_ids
from scaocc_ros.sync import ApproximateTimeSync, SyncedSet

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The pipeline cannot start (model, backend or configuration); the message says why."""


def load_predictor(params: NodeParams, share_dir: Path | None = None) -> tuple[Predictor, list[str]]:
    """The predictor the parameters ask for, plus notes for diagnostics; raises :class:`StartupError`.

    Relative model paths are looked up from the working directory, then ``share_dir`` (the
    installed package's share directory), then the repository. ``device: auto`` is resolved here.
    """
    try:
        device = resolve_device(params.device)
        if params.model_path:
            path = resolve_file(params.model_path, share_dir)
            return Predictor.from_checkpoint(path, device=device, backend=params.backend), []
        if params.backend != "torch":
            raise StartupError(f"backend {params.backend!r} needs model_path (an exported model)")
        cfg = load_config(resolve_file(params.model_config, share_dir))
        return Predictor.from_config(cfg, device=device), [f"random weights ({cfg.name}): no model_path"]
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
    ego_T_cam: np.ndarray  # 4 4, ego <- the frame intrinsics.K projects (cam_T_img applied)


def stamp_of(msg: Any) -> int:
    """``header.stamp`` of a message in integer nanoseconds."""
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def _fits(intr: convert.Intrinsics, frame_id: str, hw: tuple[int, int]) -> bool:
    """Whether an image of this frame and size belongs to the calibration ``intr``."""
    return intr.frame_id == frame_id and intr.image_hw == hw


class CameraSetPipeline:
    """Messages of N cameras in, :class:`SetOutputs` out (see the module docstring).

    ``serialize`` turns a ``MarkerArray`` into CDR bytes (rclpy's serialiser in the node,
    rosbags' offline); ``warn`` receives warnings: at most one per (camera, kind of problem)
    every ``warn_period_s`` seconds (:class:`~scaocc_ros.problems.ProblemLog`), and one when a
    camera goes silent and when it comes back.

    Every message that will not be used is counted once, by camera and kind, on arrival:
    oversize, stamp, image (raw encoding, size or step; corrupt, truncated or non-JPEG/PNG
    payload), size and frame_id (not its CameraInfo's), late, duplicate, camera_info,
    no_extrinsics; decode when the worker cannot decode an image whose header was fine.
    A CameraInfo of a new frame or size takes effect with the first image that fits it (and
    is counted if an image of the current calibration or another CameraInfo comes first);
    an image that fits neither waits for the next CameraInfo and is counted if that does not fit.
    """

    def __init__(self, predictor: Predictor, params: NodeParams, serialize: Callable[[MarkerArray], bytes],
                 warn: Callable[[str], object] = log.warning) -> None:
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
        self.candidates: dict[str, convert.Intrinsics] = {}  # a new frame or size, until an image confirms it
        self.pending: dict[str, tuple[Any, tuple[int, int]]] = {}  # image, hw waiting for a camera_info it fits
        self.tf_tree = StaticTransformTree()
        self.motion = EgoMotion(self.tf_tree)  # /tf: ego poses (motion compensation, output_frame)
        class_ids(predictor.class_names, params)
        self.last_frame: dict[str, tuple[np.ndarray, np.ndarray, tuple[int, int]]] = {}  # K, T, hw (worker)
        self.shown_classes: set[int] = set()  # classes of the last markers (worker)
        self.problems = ProblemLog(warn, params.warn_period_s)
        self.last_image_ns: dict[str, int] = {}
        self._active = [True] * len(self.names)
        suffix = "image/compressed" if params.image_transport == "compressed" else "image"
        #: Resolved image topic of each camera (the adapters set it after remapping); with
        #: ``rectification: auto`` it decides whether a camera's images are already rectified.
        self.image_topics = {cam: f"/{cam}/{suffix}" for cam in self.names}

    def update_params(self, params: NodeParams) -> None:
        """Apply parameters changed at runtime (:data:`scaocc_ros.params.RUNTIME`); raises
        :class:`~scaocc_ros.params.ParamError` if they are invalid."""
        class_ids(self.predictor.class_names, params.validate())
        self.sync.slop_ns, self.sync.queue_size = int(params.sync_slop_s * 1e9), params.sync_queue_size
        self.sync.timeout_ns = int(params.camera_timeout_s * 1e9)
        self.params = params

    def warn(self, cam: str, kind: str, text: str) -> None:
        """Log ``text`` about ``cam`` unless this (camera, kind) was logged within ``warn_period_s``."""
        self.problems.report(cam, kind, text)

    def reject(self, cam: str, kind: str, exc: Exception | str) -> None:
        """Count one unusable message of ``cam`` and log it (rate-limited per camera and kind)."""
        self.stats.malformed_message(cam, kind)
        self.warn(cam, kind, f"skipped: {exc}")

    # ---- executor side ---------------------------------------------------------------------
    def on_camera_info(self, cam: str, msg: Any, now_ns: int) -> list[SyncedSet[CameraFrame]]:
        """Keep the intrinsics of a valid CameraInfo; an image that waited for it goes on."""
        try:
            rectified = convert.is_rectified(self.params.rectification, self.image_topics[cam])
            intr = convert.camera_info_to_intrinsics(msg, rectified)
            self.undistorter.check(intr)
            if not intr.frame_id:
                raise convert.ConversionError("camera_info has an empty frame_id")
            if intr.image_hw[0] * intr.image_hw[1] > self.params.max_image_pixels:
                raise convert.ConversionError(f"camera_info resolution {msg.width}x{msg.height} exceeds "
                                              f"max_image_pixels {self.params.max_image_pixels}")
        except convert.ConversionError as exc:
            self.reject(cam, "camera_info", exc)
            return []
        current = self.intrinsics.get(cam)
        if current is None or _fits(current, intr.frame_id, intr.image_hw):
            self.intrinsics[cam] = intr
            self._reject_candidate(cam, "a CameraInfo of the current frame and size came")
        else:  # a new frame or size: takes effect with the first image that fits it
            self._reject_candidate(cam, "a newer CameraInfo replaced it")
            self.candidates[cam] = intr
        pending = self.pending.pop(cam, None)
        return [] if pending is None else self._accept(cam, *pending, now_ns, waited=True)

    def _reject_candidate(self, cam: str, why: str) -> None:
        cand = self.candidates.pop(cam, None)
        if cand is not None:
            h, w = cand.image_hw
            self.reject(cam, "camera_info", f"camera_info {w}x{h} in frame {cand.frame_id!r} matched no image "
                                                f"({why})")

    def on_tf_static(self, msg: Any) -> None:
        """Add every transform of a ``TFMessage`` to the static tree (invalid ones are skipped)."""
        for t in msg.transforms:
            tr, q = t.transform.translation, t.transform.rotation
            try:
                self.tf_tree.set(t.header.frame_id, t.child_frame_id,
                                 pose_to_matrix((tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w)))
            except CalibrationError as exc:
                self.warn("/tf_static", t.child_frame_id, f"/tf_static: ignored {t.child_frame_id!r}: {exc}")

    def on_tf(self, msg: Any) -> None:
        """Add every transform of a ``/tf`` ``TFMessage`` to the pose history (invalid ones are skipped)."""
        for t in msg.transforms:
            tr, q = t.transform.translation, t.transform.rotation
            try:
                self.motion.add(t.header.frame_id, t.child_frame_id, stamp_of(t),
                                pose_to_matrix((tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w)))
            except CalibrationError as exc:
                self.warn("tf", "tf", f"/tf: ignored {t.child_frame_id}: {exc}")

    def on_image(self, cam: str, msg: Any, now_ns: int) -> list[SyncedSet[CameraFrame]]:
        """Check an image received at ``now_ns`` and queue it; returns the sets it completes."""
        self.stats.received(cam, now_ns)
        p = self.params
        kind = "oversize"
        try:
            headers.check_limits(msg, p.max_message_bytes, p.max_image_pixels)
            kind = "stamp"
            convert.check_stamp(stamp_of(msg), now_ns, int(p.max_future_s * 1e9), int(p.max_age_s * 1e9))
            kind = "image"
            hw = headers.image_size(msg)
            kind = "oversize"
            headers.check_limits(msg, p.max_message_bytes, p.max_image_pixels, hw)
        except convert.ConversionError as exc:
            self.reject(cam, kind, exc)
            return []
        return self._accept(cam, msg, hw, now_ns)

    def _extrinsics(self, cam: str, frame_id: str) -> np.ndarray | None:
        if self.params.extrinsics_source == "params":
            return self.params.ego_T_cam[cam]
        return self.tf_tree.lookup(self.params.ego_frame, frame_id)

    def _mismatch(self, cam: str, msg: Any, hw: tuple[int, int], intr: convert.Intrinsics) -> None:
        frame = msg.header.frame_id
        kind = "size" if hw != intr.image_hw else "frame_id"
        self.reject(cam, kind, f"image {hw[1]}x{hw[0]} in frame {frame!r} does not match its camera_info "
                                   f"{intr.image_hw[1]}x{intr.image_hw[0]} in frame {intr.frame_id!r}")

    def _accept(self, cam: str, msg: Any, hw: tuple[int, int], now_ns: int,
                waited: bool = False) -> list[SyncedSet[CameraFrame]]:
        """Attach the calibration to a checked image (``hw`` its size) and hand it to the
        synchroniser; ``waited``: the image was held for the CameraInfo that just came."""
        intr = self.intrinsics.get(cam)
        frame = msg.header.frame_id
        if intr is None:
            if cam in self.pending:  # the older waiting image is given up
                self.stats.no_camera_info(cam)
                self.warn(cam, "no_camera_info", "no valid camera_info yet")
            self.pending[cam] = (msg, hw)
            return []
        cand = self.candidates.get(cam)
        if _fits(intr, frame, hw):
            self._reject_candidate(cam, "an image of the current frame and size came")
        elif cand is not None and _fits(cand, frame, hw):
            intr = self.intrinsics[cam] = self.candidates.pop(cam)
        elif waited:
            self._mismatch(cam, msg, hw, intr)
            return []
        else:  # held for a CameraInfo of its frame and size
            older = self.pending.pop(cam, None)
            if older is not None:
                self._mismatch(cam, *older, intr)
            self.pending[cam] = (msg, hw)
            return []
        ego_T_cam = self._extrinsics(cam, intr.frame_id)
        if ego_T_cam is None:
            self.stats.no_extrinsics(cam)
            self.warn(cam, "no_extrinsics", f"no /tf_static chain {self.params.ego_frame!r} -> {intr.frame_id!r}")
            return []
        ego_T_cam = ego_T_cam @ intr.cam_T_img  # rectified images: the frame P projects (else identity)
        return self._synchronise(cam, stamp_of(msg), CameraFrame(msg, intr, ego_T_cam), now_ns)

    def _synchronise(self, cam: str, stamp_ns: int, frame: CameraFrame, now_ns: int) -> list[SyncedSet[CameraFrame]]:
        """``sync.add``, counting late and duplicate stamps and logging cameras that go silent or return."""
        st = self.sync.stats(cam)
        late, dup = st.late, st.duplicates
        sets = self.sync.add(cam, stamp_ns, frame, now_ns)
        if st.late > late:
            self.reject(cam, "late", f"stamp {stamp_ns / 1e9:.3f} is older than the camera's last set")
        elif st.duplicates > dup:
            self.reject(cam, "duplicate", f"stamp {stamp_ns / 1e9:.3f} was already received")
        last = self.last_image_ns.get(cam)
        self.last_image_ns[cam] = now_ns
        for name, was, now in zip(self.names, self._active, self.sync.active()):
            if was and not now:
                self._warn(f"{name}: silent for more than {self.params.camera_timeout_s} s; sets go on without it")
            elif now and not was and name == cam and last is not None:
                self._warn(f"{name}: back after {(now_ns - last) / 1e9:.1f} s")
        self._active = self.sync.active()
        return sets

    # ---- worker side -----------------------------------------------------------------------
    def _decode(self, cam: str, frame: CameraFrame) -> tuple[np.ndarray, convert.Intrinsics] | None:
        """The image (undistorted) and the intrinsics of its pixels; compressed images are decoded
        at the reduction the predictor allows for their size. ``None`` (counted) if unusable."""
        try:
            image, intr = convert.decode(frame.msg, frame.intrinsics,
                                         self.predictor.decode_reduction(frame.intrinsics.image_hw))
            convert.check_image_size(image, intr)
            return self.undistorter(image, intr), intr
        except convert.ConversionError as exc:
            self.reject(cam, "decode", exc)
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
        T, p = np.stack(Ts), self.params
        if p.motion_compensation:  # each camera in the ego frame at the set's stamp; static without /tf
            stamps = [t if ok else None for t, ok in zip(s.stamps_ns, valid)]
            moved = self.motion.compensate(T, stamps, s.stamp_ns, p.odom_frame, p.ego_frame,
                                           int(p.tf_tolerance_s * 1e9))
            T = T if moved is None else moved
        return PredictorInput(images, np.stack(Ks), T, np.array(valid))

    def infer(self, s: SyncedSet[CameraFrame], markers: bool = True) -> SetOutputs | None:
        """Predict one set and build its outputs (the ``MarkerArray`` only if ``markers``);
        ``None`` if the set has too few usable cameras."""
        inp = self.camera_input(s)
        if inp is None:
            return None
        pred, p = self.predictor.predict(inp), self.params
        frame_T_ego = None  # planner-facing outputs in output_frame when /tf has it, else in ego_frame
        if p.output_frame and p.output_frame != p.ego_frame:
            frame_T_ego = self.motion.fixed_T_ego(p.output_frame, p.ego_frame, s.stamp_ns, int(p.tf_tolerance_s * 1e9))
        frames = [self.intrinsics[c].frame_id if c in self.intrinsics else c for c in self.names]
        out, shown = build_outputs(pred, s.stamp_ns, self.predictor.grid, self.predictor.class_names, p, frames,
                                   frame_T_ego, self.shown_classes if markers else None, self._serialize)
        if markers:
            self.shown_classes = shown
        return out
