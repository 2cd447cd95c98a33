"""``scaocc bag infer``: occ_node's pipeline run offline over a bag, with no ROS runtime.

Reads a rosbag2 (MCAP or sqlite3) with rosbags and feeds its messages, in log order, to the
node's own :class:`~scaocc_ros.pipeline.CameraSetPipeline` (the log time stands in for the
receive time): the same checks, calibration, synchronisation, decoding, placeholders for
missing cameras, predictor and outputs as ``occ_node``, configured by the same parameters
(``--params``, a node parameters YAML, and ``-p NAME:=VALUE`` overrides as on the node).
Every set's outputs are written (rosbags CDR) as
``/occ_node/{voxels,points,obstacles,markers,bev,calibration_offsets}`` (those switched on)
into a new MCAP bag, logged at the log time of the message that completed the set. The bag's
``/tf_static`` and ``/tf`` feed the extrinsics, motion compensation and ``output_frame`` as on
the node. Unlike the live node, no set is dropped for a newer one (nothing runs against the
clock). rclpy is never imported.

Example (extrinsics from the bag's ``/tf_static`` instead of the YAML)::

    scaocc bag infer drive/ --out inferred/ --checkpoint best.pt -p extrinsics_source:=tf
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rosbags.highlevel import AnyReader, AnyReaderError
from tqdm import tqdm

from scaocc_core.deploy.backends import BACKENDS
from scaocc_ros.params import ParamError, from_yaml
from scaocc_ros.pipeline import CameraSetPipeline, StartupError, load_predictor
from scaocc_ros.set_outputs import SetOutputs
from scaocc_ros.tools import ros_types
from scaocc_ros.tools.bag_synth import BagWriter

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
OUTPUT_NAMESPACE = "/occ_node"
#: Output name -> message type of its topic.
OUTPUT_TYPES = {"voxels": "scaocc_msgs/msg/SemanticVoxelGrid", "points": "sensor_msgs/msg/PointCloud2",
                "obstacles": "sensor_msgs/msg/PointCloud2", "markers": "visualization_msgs/msg/MarkerArray",
                "bev": "nav_msgs/msg/OccupancyGrid",
                "calibration_offsets": "scaocc_msgs/msg/CameraCalibrationOffsetArray"}


class BagInferError(RuntimeError):
    """The bag cannot be used with these parameters (the message says why)."""


@dataclass
class InferCounts:
    """What one run read and wrote."""

    images: int = 0
    sets: int = 0


def topics(pipeline: CameraSetPipeline) -> tuple[dict[str, str], dict[str, str]]:
    """Image topic -> camera and CameraInfo topic -> camera, as the node subscribes them."""
    return ({t: c for c, t in pipeline.image_topics.items()}, {f"/{c}/camera_info": c for c in pipeline.names})


def write_outputs(writer: BagWriter, out: SetOutputs, log_time_ns: int) -> None:
    """Write the outputs of one set under :data:`OUTPUT_NAMESPACE`."""
    for name, msg in out.messages().items():
        writer.write(f"{OUTPUT_NAMESPACE}/{name}", msg, log_time_ns, OUTPUT_TYPES[name])


def infer_bag(bag: Path, out: Path, pipeline: CameraSetPipeline, overwrite: bool = False) -> InferCounts:
    """Run ``pipeline`` over ``bag`` and write the outputs to ``out``; returns the counts."""
    images, infos = topics(pipeline)
    counts = InferCounts()
    with AnyReader([Path(bag)], default_typestore=ros_types.typestore()) as reader, \
            BagWriter(out, overwrite) as writer:
        p = pipeline.params
        tf_topics = {"/tf_static"} | ({"/tf"} if p.motion_compensation or p.output_frame else set())
        wanted = [c for c in reader.connections if c.topic in images or c.topic in infos or c.topic in tf_topics]
        missing = sorted(set(images) - {c.topic for c in wanted})
        if len(missing) == len(images):
            raise BagInferError(f"{bag} has none of the image topics {sorted(images)} "
                                f"(image_transport {pipeline.params.image_transport!r}); it has "
                                f"{sorted({c.topic for c in reader.connections})}")
        if missing:
            log.warning("the bag lacks %s: those cameras count as missing", missing)
        total = sum(c.msgcount for c in wanted)
        for conn, log_time, raw in tqdm(reader.messages(connections=wanted), total=total, desc="infer",
                                        unit="msg", file=sys.stderr):
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic in tf_topics:
                (pipeline.on_tf_static if conn.topic == "/tf_static" else pipeline.on_tf)(msg)
                continue
            if conn.topic in infos:
                sets = pipeline.on_camera_info(infos[conn.topic], msg, log_time)
            else:
                counts.images += 1
                sets = pipeline.on_image(images[conn.topic], msg, log_time)
            for s in sets:
                result = pipeline.infer(s)
                if result is not None:
                    write_outputs(writer, result, log_time)
                    counts.sets += 1
    return counts


def parse_param(text: str) -> tuple[str, Any]:
    """``NAME:=VALUE`` (the value read as YAML, as ``ros2 run ... -p`` does) -> ``(NAME, value)``."""
    name, sep, value = text.partition(":=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME:=VALUE, got {text!r}")
    return name, yaml.safe_load(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``scaocc bag infer``."""
    parser.add_argument("bag", type=Path, help="input bag (directory or .mcap)")
    parser.add_argument("--out", type=Path, required=True, help="output bag directory to create")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--params", type=Path, default=ROOT / "config/occ_node.yaml",
                        help="node parameters YAML (ros__parameters format), as for scaocc node")
    parser.add_argument("-p", "--param", dest="overrides", type=parse_param, action="append", default=[],
                        metavar="NAME:=VALUE", help="override one node parameter (repeatable)")
    parser.add_argument("--checkpoint", help="model (.pt, or .onnx for onnxruntime), shorthand for "
                                             "-p model_path:=PATH; default: random weights of model_config")
    parser.add_argument("--model-config", help="shorthand for -p model_config:=PATH (random weights)")
    parser.add_argument("--backend", choices=BACKENDS, help="shorthand for -p backend:=NAME")
    parser.add_argument("--device", help="shorthand for -p device:=NAME")
    parser.add_argument("--image-transport", choices=("raw", "compressed", "auto"), default="auto",
                        help="auto: compressed if the bag has <cam>/image/compressed topics")


def overrides_of(args: argparse.Namespace) -> dict[str, Any]:
    """The parameter overrides the arguments ask for (``image_transport`` auto is looked up in the bag)."""
    overrides = dict(args.overrides)
    for name, value in (("model_path", args.checkpoint), ("model_config", args.model_config),
                        ("backend", args.backend), ("device", args.device)):
        if value is not None:
            overrides[name] = str(value)
    if args.image_transport == "auto":
        with AnyReader([args.bag], default_typestore=ros_types.typestore()) as reader:
            compressed = any(c.topic.endswith("/image/compressed") for c in reader.connections)
        overrides.setdefault("image_transport", "compressed" if compressed else "raw")
    else:
        overrides["image_transport"] = args.image_transport
    return overrides


def run(args: argparse.Namespace) -> int:
    """Entry point of ``scaocc bag infer``."""
    last_problem: list[str] = []

    def warn(text: str) -> None:
        log.warning(text)
        last_problem[:] = [text]

    try:
        params = from_yaml(args.params, overrides_of(args))
        predictor, _ = load_predictor(params)
        model = (f"checkpoint {params.model_path}" if params.model_path
                 else f"RANDOM WEIGHTS of {params.model_config} (no --checkpoint)")
        print(f"model: {model}", file=sys.stderr)
        pipeline = CameraSetPipeline(predictor, params, ros_types.serialize, warn)
        counts = infer_bag(args.bag, args.out, pipeline, args.overwrite)
    except (BagInferError, ParamError, StartupError, FileExistsError, FileNotFoundError) as exc:
        print(f"scaocc bag infer: {exc}", file=sys.stderr)
        return 1
    except AnyReaderError as exc:
        print(f"scaocc bag infer: cannot read {args.bag} (truncated or corrupt?): {exc}", file=sys.stderr)
        return 1
    report = pipeline.stats.report(0)
    print(f"wrote {args.out}: {counts.sets} camera sets inferred from {counts.images} images "
          f"({params.image_transport}), {report.sets_skipped} skipped, {report.malformed_total} malformed messages; "
          f"model: {model}")
    if counts.sets == 0:  # a run that produced nothing is a failure, with the reason
        why = f"; last problem: {last_problem[0]}" if last_problem else ""
        print(f"scaocc bag infer: no camera set was inferred from {counts.images} images{why}", file=sys.stderr)
        return 1
    return 0
