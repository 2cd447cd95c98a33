"""A procedural surround-camera driving world with exact Occ3D ground truth.

``render_frame(spec, scene, frame)`` renders one frame (six cameras by default, the real
nuScenes calibration) from analytic geometry, with per-pixel semantics and depth, and
voxelises the same geometry into Occ3D ``semantics`` / ``mask_camera`` / ``mask_lidar``.
``write_dataset`` writes a whole set plus its manifest.
"""

from scaocc_core.data.synthetic.frame import render_frame
from scaocc_core.data.synthetic.spec import PRESETS, Preset, SynthFrame, SynthSpec
from scaocc_core.data.synthetic.writer import write_dataset

__all__ = ["PRESETS", "Preset", "SynthFrame", "SynthSpec", "render_frame", "write_dataset"]
