"""Parity of an exported graph with PyTorch: feeds with a plausible rig, and the comparison.

:func:`rig_feeds` builds graph inputs for a ring of outward-looking cameras (so frustum
points really land in the grid and the scatter is exercised) with random images;
:func:`compare` reports the largest logit difference and the argmax agreement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from scaocc_core.config import ModelConfig
from scaocc_core.deploy.graph import INPUT_NAMES, InferenceGraph


def ring_rig(num_cams: int, hw: tuple[int, int], height_m: float = 1.6) -> tuple[np.ndarray, np.ndarray]:
    """``num_cams`` cameras looking outward at even yaws: intrinsics ``n 3 3``, ego_T_cam ``n 4 4``.

    Focal length gives a 70 degree horizontal field of view at image size ``hw``.
    """
    H, W = hw
    f = 0.5 * W / math.tan(math.radians(35.0))
    K = np.array([[f, 0.0, (W - 1) / 2], [0.0, f, (H - 1) / 2], [0.0, 0.0, 1.0]])
    optical_to_ego = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # yaw 0
    Ts = []
    for i in range(num_cams):
        yaw = 2 * math.pi * i / num_cams
        c, s = math.cos(yaw), math.sin(yaw)
        T = np.eye(4)
        T[:3, :3] = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ optical_to_ego
        T[:3, 3] = (0.5 * c, 0.5 * s, height_m)
        Ts.append(T)
    return np.repeat(K[None], num_cams, axis=0), np.stack(Ts)


def rig_feeds(cfg: ModelConfig, seed: int = 0, images: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Graph inputs (batch 1, float32) for the ring rig with jittered calibration.

    ``images`` (``n 3 H W`` in [0, 1]) defaults to uniform noise; one camera is marked
    missing when the rig has more than two, so the ``camera_valid`` path is exercised.
    """
    rng = np.random.default_rng(seed)
    n, hw = cfg.image.num_cams, (cfg.image.height, cfg.image.width)
    K, T = ring_rig(n, hw)
    K[:, :2, :3] *= 1 + 0.02 * rng.standard_normal((n, 1, 1))
    T[:, :3, 3] += 0.05 * rng.standard_normal((n, 3))
    valid = np.ones(n, dtype=np.float32)
    if n > 2:
        valid[rng.integers(n)] = 0.0
    if images is None:
        images = rng.random((n, 3, *hw), dtype=np.float32)
    feeds = {
        "images": np.asarray(images, dtype=np.float32)[None],
        "intrinsics": K.astype(np.float32)[None],
        "ego_T_cam": T.astype(np.float32)[None],
        "post_rot": np.repeat(np.eye(3, dtype=np.float32)[None, None], n, axis=1),
        "post_tran": np.zeros((1, n, 3), dtype=np.float32),
        "camera_valid": valid[None],
    }
    return feeds


def torch_outputs(graph: InferenceGraph, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """Run a (CPU, eval) graph on numpy feeds; returns its outputs as numpy."""
    with torch.inference_mode():
        out = graph(*(torch.from_numpy(feeds[k]) for k in INPUT_NAMES))
    return tuple(t.numpy() for t in out)


@dataclass(frozen=True)
class ParityReport:
    """An exported graph vs PyTorch on one input.

    Differences are over logits for a logits graph, over confidence (0..255) for a labels
    graph. ``p99_abs_diff`` is the 99th percentile over voxels of the per-voxel largest
    difference: hard pooling is discontinuous, so a frustum point whose coordinate
    (moved by the learnt offsets, i.e. by convolution outputs) rounds across a voxel face
    in one runtime changes that voxel and, through the U-Net, its neighbourhood; the
    maximum alone is therefore input-dependent.
    """

    outputs: str  # "logits" or "labels"
    max_abs_diff: float
    p99_abs_diff: float
    scale: float  # largest |reference logit| (1 for labels)
    argmax_agreement: float  # fraction of voxels with the same label
    max_abs_offset_diff: float  # camera offsets (radians / metres)
    num_voxels: int

    def __str__(self) -> str:
        what = "logit" if self.outputs == "logits" else "confidence (0-255)"
        return (f"max |{what} diff| {self.max_abs_diff:.3g} (99th pct over voxels {self.p99_abs_diff:.3g}, "
                f"logit scale {self.scale:.3g}), label agreement {100 * self.argmax_agreement:.3f}% of "
                f"{self.num_voxels} voxels, max |camera offset diff| {self.max_abs_offset_diff:.2e}")

    def passed(self, rel_tol: float = 1e-3, min_agreement: float = 0.999, conf_tol: float = 1.0) -> bool:
        """Labels agree on ``min_agreement`` of voxels and the 99th-percentile difference is
        within ``rel_tol`` of the logit scale (confidence: ``conf_tol`` steps of 255)."""
        bound = rel_tol * max(1.0, self.scale) if self.outputs == "logits" else conf_tol
        return self.p99_abs_diff <= bound and self.argmax_agreement >= min_agreement


def compare(reference: tuple[np.ndarray, ...], candidate: tuple[np.ndarray, ...], outputs: str) -> ParityReport:
    """Compare two graphs' outputs.

    ``outputs="logits"``: ``(logits 1 K X Y Z, rotation 1 n 3, translation 1 n 3)``;
    ``outputs="labels"``: ``(labels 1 X Y Z, confidence 1 X Y Z, rotation, translation)``.
    """
    if len(reference) != len(candidate) or any(r.shape != c.shape for r, c in zip(reference, candidate)):
        raise ValueError(f"output shapes differ: {[r.shape for r in reference]} vs {[c.shape for c in candidate]}")
    if outputs == "logits":
        ref, cand = reference[0].astype(np.float32), candidate[0].astype(np.float32)
        agree = float((ref.argmax(1) == cand.argmax(1)).mean())
        per_voxel = np.abs(ref - cand).max(axis=1)  # b X Y Z
        scale = float(np.abs(ref).max())
        offsets = reference[1:], candidate[1:]
    elif outputs == "labels":
        agree = float((reference[0] == candidate[0]).mean())
        per_voxel = np.abs(reference[1].astype(np.int32) - candidate[1].astype(np.int32))
        scale = 1.0
        offsets = reference[2:], candidate[2:]
    else:
        raise ValueError(f"outputs must be 'logits' or 'labels', got {outputs!r}")
    offset_diff = max(float(np.abs(r - c).max()) for r, c in zip(*offsets))
    return ParityReport(outputs, float(per_voxel.max()), float(np.quantile(per_voxel, 0.99)), scale, agree,
                        offset_diff, int(np.prod(reference[0].shape[-3:])))
