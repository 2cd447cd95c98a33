"""Output messages serialised by rclpy and decoded by rosbags (an independent CDR implementation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from scaocc_core.config import GridConfig
from scaocc_core.grid import CLASS_NAMES, FREE, PALETTE
from scaocc_core.predictor import Prediction
from scaocc_ros import outputs
from scaocc_ros.tools import ros_types

MSG_DIR = Path(__file__).resolve().parents[2] / "msg"
GRID = GridConfig(lower=(-4.0, -2.0, -1.0), upper=(4.0, 2.0, 1.4), size=(20, 10, 6))  # 0.4 m voxels
HEADER = Header(stamp=Time(sec=1532402927, nanosec=612460000), frame_id="base_link")


@pytest.fixture(scope="module")
def typestore():  # type: ignore[no-untyped-def]
    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for name in ("CameraCalibrationOffset", "CameraCalibrationOffsetArray", "SemanticVoxelGrid"):
        types.update(get_types_from_msg((MSG_DIR / f"{name}.msg").read_text(), f"scaocc_msgs/msg/{name}"))
    store.register(types)
    return store


def make_prediction(seed: int = 0) -> Prediction:
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random(GRID.size) < 0.8, FREE, rng.integers(0, 17, GRID.size)).astype(np.uint8)
    return Prediction(
        labels=labels,
        confidence=rng.integers(0, 256, GRID.size, dtype=np.uint8),
        rotation_offsets=rng.normal(0, 0.01, (6, 3)),
        translation_offsets=rng.normal(0, 0.05, (6, 3)),
    )


def roundtrip(store, msg, typename: str):  # type: ignore[no-untyped-def]
    return store.deserialize_cdr(bytes(serialize_message(msg)), typename)


def test_voxel_grid_decodes_to_the_prediction(typestore) -> None:  # type: ignore[no-untyped-def]
    pred = make_prediction()
    out = roundtrip(typestore, outputs.voxel_grid_msg(pred, GRID, CLASS_NAMES, HEADER),
                    "scaocc_msgs/msg/SemanticVoxelGrid")
    assert (out.header.stamp.sec, out.header.stamp.nanosec, out.header.frame_id) == (1532402927, 612460000,
                                                                                       "base_link")
    assert (out.size_x, out.size_y, out.size_z) == (20, 10, 6)
    assert out.voxel_size == pytest.approx(0.4) and out.free_label == FREE
    assert list(out.class_names) == list(CLASS_NAMES)
    assert (out.origin.position.x, out.origin.position.y, out.origin.position.z) == (-4.0, -2.0, -1.0)
    labels = np.asarray(out.labels)
    # The documented index: (x * size_y + y) * size_z + z.
    for x, y, z in [(0, 0, 0), (3, 7, 2), (19, 9, 5), (11, 0, 4)]:
        assert labels[(x * 10 + y) * 6 + z] == pred.labels[x, y, z]
    np.testing.assert_array_equal(labels.reshape(20, 10, 6), pred.labels)
    np.testing.assert_array_equal(np.asarray(out.confidence).reshape(20, 10, 6), pred.confidence)


def test_point_cloud_decodes_to_the_occupied_voxels(typestore) -> None:  # type: ignore[no-untyped-def]
    pred = make_prediction(1)
    out = roundtrip(typestore, outputs.point_cloud_msg(pred, GRID, HEADER), "sensor_msgs/msg/PointCloud2")
    # Decode from the declared fields only (datatype 7 = FLOAT32, 2 = UINT8).
    types = {7: "<f4", 2: "u1"}
    dtype = np.dtype({"names": [f.name for f in out.fields], "formats": [types[f.datatype] for f in out.fields],
                      "offsets": [f.offset for f in out.fields], "itemsize": out.point_step})
    pts = np.frombuffer(np.asarray(out.data, dtype=np.uint8).tobytes(), dtype=dtype)
    assert out.width == len(pts) and out.height == 1 and not out.is_bigendian
    expected = []
    for x in range(20):
        for y in range(10):
            for z in range(6):
                if pred.labels[x, y, z] != FREE:
                    centre = (-4.0 + 0.4 * (x + 0.5), -2.0 + 0.4 * (y + 0.5), -1.0 + 0.4 * (z + 0.5))
                    expected.append((*centre, pred.labels[x, y, z], pred.confidence[x, y, z]))
    exp = np.array(expected)
    assert len(pts) == len(exp) > 0
    np.testing.assert_allclose(np.stack([pts["x"], pts["y"], pts["z"]], 1), exp[:, :3], atol=1e-5)
    np.testing.assert_array_equal(pts["label"], exp[:, 3])
    np.testing.assert_allclose(pts["confidence"], exp[:, 4] / 255, atol=1e-6)
    rgb = pts["rgb"].view(np.uint32)
    colours = np.stack([(rgb >> 16) & 255, (rgb >> 8) & 255, rgb & 255], 1)
    np.testing.assert_array_equal(colours, PALETTE[exp[:, 3].astype(int)])


def test_markers_one_cube_list_per_class_and_deletes(typestore) -> None:  # type: ignore[no-untyped-def]
    pred = make_prediction(2)
    msg, shown = outputs.marker_array_msg(pred, GRID, HEADER, previous={17 - 1, 3})
    present = set(np.unique(pred.labels[pred.labels != FREE]).tolist())
    assert shown == present
    out = roundtrip(typestore, msg, "visualization_msgs/msg/MarkerArray")
    adds = [m for m in out.markers if m.action == 0]
    deletes = [m.id for m in out.markers if m.action == 2]
    assert sorted(m.id for m in adds) == sorted(present)
    assert deletes == sorted({16, 3} - present)
    for m in adds:
        assert m.type == 6 and len(m.points) == int((pred.labels == m.id).sum())
        assert (m.color.r, m.color.g, m.color.b) == pytest.approx(tuple(PALETTE[m.id] / 255))
    later, _ = outputs.marker_array_msg(
        Prediction(np.full(GRID.size, FREE, np.uint8), np.zeros(GRID.size, np.uint8), np.zeros((6, 3)),
                   np.zeros((6, 3))), GRID, HEADER, previous=shown)
    assert sorted(m.id for m in later.markers if m.action == 2) == sorted(present)


#: The two serialisers the markers are built with: rclpy's (the node) and rosbags' (bag infer).
SERIALIZERS = {"rclpy": serialize_message, "rosbags": ros_types.serialize}


@pytest.mark.parametrize("serializer", sorted(SERIALIZERS))
@pytest.mark.parametrize("seed, previous", [(2, {16, 3}), (5, set()), (7, {0, 1, 2, 15})])
def test_fast_markers_decode_to_the_reference(typestore, seed: int, previous: set[int],  # type: ignore[no-untyped-def]
                                              serializer: str) -> None:
    pred = make_prediction(seed)
    pred.labels[0, 0, 0] = 9  # a class with a single voxel, next to classes with many
    pred.labels[pred.labels == 11] = FREE  # a class that vanished
    reference, shown_ref = outputs.marker_array_msg(pred, GRID, HEADER, previous)
    data, shown = outputs.marker_array_cdr(pred, GRID, HEADER, previous, SERIALIZERS[serializer])
    assert shown == shown_ref
    expected = serialize_message(reference)
    assert len(data) == len(expected)  # the padding bytes are unspecified in CDR: compare decoded messages
    assert deserialize_message(data, MarkerArray) == deserialize_message(expected, MarkerArray)
    out = typestore.deserialize_cdr(data, "visualization_msgs/msg/MarkerArray")
    for m in (m for m in out.markers if m.action == 0):
        exp = np.argwhere(pred.labels == m.id) * 0.4 + np.array(GRID.lower) + 0.2
        np.testing.assert_allclose([(p.x, p.y, p.z) for p in m.points], exp, atol=1e-9)


@pytest.mark.parametrize("serializer", sorted(SERIALIZERS))
def test_fast_markers_with_nothing_occupied(serializer: str) -> None:
    empty = Prediction(np.full(GRID.size, FREE, np.uint8), np.zeros(GRID.size, np.uint8), np.zeros((6, 3)),
                       np.zeros((6, 3)))
    data, shown = outputs.marker_array_cdr(empty, GRID, HEADER, {4}, SERIALIZERS[serializer])
    assert shown == set()
    expected = serialize_message(outputs.marker_array_msg(empty, GRID, HEADER, {4})[0])
    assert deserialize_message(data, MarkerArray) == deserialize_message(expected, MarkerArray)


def test_bev_cells(typestore) -> None:  # type: ignore[no-untyped-def]
    labels = np.full(GRID.size, FREE, np.uint8)
    labels[2, 3, 0] = outputs.DRIVABLE  # road only -> 0
    labels[5, 1, 0] = outputs.DRIVABLE
    labels[5, 1, 3] = CLASS_NAMES.index("car")  # car above road -> 100
    labels[7, 8, 0] = CLASS_NAMES.index("sidewalk")  # not drivable -> 100
    pred = Prediction(labels, np.zeros(GRID.size, np.uint8), np.zeros((6, 3)), np.zeros((6, 3)))
    out = roundtrip(typestore, outputs.bev_msg(pred, GRID, HEADER), "nav_msgs/msg/OccupancyGrid")
    assert (out.info.width, out.info.height) == (20, 10) and out.info.resolution == pytest.approx(0.4)
    data = np.asarray(out.data, dtype=np.int8)
    cell = {(x, y): data[y * 20 + x] for x in range(20) for y in range(10)}
    assert cell[(2, 3)] == 0 and cell[(5, 1)] == 100 and cell[(7, 8)] == 100
    assert sum(v == -1 for v in cell.values()) == 200 - 3


def test_calibration_offsets(typestore) -> None:  # type: ignore[no-untyped-def]
    pred = make_prediction(3)
    frames = [f"cam{i}_optical" for i in range(6)]
    out = roundtrip(typestore, outputs.calibration_msg(pred, HEADER, frames),
                    "scaocc_msgs/msg/CameraCalibrationOffsetArray")
    assert [o.frame_id for o in out.offsets] == frames
    for o, r, t in zip(out.offsets, pred.rotation_offsets, pred.translation_offsets):
        assert (o.rotation.x, o.rotation.y, o.rotation.z) == pytest.approx(tuple(r))
        assert (o.translation.x, o.translation.y, o.translation.z) == pytest.approx(tuple(t))
        assert o.rotation_deg == pytest.approx(np.degrees(np.linalg.norm(r)))
        assert o.translation_m == pytest.approx(np.linalg.norm(t))


def test_non_cubic_grid_is_refused() -> None:
    with pytest.raises(ValueError, match="cubic"):
        outputs.cubic_voxel_size(GridConfig(lower=(0, 0, 0), upper=(1, 1, 1), size=(2, 2, 4)))
