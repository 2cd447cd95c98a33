"""The node's parameters: one dataclass (:class:`NodeParams`), validated, no ROS import.

``config/occ_node.yaml`` holds the same defaults (a test keeps them equal). The node
declares every field as a ROS parameter (:func:`scaocc_ros.node.declare_and_read`);
``scaocc bag infer`` reads the same file with :func:`from_yaml`. Per-camera extrinsics
``extrinsics.<camera>.{translation, rotation_xyzw, matrix}`` of the cameras named in
``camera_names`` become ``NodeParams.ego_T_cam`` (:func:`with_extrinsics`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from scaocc_ros.calibration import CalibrationError, extrinsics_from_values


class ParamError(ValueError):
    """A node parameter has an invalid value (the message names the parameter)."""


def _p(default: Any, help_text: str, choices: tuple[str, ...] = ()) -> Any:
    return field(default=default, metadata={"help": help_text, "choices": choices})


#: Occ3D's ground classes: not obstacles for a planner.
GROUND_CLASSES = ("driveable_surface", "other_flat", "sidewalk", "terrain")

NUSCENES_CAMERAS = (
    "cam_front_left", "cam_front", "cam_front_right", "cam_back_left", "cam_back", "cam_back_right",
)


@dataclass(frozen=True)
class NodeParams:
    """Everything ``occ_node`` is configured with (see ``config/occ_node.yaml``)."""

    model_path: str = _p("", "checkpoint (.pt, or the backend's engine file); empty = random weights "
                              "from model_config (demos and tests only)")
    model_config: str = _p("config/model/scaocc_tiny.yaml", "model YAML used when model_path is empty")
    device: str = _p("auto", "inference device: auto = cuda when available, else cpu (logged)", ("auto", "cpu", "cuda"))
    backend: str = _p("torch", "inference backend", ("torch", "onnxruntime", "tensorrt"))
    camera_names: tuple[str, ...] = _p(NUSCENES_CAMERAS, "cameras in the model's order; topics "
                                                         "<name>/image and <name>/camera_info")
    image_transport: str = _p("raw", "raw: sensor_msgs/Image on <cam>/image; compressed: "
                                     "sensor_msgs/CompressedImage on <cam>/image/compressed", ("raw", "compressed"))
    ego_frame: str = _p("base_link", "frame of every output (and root of the TF lookups)")
    extrinsics_source: str = _p("tf", "where ego_T_cam comes from: tf (/tf_static chain ego_frame -> the "
                                      "CameraInfo frame) or params (extrinsics.<camera>.*)", ("params", "tf"))
    distortion: str = _p("undistort", "non-zero CameraInfo distortion: undistort images or reject them",
                         ("undistort", "reject"))
    rectification: str = _p("auto", "rect: images are rectified (K from CameraInfo P, R; never undistorted); "
                                    "raw: undistorted once with K, D; auto: rect if the resolved image topic has "
                                    "a segment image_rect*, else raw", ("auto", "rect", "raw"))
    autostart: bool = _p(True, "configure and activate at start (plain mode); false: stay unconfigured until a "
                               "lifecycle manager (the launch file, ros2 lifecycle set) drives the transitions")
    motion_compensation: bool = _p(True, "express every camera in the ego frame at the set's stamp with the ego pose "
                                         "at each image's own stamp (/tf odom_frame -> ego_frame); static "
                                         "extrinsics, said in diagnostics, while /tf has no such pose")
    odom_frame: str = _p("odom", "fixed frame of the ego poses on /tf (motion compensation)")
    output_frame: str = _p("", "frame of ~/voxels, ~/points, ~/obstacles and ~/bev: empty = ego_frame; a fixed "
                               "frame (odom, map) is looked up on /tf at the set's stamp")
    tf_tolerance_s: float = _p(0.1, "how far past the newest /tf sample an ego pose is extrapolated (s)")
    ground_classes: tuple[str, ...] = _p(GROUND_CLASSES, "classes left out of ~/obstacles (the ground)")
    drivable_classes: tuple[str, ...] = _p(("driveable_surface",), "classes that make a ~/bev cell free (0) when "
                                                                   "its column holds no other non-free class")
    publish_voxels: bool = _p(True, "publish ~/voxels")
    publish_points: bool = _p(True, "publish ~/points")
    publish_obstacles: bool = _p(True, "publish ~/obstacles")
    publish_markers: bool = _p(True, "publish ~/markers (built only while someone subscribes)")
    publish_bev: bool = _p(True, "publish ~/bev")
    publish_calibration_offsets: bool = _p(True, "publish ~/calibration_offsets")
    sync_slop_s: float = _p(0.05, "largest stamp spread within one synchronised camera set (s)")
    sync_queue_size: int = _p(5, "messages queued per camera while waiting for a set")
    camera_timeout_s: float = _p(1.0, "a camera silent this long is dropped from the sets until it returns (s)")
    max_future_s: float = _p(0.5, "stamps further ahead of the node clock are malformed (s)")
    max_age_s: float = _p(5.0, "stamps older than this relative to the node clock are malformed (s)")
    min_cameras: int = _p(1, "fewest present cameras a set needs to be inferred")
    diagnostics_period_s: float = _p(1.0, "period of /diagnostics (s)")
    calibration_warn_deg: float = _p(1.0, "learnt rotation offset above which diagnostics warn (deg)")
    calibration_warn_m: float = _p(0.1, "learnt translation offset above which diagnostics warn (m)")
    max_image_pixels: int = _p(16_777_216, "images (and CameraInfo resolutions) with more pixels are rejected")
    max_message_bytes: int = _p(67_108_864, "image messages with more bytes of data are rejected")
    image_reliability: str = _p("reliable", "QoS reliability of the image and camera_info subscriptions "
                                            "(best_effort also matches best-effort publishers only)",
                                ("reliable", "best_effort"))
    image_qos_depth: int = _p(10, "QoS history depth of the image and camera_info subscriptions")
    warn_late_duplicate: int = _p(0, "late or duplicate images of one camera per diagnostics report above which "
                                     "the inputs status is WARN")
    warn_dropped: int = _p(0, "other dropped messages of one camera (malformed, oversize, undecodable, no TF chain) "
                              "per diagnostics report above which the inputs status is WARN")
    warn_period_s: float = _p(5.0, "one log line per camera and kind of problem per this period (s)")
    ego_T_cam: dict[str, np.ndarray] = field(default_factory=dict, metadata={"dynamic": True})

    def validate(self) -> NodeParams:
        """Raise :class:`ParamError` naming the first bad parameter; return ``self``."""
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ParamError(f"parameter {f.name}={getattr(self, f.name)!r} must be one of {list(choices)}")
        names = self.camera_names
        if not names or len(set(names)) != len(names):
            raise ParamError(f"camera_names must be non-empty and unique, got {list(names)}")
        bad = [n for n in names if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", n)]
        if bad:
            raise ParamError(f"camera_names {bad} are not valid ROS name tokens (letters, digits, _)")
        positive = ("sync_slop_s", "camera_timeout_s", "max_future_s", "max_age_s", "diagnostics_period_s",
                    "calibration_warn_deg", "calibration_warn_m")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ParamError(f"parameter {name} must be > 0, got {getattr(self, name)}")
        for name in ("max_image_pixels", "max_message_bytes", "image_qos_depth", "warn_period_s"):
            if not getattr(self, name) > 0:
                raise ParamError(f"parameter {name} must be > 0, got {getattr(self, name)}")
        if min(self.warn_late_duplicate, self.warn_dropped) < 0:
            raise ParamError("parameters warn_late_duplicate and warn_dropped must be >= 0")
        if self.sync_queue_size < 1:
            raise ParamError(f"parameter sync_queue_size must be >= 1, got {self.sync_queue_size}")
        if not 1 <= self.min_cameras <= len(names):
            raise ParamError(f"parameter min_cameras must be in 1..{len(names)}, got {self.min_cameras}")
        if not self.model_path and not self.model_config:
            raise ParamError("set model_path (a checkpoint) or model_config (random weights)")
        if not self.ego_frame:
            raise ParamError("parameter ego_frame must not be empty")
        for name in ("ground_classes", "drivable_classes"):
            if len(set(getattr(self, name))) != len(getattr(self, name)):
                raise ParamError(f"parameter {name} has repeated classes: {list(getattr(self, name))}")
        for name, (lo, hi) in RANGES.items():
            if not lo <= getattr(self, name) <= hi:
                raise ParamError(f"parameter {name} must be in [{lo}, {hi}], got {getattr(self, name)}")
        return self


def defaults() -> dict[str, Any]:
    """Declared parameter names -> default values (lists for tuples), as in the YAML file."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(NodeParams):
        if f.metadata.get("dynamic"):
            continue
        out[f.name] = list(f.default) if isinstance(f.default, tuple) else f.default
    return out


#: Parameters that may change while the node runs (``ros2 param set``); all others are read-only.
RUNTIME = frozenset({
    "sync_slop_s", "sync_queue_size", "camera_timeout_s", "max_future_s", "max_age_s", "min_cameras",
    "calibration_warn_deg", "calibration_warn_m", "tf_tolerance_s", "ground_classes", "drivable_classes",
    "publish_voxels", "publish_points", "publish_obstacles", "publish_markers", "publish_bev",
    "publish_calibration_offsets", "warn_late_duplicate", "warn_dropped",
})
#: Inclusive ranges of numeric parameters (the parameter descriptors carry them too).
RANGES: dict[str, tuple[float, float]] = {
    "sync_slop_s": (0.001, 1.0), "sync_queue_size": (1, 100), "camera_timeout_s": (0.01, 60.0),
    "max_future_s": (0.001, 60.0), "max_age_s": (0.001, 3600.0), "min_cameras": (1, 64),
    "diagnostics_period_s": (0.01, 60.0), "calibration_warn_deg": (0.001, 90.0), "calibration_warn_m": (0.001, 10.0),
    "tf_tolerance_s": (0.0, 1.0), "warn_late_duplicate": (0, 1_000_000), "warn_dropped": (0, 1_000_000),
    "image_qos_depth": (1, 1000),
}


EXTRINSIC_KEYS = ("translation", "rotation_xyzw", "matrix")


def with_extrinsics(params: NodeParams, raw: Mapping[str, Mapping[str, Sequence[float]]]) -> NodeParams:
    """``params`` with ``ego_T_cam`` of every camera from ``raw[camera][key]`` (keys of
    :data:`EXTRINSIC_KEYS`); only read when ``extrinsics_source`` is ``params``."""
    if params.extrinsics_source != "params":
        return params
    ego_T_cam: dict[str, np.ndarray] = {}
    for cam in params.camera_names:
        values = raw.get(cam) or {}
        try:
            ego_T_cam[cam] = extrinsics_from_values(cam, *(list(values.get(k) or []) for k in EXTRINSIC_KEYS))
        except CalibrationError as exc:
            raise ParamError(str(exc)) from exc
    return dataclasses.replace(params, ego_T_cam=ego_T_cam)


def from_yaml(path: str | Path, overrides: Mapping[str, Any] | None = None) -> NodeParams:
    """Validated parameters of a node parameters file (``occ_node.ros__parameters``), with
    ``overrides`` (name -> value) applied as ``-p name:=value`` would on the node."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
        values: dict[str, Any] = dict(doc["occ_node"]["ros__parameters"])
    except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise ParamError(f"cannot read node parameters from {path}: {exc}") from exc
    values.update(overrides or {})
    fields = {f.name: f for f in dataclasses.fields(NodeParams) if not f.metadata.get("dynamic")}
    unknown = sorted(set(overrides or {}) - set(fields))
    if unknown:
        raise ParamError(f"unknown parameters {unknown}; occ_node has {sorted(fields)}")
    known: dict[str, Any] = {k: tuple(v) if isinstance(fields[k].default, tuple) else v
                             for k, v in values.items() if k in fields}
    params = NodeParams(**known).validate()
    return with_extrinsics(params, values.get("extrinsics") or {})


def resolve_file(path: str, share_dir: Path | None) -> Path:
    """An existing file: ``path`` as given (absolute or from the working directory), else
    relative to the package's share directory, else relative to the repository root."""
    candidates = [Path(path)]
    if not Path(path).is_absolute():
        if share_dir is not None:
            candidates.append(share_dir / path)
        candidates.append(Path(__file__).resolve().parents[1] / path)
    for c in candidates:
        if c.is_file():
            return c
    raise ParamError(f"file {path!r} not found (looked in {[str(c) for c in candidates]})")
