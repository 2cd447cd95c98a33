"""RayIoU against a case computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scaocc_core.config import GridConfig
from scaocc_core.grid import FREE
from scaocc_core.rayiou import RayIoU, first_hits, ray_directions

LINE = GridConfig(lower=(0.0, 0.0, 0.0), upper=(10.0, 1.0, 1.0), size=(10, 1, 1))  # ten 1 m voxels along x
ORIGIN = np.array([[0.5, 0.5, 0.5]])
DIRS = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])  # the -x ray leaves the grid through free space


def _line(**cells: int) -> np.ndarray:
    sem = np.full(LINE.size, FREE, np.uint8)
    for x, c in cells.items():
        sem[int(x[1:]), 0, 0] = c
    return sem


def test_first_hit_distance_is_the_entry_into_the_voxel():
    cls, dist = first_hits(_line(x5=4), LINE, ORIGIN, DIRS)
    assert cls.tolist() == [4, FREE]
    assert dist[0] == pytest.approx(4.5)  # from x = 0.5 to the face at x = 5


def test_rayiou_by_hand():
    # ground truth: a car at x in [5, 6); prediction: the car one voxel too far, x in [6, 7)
    rays = RayIoU(LINE, ORIGIN, DIRS)
    rays.update(_line(x6=4), _line(x5=4))
    # one scored ray (the -x ray sees nothing in the truth): |5.5 - 4.5| = 1 m is not < 1 m,
    # but is within 2 and 4 m -> car IoU 0, 1, 1 at the three tolerances
    assert rays.gt[4] == 1 and rays.pred[4] == 1 and rays.tp[:, 4].tolist() == [0, 1, 1]
    s = rays.summary()
    assert s["rayiou@1"] == 0.0 and s["rayiou@2"] == 1.0 and s["rayiou"] == pytest.approx(2 / 3)
    # the wrong class at the right place scores nothing, for both classes
    wrong = RayIoU(LINE, ORIGIN, DIRS)
    wrong.update(_line(x5=10), _line(x5=4))
    assert wrong.summary()["rayiou"] == 0.0 and wrong.summary()["rayiou_per_class"]["truck"] == 0.0


def test_query_pattern_matches_sparseocc():
    dirs = ray_directions()
    assert np.allclose(np.linalg.norm(dirs, axis=1), 1)
    pitch = np.unique(np.round(np.arcsin(dirs[:, 2]), 9))
    assert pitch[0] == pytest.approx(-math.pi / 4) and pitch[-1] >= 0.21 and len(dirs) == 360 * len(pitch)
