"""``scaocc bag infer``: the node's pipeline run offline over a bag, with no ROS runtime.

Reads a rosbag2 (MCAP or sqlite3) with rosbags, feeds camera images to the node's own
synchroniser (:mod:`scaocc_ros.sync`, the bag's log time standing in for the receive time),
decodes them with :mod:`scaocc_ros.convert`, runs the core :class:`Predictor`, builds the
node's outputs with :mod:`scaocc_ros.outputs` and writes them (rosbags CDR) as
``/occ_node/{voxels,points,markers,bev,calibration_offsets}`` into a new MCAP bag, each
logged at the time the last image of its set was logged. The message classes of the
builders are plain Python objects here; rclpy is never imported.

Parameters (camera names, transport, slop, extrinsics...) come from the node's YAML file.
Extrinsics: ``/tf_static`` of the bag when it has the chain ``ego_frame -> camera frame``,
else the YAML's ``extrinsics``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rosbags.highlevel import AnyReader
from std_msgs.msg import Header
from tqdm import tqdm

from scaocc_core.config import load_config
from scaocc_core.predictor import Prediction, Predictor, PredictorInput
from scaocc_ros import convert, outputs, ros_types
from scaocc_ros.bag_synth import BagWriter
from scaocc_ros.calibration import CalibrationError, StaticTransformTree, extrinsics_from_values, pose_to_matrix
from scaocc_ros.sync import ApproximateTimeSync, SyncedSet
from scaocc_ros.synth_msgs import stamp_msg

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
OUTPUT_NAMESPACE = "/occ_node"


class BagInferError(RuntimeError):
    """The bag or the parameters cannot be used (the message says why)."""


@dataclass
class OfflineParams:
    """The subset of occ_node's parameters that offline inference uses."""

    camera_names: list[str]
    image_transport: str = "raw"
    ego_frame: str = "base_link"
    distortion: str = "undistort"
    sync_slop_s: float = 0.05
    sync_queue_size: int = 5
    camera_timeout_s: float = 1.0
    min_cameras: int = 1
    extrinsics: dict[str, np.ndarray] = field(default_factory=dict)  # from the YAML, per camera

    @classmethod
    def from_yaml(cls, path: Path) -> OfflineParams:
        """Read ``occ_node.ros__parameters`` of a node parameters file."""
        try:
            doc = yaml.safe_load(Path(path).read_text())
            p: dict[str, Any] = doc["occ_node"]["ros__parameters"]
        except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
            raise BagInferError(f"cannot read node parameters from {path}: {exc}") from exc
        known = {k: p[k] for k in ("image_transport", "ego_frame", "distortion", "sync_slop_s", "sync_queue_size",
                                   "camera_timeout_s", "min_cameras") if k in p}
        out = cls(camera_names=list(p["camera_names"]), **known)
        for cam, values in (p.get("extrinsics") or {}).items():
            try:
                out.extrinsics[cam] = extrinsics_from_values(cam, values.get("translation", []),
                                                             values.get("rotation_xyzw", []), values.get("matrix", []))
            except CalibrationError as exc:
                raise BagInferError(str(exc)) from exc
        return out


@dataclass
class Frame:
    """One image from the bag with the calibration valid at its log time."""

    msg: Any  # rosbags sensor_msgs Image or CompressedImage
    intrinsics: convert.Intrinsics
    ego_T_cam: np.ndarray  # 4 4


@dataclass
class InferStats:
    """Counts of one run."""

    images: int = 0
    sets: int = 0
    skipped: int = 0
    malformed: int = 0
    stamps_ns: list[int] = field(default_factory=list)


class OfflinePipeline:
    """Messages in log order -> synchronised sets -> predictions -> output messages."""

    def __init__(self, predictor: Predictor, params: OfflineParams, writer: BagWriter) -> None:
        if predictor.num_cams != len(params.camera_names):
            raise BagInferError(f"the model expects {predictor.num_cams} cameras, camera_names has "
                                f"{len(params.camera_names)}")
        self.predictor, self.params, self.writer = predictor, params, writer
        self.names = params.camera_names
        self.sync: ApproximateTimeSync[Frame] = ApproximateTimeSync(
            self.names, int(params.sync_slop_s * 1e9), params.sync_queue_size, int(params.camera_timeout_s * 1e9))
        self.undistorter = convert.Undistorter(params.distortion)
        self.intrinsics: dict[str, convert.Intrinsics] = {}
        self.tf_tree = StaticTransformTree()
        self.shown: set[int] = set()
        self.stats = InferStats()

    def image_topics(self) -> dict[str, str]:
        """Topic -> camera of every image stream the parameters describe."""
        suffix = "image/compressed" if self.params.image_transport == "compressed" else "image"
        return {f"/{c}/{suffix}": c for c in self.names}

    def info_topics(self) -> dict[str, str]:
        """Topic -> camera of every CameraInfo stream."""
        return {f"/{c}/camera_info": c for c in self.names}

    def on_tf_static(self, msg: Any) -> None:
        """Add every transform of a ``TFMessage`` to the static tree."""
        for t in msg.transforms:
            tr, q = t.transform.translation, t.transform.rotation
            self.tf_tree.set(t.header.frame_id, t.child_frame_id,
                             pose_to_matrix((tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w)))

    def on_info(self, cam: str, msg: Any) -> None:
        """Keep the intrinsics of a valid CameraInfo (malformed ones are counted)."""
        try:
            intr = convert.camera_info_to_intrinsics(msg)
            self.undistorter.check(intr)
        except convert.ConversionError as exc:
            self.stats.malformed += 1
            log.warning("%s: skipped camera_info: %s", cam, exc)
            return
        self.intrinsics[cam] = intr

    def on_image(self, cam: str, msg: Any, log_time_ns: int) -> None:
        """Queue an image (with its calibration) and infer every set it completes."""
        self.stats.images += 1
        intr = self.intrinsics.get(cam)
        if intr is None:
            log.warning("%s: image before any camera_info, skipped", cam)
            return
        ego_T_cam = self.tf_tree.lookup(self.params.ego_frame, intr.frame_id)
        if ego_T_cam is None:
            ego_T_cam = self.params.extrinsics.get(cam)
        if ego_T_cam is None:
            raise BagInferError(f"{cam}: no /tf_static chain {self.params.ego_frame} -> {intr.frame_id} in the bag "
                                "and no extrinsics in the parameters file")
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        for s in self.sync.add(cam, stamp, Frame(msg, intr, ego_T_cam), log_time_ns):
            self.infer(s, log_time_ns)

    def _decode(self, frame: Frame) -> tuple[np.ndarray, convert.Intrinsics] | None:
        """The image (undistorted) and the intrinsics of its pixels, as the node decodes it."""
        try:
            image, intr = convert.decode(frame.msg, frame.intrinsics,
                                         self.predictor.decode_reduction(frame.intrinsics.image_hw))
            convert.check_image_size(image, intr)
            return self.undistorter(image, intr), intr
        except convert.ConversionError as exc:
            self.stats.malformed += 1
            log.warning("skipped an undecodable image: %s", exc)
            return None

    def predict(self, s: SyncedSet[Frame]) -> Prediction | None:
        """The prediction of one set (``None`` if fewer than ``min_cameras`` are usable)."""
        images, Ks, Ts, valid = [], [], [], []
        h, w = self.predictor.image_hw
        for frame in s.items:
            decoded = self._decode(frame) if frame is not None else None
            if frame is None or decoded is None:  # missing: black image, generic pinhole, features zeroed
                images.append(np.zeros((h, w, 3), np.uint8))
                Ks.append(np.array([[w, 0.0, (w - 1) / 2], [0.0, w, (h - 1) / 2], [0.0, 0.0, 1.0]]))
                Ts.append(np.eye(4))
                valid.append(False)
            else:
                images.append(decoded[0])
                Ks.append(decoded[1].K)
                Ts.append(frame.ego_T_cam)
                valid.append(True)
        if sum(valid) < self.params.min_cameras:
            self.stats.skipped += 1
            return None
        return self.predictor.predict(PredictorInput(images, np.stack(Ks), np.stack(Ts), np.array(valid)))

    def infer(self, s: SyncedSet[Frame], log_time_ns: int) -> None:
        """Predict one set and write the node's five outputs, stamped with the newest image's stamp."""
        pred = self.predict(s)
        if pred is None:
            return
        header = Header(stamp=stamp_msg(s.stamp_ns), frame_id=self.params.ego_frame)
        grid, ns = self.predictor.grid, OUTPUT_NAMESPACE
        markers, self.shown = outputs.marker_array_msg(pred, grid, header, self.shown)
        frames = [self.intrinsics[c].frame_id if c in self.intrinsics else c for c in self.names]
        for topic, msg in (
            (f"{ns}/voxels", outputs.voxel_grid_msg(pred, grid, self.predictor.class_names, header)),
            (f"{ns}/points", outputs.point_cloud_msg(pred, grid, header)),
            (f"{ns}/markers", markers),
            (f"{ns}/bev", outputs.bev_msg(pred, grid, header)),
            (f"{ns}/calibration_offsets", outputs.calibration_msg(pred, header, frames)),
        ):
            self.writer.write(topic, msg, log_time_ns)
        self.stats.sets += 1
        self.stats.stamps_ns.append(s.stamp_ns)


def load_predictor(checkpoint: Path | None, model_config: Path, backend: str, device: str) -> tuple[Predictor, str]:
    """The predictor and a description of it (random weights are said so)."""
    if checkpoint is not None:
        return Predictor.from_checkpoint(checkpoint, device=device, backend=backend), f"checkpoint {checkpoint}"
    if backend != "torch":
        raise BagInferError(f"backend {backend!r} needs --checkpoint (an exported model)")
    cfg = load_config(model_config)
    return Predictor.from_config(cfg, device=device), f"RANDOM WEIGHTS of {model_config} (no --checkpoint)"


def infer_bag(bag: Path, out: Path, predictor: Predictor, params: OfflineParams,
              overwrite: bool = False) -> InferStats:
    """Run the pipeline over ``bag`` and write the outputs to ``out``; returns the counts."""
    with AnyReader([Path(bag)], default_typestore=ros_types.typestore()) as reader, \
            BagWriter(out, overwrite) as writer:
        pipe = OfflinePipeline(predictor, params, writer)
        images, infos = pipe.image_topics(), pipe.info_topics()
        wanted = [c for c in reader.connections if c.topic in images or c.topic in infos or c.topic == "/tf_static"]
        missing = sorted(set(images) - {c.topic for c in wanted})
        if len(missing) == len(images):
            raise BagInferError(f"{bag} has none of the image topics {sorted(images)} "
                                f"(image_transport {params.image_transport!r}); it has "
                                f"{sorted({c.topic for c in reader.connections})}")
        if missing:
            log.warning("the bag lacks %s: those cameras count as missing", missing)
        total = sum(c.msgcount for c in wanted)
        for conn, log_time, raw in tqdm(reader.messages(connections=wanted), total=total, desc="infer",
                                        unit="msg", file=sys.stderr):
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic == "/tf_static":
                pipe.on_tf_static(msg)
            elif conn.topic in infos:
                pipe.on_info(infos[conn.topic], msg)
            else:
                pipe.on_image(images[conn.topic], msg, log_time)
    return pipe.stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``scaocc bag infer``."""
    parser.add_argument("bag", type=Path, help="input bag (directory or .mcap)")
    parser.add_argument("--out", type=Path, required=True, help="output bag directory to create")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--checkpoint", type=Path, help="model (.pt, or .onnx for onnxruntime); "
                                                        "default: random weights of --model-config")
    parser.add_argument("--model-config", type=Path, default=ROOT / "config/model/scaocc_tiny.yaml",
                        help="model YAML for random weights when no --checkpoint is given")
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--params", type=Path, default=ROOT / "config/occ_node.yaml",
                        help="node parameters YAML (camera names, transport, sync)")
    parser.add_argument("--image-transport", choices=("raw", "compressed", "auto"), default="auto",
                        help="auto: compressed if the bag has <cam>/image/compressed topics")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``scaocc bag infer``."""
    try:
        params = OfflineParams.from_yaml(args.params)
        if args.image_transport == "auto":
            with AnyReader([args.bag], default_typestore=ros_types.typestore()) as reader:
                compressed = any(c.topic.endswith("/image/compressed") for c in reader.connections)
            params.image_transport = "compressed" if compressed else "raw"
        else:
            params.image_transport = args.image_transport
        predictor, model = load_predictor(args.checkpoint, args.model_config, args.backend, args.device)
        print(f"model: {model}", file=sys.stderr)
        stats = infer_bag(args.bag, args.out, predictor, params, args.overwrite)
    except (BagInferError, FileExistsError, FileNotFoundError) as exc:
        print(f"scaocc bag infer: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {stats.sets} camera sets inferred from {stats.images} images "
          f"({params.image_transport}), {stats.skipped} skipped, {stats.malformed} malformed messages; model: {model}")
    return 0
