"""The outputs of one camera set: which are built, in which frame, and from which classes (no rclpy).

:func:`build_outputs` turns one :class:`~scaocc_core.predictor.Prediction` into
:class:`SetOutputs` as the parameters say: the output switches (``publish_<name>``), the
ground classes left out of ``~/obstacles``, the drivable classes of ``~/bev``, and the frame
of the planner-facing outputs (``~/voxels``, ``~/points``, ``~/obstacles``, ``~/bev``: the ego
frame, or a fixed frame through ``frame_T_ego``). Markers and calibration offsets stay in
the ego frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from nav_msgs.msg import OccupancyGrid
from scaocc_msgs.msg import CameraCalibrationOffsetArray, SemanticVoxelGrid
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from scaocc_core.config import GridConfig
from scaocc_core.predictor import Prediction
from scaocc_ros import outputs
from scaocc_ros.params import NodeParams, ParamError

#: Output name (topic ``~/<name>``) of every output, in publishing order.
OUTPUT_NAMES = ("voxels", "points", "obstacles", "markers", "bev", "calibration_offsets")


@dataclass
class SetOutputs:
    """The node's outputs for one camera set, stamped with its newest image's stamp; an output
    switched off (``publish_<name>: false``) is ``None``."""

    stamp_ns: int
    prediction: Prediction
    voxels: SemanticVoxelGrid | None
    points: PointCloud2 | None
    obstacles: PointCloud2 | None  # points without the ground classes
    markers: bytes | None  # serialised MarkerArray; None when not asked for
    bev: OccupancyGrid | None
    calibration_offsets: CameraCalibrationOffsetArray | None

    def messages(self) -> dict[str, Any]:
        """Output name (the topic under the node's namespace) -> message; markers as CDR bytes."""
        out = {name: getattr(self, name) for name in OUTPUT_NAMES}
        return {name: msg for name, msg in out.items() if msg is not None}


def class_ids(class_names: Sequence[str], params: NodeParams) -> tuple[list[int], list[int]]:
    """Ids of ``ground_classes`` and ``drivable_classes`` among the model's ``class_names``;
    raises :class:`~scaocc_ros.params.ParamError` naming an unknown class."""
    names = list(class_names)
    ids = []
    for key in ("ground_classes", "drivable_classes"):
        unknown = [c for c in getattr(params, key) if c not in names]
        if unknown:
            raise ParamError(f"parameter {key}: {unknown} are not classes of the model ({names})")
        ids.append([names.index(c) for c in getattr(params, key)])
    return ids[0], ids[1]


def build_outputs(pred: Prediction, stamp_ns: int, grid: GridConfig, class_names: Sequence[str],
                  params: NodeParams, camera_frames: Sequence[str], frame_T_ego: np.ndarray | None,
                  shown: set[int] | None, serialize: Callable[[MarkerArray], bytes]) -> tuple[SetOutputs, set[int]]:
    """Every switched-on output of one prediction (see the module docstring) and the classes the
    markers now show; markers are built only when ``shown`` (the classes of the previous markers,
    whose vanished ones get deleted) is given. ``frame_T_ego`` (``None``: the ego frame) places
    the planner-facing outputs in ``params.output_frame``."""
    p = params
    stamp = Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
    header = Header(stamp=stamp, frame_id=p.ego_frame)
    out_header = header if frame_T_ego is None else Header(stamp=stamp, frame_id=p.output_frame)
    ground, drivable = class_ids(class_names, p)
    marker_bytes, now_shown = None, set() if shown is None else shown
    if shown is not None and p.publish_markers:
        marker_bytes, now_shown = outputs.marker_array_cdr(pred, grid, header, shown, serialize)
    return SetOutputs(
        stamp_ns, pred,
        outputs.voxel_grid_msg(pred, grid, class_names, out_header, frame_T_ego=frame_T_ego)
        if p.publish_voxels else None,
        outputs.point_cloud_msg(pred, grid, out_header, frame_T_ego=frame_T_ego) if p.publish_points else None,
        outputs.point_cloud_msg(pred, grid, out_header, exclude=ground, frame_T_ego=frame_T_ego)
        if p.publish_obstacles else None,
        marker_bytes,
        outputs.bev_msg(pred, grid, out_header, drivable=drivable, frame_T_ego=frame_T_ego) if p.publish_bev else None,
        outputs.calibration_msg(pred, header, camera_frames) if p.publish_calibration_offsets else None), now_shown
