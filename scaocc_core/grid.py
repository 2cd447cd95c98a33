"""The Occ3D voxel grid and its 18 semantic classes.

Grids are indexed ``[x, y, z]``; voxel ``(i, j, k)`` covers
``lower + (i, j, k) * voxel_size`` to ``lower + (i + 1, j + 1, k + 1) * voxel_size`` in the
ego (``base_link``) frame. Class 17 is ``free``.
"""

from __future__ import annotations

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "others",
    "barrier",
    "bicycle",
    "bus",
    "car",
    "construction_vehicle",
    "motorcycle",
    "pedestrian",
    "traffic_cone",
    "trailer",
    "truck",
    "driveable_surface",
    "other_flat",
    "sidewalk",
    "terrain",
    "manmade",
    "vegetation",
    "free",
)
NUM_CLASSES = len(CLASS_NAMES)
FREE = 17
IGNORE = 255
#: Dynamic classes averaged by mIoU_D (Occ3D): bicycle, bus, car, construction_vehicle,
#: motorcycle, pedestrian, trailer, truck.
DYNAMIC_CLASSES: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 9, 10)

#: The Occ3D colour palette (RGB, uint8), one row per class; ``free`` is white.
PALETTE = np.array(
    [
        [0, 0, 0],
        [255, 120, 50],
        [255, 192, 203],
        [255, 255, 0],
        [0, 150, 245],
        [0, 255, 255],
        [200, 180, 0],
        [255, 0, 0],
        [255, 240, 150],
        [135, 60, 0],
        [160, 32, 240],
        [255, 0, 255],
        [139, 137, 137],
        [75, 0, 75],
        [150, 240, 80],
        [230, 230, 250],
        [0, 175, 0],
        [255, 255, 255],
    ],
    dtype=np.uint8,
)
