"""Pure functions: a :class:`~scaocc_core.predictor.Prediction` -> the node's output messages.

Every message copies the given ``header`` (the input set's stamp, the ego frame). Voxel
``(x, y, z)`` of a grid ``[x, y, z]`` has its centre at ``lower + ((x, y, z) + 0.5) * voxel``.
With ``frame_T_ego`` (the header then names a fixed frame such as odom), points are
transformed, the voxel grid's ``origin`` becomes the grid corner's pose in that frame, and the
BEV is resampled onto cells aligned with that frame (what Nav2 and Autoware expect of a map).
"""

from __future__ import annotations

import array
import math
from collections.abc import Callable, Collection, Sequence

import numpy as np
from geometry_msgs.msg import Point, Pose, Vector3
from nav_msgs.msg import OccupancyGrid
from scaocc_msgs.msg import CameraCalibrationOffset, CameraCalibrationOffsetArray, SemanticVoxelGrid
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from scaocc_core.config import GridConfig
from scaocc_core.grid import CLASS_NAMES, FREE, PALETTE
from scaocc_core.predictor import Prediction
from scaocc_ros.calibration import offset_magnitudes
from scaocc_ros.motion import rotation_to_xyzw

#: The class whose columns are drivable in the BEV grid.
DRIVABLE = CLASS_NAMES.index("driveable_surface")

#: PointCloud2 point layout (little-endian, 24 bytes): x y z confidence rgb label + 3 pad bytes.
POINT_DTYPE = np.dtype(
    {
        "names": ["x", "y", "z", "confidence", "rgb", "label"],
        "formats": ["<f4", "<f4", "<f4", "<f4", "<f4", "u1"],
        "offsets": [0, 4, 8, 12, 16, 20],
        "itemsize": 24,
    }
)
_POINT_FIELDS = [
    PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
    PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
    PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
    PointField(name="confidence", offset=12, datatype=PointField.FLOAT32, count=1),
    PointField(name="rgb", offset=16, datatype=PointField.FLOAT32, count=1),
    PointField(name="label", offset=20, datatype=PointField.UINT8, count=1),
]


def _u8(values: np.ndarray) -> array.array:
    """A uint8 array as the ``array('B')`` rclpy stores for ``uint8[]`` (one memory copy)."""
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(values, dtype=np.uint8).tobytes())
    return out


def cubic_voxel_size(grid: GridConfig) -> float:
    """The grid's voxel edge; raises ``ValueError`` for non-cubic voxels (the message has one size)."""
    vx, vy, vz = grid.voxel_size
    if not (np.isclose(vx, vy) and np.isclose(vx, vz)):
        raise ValueError(f"SemanticVoxelGrid needs cubic voxels, the model's grid has {grid.voxel_size}")
    return float(vx)


def occupied_voxels(labels: np.ndarray, grid: GridConfig, free: int = FREE) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``m 3`` (x, y, z) and ego centres ``m 3`` of every non-free voxel of ``X Y Z`` labels."""
    idx = np.argwhere(labels != free)  # m 3, C order: x-major
    centres = np.asarray(grid.lower) + (idx + 0.5) * np.asarray(grid.voxel_size)  # m 3
    return idx, centres


def pose_msg(T: np.ndarray) -> Pose:
    """``geometry_msgs/Pose`` of a 4x4 rigid transform."""
    pose = Pose()
    pose.position = Point(x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3]))
    x, y, z, w = rotation_to_xyzw(T[:3, :3]).tolist()
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = x, y, z, w
    return pose


def voxel_grid_msg(pred: Prediction, grid: GridConfig, class_names: Sequence[str], header: Header,
                   free: int = FREE, frame_T_ego: np.ndarray | None = None) -> SemanticVoxelGrid:
    """The dense ``SemanticVoxelGrid`` (labels and confidence in C order ``[x][y][z]``)."""
    if pred.labels.shape != tuple(grid.size):
        raise ValueError(f"prediction labels {pred.labels.shape} do not match the grid {grid.size}")
    msg = SemanticVoxelGrid(header=header, voxel_size=cubic_voxel_size(grid), free_label=free)
    corner = np.eye(4)
    corner[:3, 3] = grid.lower
    msg.origin = pose_msg(corner if frame_T_ego is None else frame_T_ego @ corner)
    msg.size_x, msg.size_y, msg.size_z = (int(n) for n in grid.size)
    msg.class_names = list(class_names)
    msg.labels = _u8(pred.labels.ravel(order="C"))  # index = (x * size_y + y) * size_z + z
    msg.confidence = _u8(pred.confidence.ravel(order="C")) if pred.confidence.size else array.array("B")
    return msg


def pack_rgb(colors: np.ndarray) -> np.ndarray:
    """``m 3`` uint8 RGB -> ``m`` float32 whose bits are ``0x00RRGGBB`` (RViz's ``rgb`` field)."""
    c = colors.astype(np.uint32)
    return ((c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]).view(np.float32)


def point_cloud_msg(pred: Prediction, grid: GridConfig, header: Header, free: int = FREE,
                    palette: np.ndarray = PALETTE, exclude: Collection[int] = (),
                    frame_T_ego: np.ndarray | None = None) -> PointCloud2:
    """Occupied (non-free) voxel centres with ``label``, ``confidence`` in [0, 1] and ``rgb``;
    classes in ``exclude`` are left out (``~/obstacles`` leaves out the ground classes)."""
    idx, centres = occupied_voxels(pred.labels, grid, free)
    labels = pred.labels[idx[:, 0], idx[:, 1], idx[:, 2]]
    if len(exclude):
        keep = ~np.isin(labels, np.fromiter(exclude, dtype=np.int64))
        idx, centres, labels = idx[keep], centres[keep], labels[keep]
    if frame_T_ego is not None:
        centres = centres @ frame_T_ego[:3, :3].T + frame_T_ego[:3, 3]
    points = np.zeros(len(idx), dtype=POINT_DTYPE)
    points["x"], points["y"], points["z"] = centres[:, 0], centres[:, 1], centres[:, 2]
    points["confidence"] = pred.confidence[idx[:, 0], idx[:, 1], idx[:, 2]] / np.float32(255.0)
    points["rgb"] = pack_rgb(palette[labels])
    points["label"] = labels
    msg = PointCloud2(header=header, height=1, width=len(points), is_bigendian=False,
                      point_step=POINT_DTYPE.itemsize, row_step=POINT_DTYPE.itemsize * len(points),
                      is_dense=True)
    msg.fields = list(_POINT_FIELDS)
    msg.data = _u8(points.view(np.uint8))
    return msg


def _class_centres(pred: Prediction, grid: GridConfig, free: int) -> dict[int, np.ndarray]:
    """Ego centres ``m 3`` (float64, C order x-major) of the voxels of each present non-free class."""
    idx, centres = occupied_voxels(pred.labels, grid, free)
    labels = pred.labels[idx[:, 0], idx[:, 1], idx[:, 2]]
    return {int(c): centres[labels == c] for c in np.unique(labels)}


def _cube_list(header: Header, ns: str, cls: int, grid: GridConfig, palette: np.ndarray,
               points: list[Point]) -> Marker:
    """One ``CUBE_LIST`` marker of class ``cls`` in its Occ3D colour."""
    m = Marker(header=header, ns=ns, id=cls, type=Marker.CUBE_LIST, action=Marker.ADD)
    m.pose.orientation.w = 1.0
    sx, sy, sz = grid.voxel_size
    m.scale = Vector3(x=float(sx), y=float(sy), z=float(sz))
    r, g, b = (float(v) / 255.0 for v in palette[cls])
    m.color = ColorRGBA(r=r, g=g, b=b, a=1.0)
    m.points = points
    return m


def marker_array_msg(pred: Prediction, grid: GridConfig, header: Header, previous: set[int],
                     free: int = FREE, palette: np.ndarray = PALETTE, ns: str = "occupancy",
                     ) -> tuple[MarkerArray, set[int]]:
    """One ``CUBE_LIST`` per present class (id = class id, Occ3D colour), plus ``DELETE`` for
    the classes of ``previous`` that vanished. Returns the array and the classes now shown.

    One Python ``Point`` per voxel (~2 us each): the reference for :func:`marker_array_cdr`."""
    out = MarkerArray()
    centres = _class_centres(pred, grid, free)
    for cls, xyz in centres.items():
        points = [Point(x=x, y=y, z=z) for x, y, z in xyz.tolist()]
        out.markers.append(_cube_list(header, ns, cls, grid, palette, points))
    for cls in sorted(previous - centres.keys()):
        out.markers.append(Marker(header=header, ns=ns, id=cls, action=Marker.DELETE))
    return out, set(centres)


#: Placeholder point whose 24 CDR bytes :func:`marker_array_cdr` finds and replaces.
_PLACEHOLDER = (-1.2345678901234567e300, 7.654321e-300, -3.3e299)


def marker_array_cdr(pred: Prediction, grid: GridConfig, header: Header, previous: set[int],
                     serialize: Callable[[MarkerArray], bytes], free: int = FREE, palette: np.ndarray = PALETTE,
                     ns: str = "occupancy") -> tuple[bytes, set[int]]:
    """:func:`marker_array_msg` serialised (CDR bytes, which ``Publisher.publish`` sends and a
    bag stores as they are), the same message as it decodes, but built without a Python
    object per voxel. ``serialize`` is any CDR serialiser with the encapsulation header
    (rclpy's ``serialize_message`` in the node, :func:`scaocc_ros.tools.ros_types.serialize`
    in the bag tools, which run without rclpy).

    Each marker is serialised holding one placeholder point; its sequence length
    (``uint32``, then 0 or 4 pad bytes to the 8-aligned doubles) becomes ``m`` and the
    placeholder's 24 bytes become the class's ``m 3`` float64 centres. Growing a sequence by a
    multiple of 8 bytes keeps every later field's alignment, so the rest of the bytes stay valid.
    """
    centres = _class_centres(pred, grid, free)
    out = MarkerArray()
    for cls in centres:
        out.markers.append(_cube_list(header, ns, cls, grid, palette, [Point(x=_PLACEHOLDER[0],
                           y=_PLACEHOLDER[1], z=_PLACEHOLDER[2])]))
    for cls in sorted(previous - centres.keys()):
        out.markers.append(Marker(header=header, ns=ns, id=cls, action=Marker.DELETE))
    data = bytes(serialize(out))
    tag = np.array(_PLACEHOLDER, "<f8").tobytes()
    parts, pos = [], 0
    one = np.array([1], "<u4").tobytes()
    for xyz in centres.values():
        at = data.index(tag, pos)
        count = at - 4 if data[at - 4:at] == one else at - 8
        if data[count:count + 4] != one:
            raise RuntimeError("unexpected CDR layout of visualization_msgs/Marker.points")
        parts += [data[pos:count], np.array([len(xyz)], "<u4").tobytes(), data[count + 4:at],
                  np.ascontiguousarray(xyz, "<f8").tobytes()]
        pos = at + len(tag)
    parts.append(data[pos:])
    return b"".join(parts), set(centres)


def bev_values(labels: np.ndarray, free: int = FREE, drivable: Collection[int] = (DRIVABLE,)) -> np.ndarray:
    """``X Y`` int8 BEV of ``X Y Z`` labels in Nav2's convention: 100 (lethal) where the column
    holds any non-free class not in ``drivable`` (objects, and ground one must not drive on), 0
    (free) where it holds only ``drivable`` classes (and free), -1 (unknown) where it is all free."""
    is_drivable = np.isin(labels, np.fromiter(drivable, dtype=np.int64))
    occupied = ((labels != free) & ~is_drivable).any(axis=2)  # X Y
    road = is_drivable.any(axis=2)  # X Y
    bev = np.full(labels.shape[:2], -1, dtype=np.int8)
    bev[road] = 0
    bev[occupied] = 100
    return bev


def resample_bev(bev: np.ndarray, grid: GridConfig, frame_T_ego: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``bev`` (``X Y``, ego cells) on cells of the same size and count aligned with a fixed
    frame, centred on the grid's centre and snapped to multiples of the resolution (nearest
    cell; the ego yaw only, the ground plane assumed level). Returns the grid and its corner
    ``(x, y)`` in the fixed frame; cells outside the ego grid are -1 (unknown)."""
    res = float(grid.voxel_size[0])
    n = np.array(bev.shape)
    lower = np.asarray(grid.lower[:2], dtype=np.float64)
    yaw = math.atan2(frame_T_ego[1, 0], frame_T_ego[0, 0])
    R = np.array([[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]])
    centre = R @ (lower + n * res / 2) + frame_T_ego[:2, 3]
    corner = np.floor((centre - n * res / 2) / res) * res
    ij = np.stack(np.meshgrid(np.arange(n[0]), np.arange(n[1]), indexing="ij"), axis=-1)  # X Y 2
    ego = (corner + (ij + 0.5) * res - frame_T_ego[:2, 3]) @ R  # R^T applied to each row
    src = np.floor((ego - lower) / res).astype(np.int64)
    inside = (src >= 0).all(axis=-1) & (src < n).all(axis=-1)
    out = np.full(bev.shape, -1, dtype=np.int8)
    out[inside] = bev[src[inside][:, 0], src[inside][:, 1]]
    return out, corner


def bev_msg(pred: Prediction, grid: GridConfig, header: Header, free: int = FREE,
            drivable: Collection[int] = (DRIVABLE,), frame_T_ego: np.ndarray | None = None) -> OccupancyGrid:
    """``nav_msgs/OccupancyGrid``: cell (x, y) at ``data[y * width + x]``, origin the grid corner
    (in the ego frame, or resampled onto a fixed frame's axes with ``frame_T_ego``)."""
    bev = bev_values(pred.labels, free, drivable)  # X Y
    corner = np.asarray(grid.lower[:2], dtype=np.float64)
    if frame_T_ego is not None:
        bev, corner = resample_bev(bev, grid, frame_T_ego)
    msg = OccupancyGrid(header=header)
    msg.info.map_load_time = header.stamp
    msg.info.resolution = float(grid.voxel_size[0])
    msg.info.width, msg.info.height = int(grid.size[0]), int(grid.size[1])
    msg.info.origin.position = Point(x=float(corner[0]), y=float(corner[1]), z=0.0)
    msg.info.origin.orientation.w = 1.0
    data = array.array("b")
    data.frombytes(np.ascontiguousarray(bev.T).tobytes())  # Y X: rows of constant y
    msg.data = data
    return msg


def calibration_msg(pred: Prediction, header: Header, frame_ids: Sequence[str]) -> CameraCalibrationOffsetArray:
    """The learnt per-camera corrections (axis-angle rad, metres) and their magnitudes."""
    rot = np.asarray(pred.rotation_offsets, dtype=np.float64)  # n 3
    trans = np.asarray(pred.translation_offsets, dtype=np.float64)  # n 3
    if len(frame_ids) != len(rot):
        raise ValueError(f"{len(frame_ids)} camera frames for {len(rot)} offsets")
    deg, metres = offset_magnitudes(rot, trans)
    msg = CameraCalibrationOffsetArray(header=header)
    for i, frame in enumerate(frame_ids):
        msg.offsets.append(CameraCalibrationOffset(
            frame_id=frame,
            rotation=Vector3(x=float(rot[i, 0]), y=float(rot[i, 1]), z=float(rot[i, 2])),
            translation=Vector3(x=float(trans[i, 0]), y=float(trans[i, 1]), z=float(trans[i, 2])),
            rotation_deg=float(deg[i]), translation_m=float(metres[i]),
        ))
    return msg
