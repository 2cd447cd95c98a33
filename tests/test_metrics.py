"""Occ3D metrics against a hand-computed example."""

from __future__ import annotations

import math

import numpy as np

from scaocc_core.grid import FREE
from scaocc_core.metrics import OccMetric


def test_hand_computed_example_with_camera_mask_and_absent_class():
    gt = np.array([4, 4, 4, 11, 11, FREE, FREE, 7, 4, 4]).reshape(1, 10, 1, 1)
    pred = np.array([4, 4, 11, 11, 4, FREE, 4, 7, 0, 0]).reshape(1, 10, 1, 1)
    mask = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=bool).reshape(1, 10, 1, 1)  # last two unseen
    m = OccMetric()
    m.update(pred, gt, mask)
    s = m.summary()
    # car (4): TP 2, FP 2 (idx 4, 6), FN 1 (idx 2) -> 2/5
    assert math.isclose(s["per_class"]["car"], 2 / 5)
    # driveable_surface (11): TP 1, FP 1 (idx 2), FN 1 (idx 4) -> 1/3
    assert math.isclose(s["per_class"]["driveable_surface"], 1 / 3)
    assert math.isclose(s["per_class"]["pedestrian"], 1.0)
    # "others" (0) is predicted only at masked voxels -> absent from both, excluded from mIoU
    assert s["per_class"]["others"] is None
    assert math.isclose(s["miou"], (2 / 5 + 1 / 3 + 1.0) / 3)
    assert math.isclose(s["miou_d"], (2 / 5 + 1.0) / 2)  # car and pedestrian are dynamic
    # geometry: occupied gt at idx 0-4,7 (6); predicted occupied at 0-4,6,7 -> TP 6, FP 1
    assert math.isclose(s["iou"], 6 / 7)
    assert s["frames"] == 1
    assert "mIoU" in m.table()


def test_accumulates_over_frames_not_per_frame_average():
    a, b = OccMetric(), OccMetric()
    gt1, pred1 = np.full((1, 2, 1, 1), 4), np.array([4, 0]).reshape(1, 2, 1, 1)
    gt2, pred2 = np.full((1, 2, 1, 1), 4), np.full((1, 2, 1, 1), 4)
    a.update(pred1, gt1, None)
    a.update(pred2, gt2, None)
    b.update(np.concatenate([pred1, pred2]), np.concatenate([gt1, gt2]), None)
    assert np.array_equal(a.confusion, b.confusion)
    assert math.isclose(a.summary()["per_class"]["car"], 3 / 4)
    assert a.frames == 2 and b.frames == 2
