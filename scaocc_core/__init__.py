"""scaocc_core: camera-only semantic occupancy (Occ3D convention), no ROS imports.

Stages live one per module under :mod:`scaocc_core.model`; data, training, evaluation
and export live beside them. See README.md for the tour.
"""

__version__ = "0.1.0"
