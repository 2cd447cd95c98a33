"""mIoU of a checkpoint under increasing camera-parameter noise (extrinsics only).

Levels (``so3``: rotation about a random axis with N(0, sigma) degrees, N(0, sigma) metres
per translation component): clean, (0.5°, 0.025 m), (1°, 0.05 m) = the standard level,
(2°, 0.1 m), (3°, 0.15 m); plus the authors' ``elementwise`` protocol at the standard
level. Every level uses the same noise seed, so two models see identical cameras.

For a model with learnable camera offsets, every noisy so3 level also reports whether the
offsets undo the noise: the mean rotation (degrees) and translation (metres) error of the
camera poses against the true ones, before and after the predicted correction
(:class:`PoseCorrection`). Equal before and after means the model did not correct the pose
(it may still tolerate the error).

Example::

    scaocc robustness --checkpoint models/scaocc_tiny.pt --data data/synth_val \\
        --json out/robustness.json --png out/robustness.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scaocc_core.batch import Batch
from scaocc_core.checkpoint import load_checkpoint
from scaocc_core.data.dataset import OccDataset
from scaocc_core.data.noise import CameraNoise
from scaocc_core.model.causal_occ import CausalOcc, ModelOutput
from scaocc_core.training.evaluate import NOISE_SEED, evaluate_model
from scaocc_core.training.synthdata import cache_synthetic_frames

#: The standard perturbation of the robustness protocol.
STANDARD = CameraNoise("so3", 1.0, 0.05)
#: The so3 sweep (sigma_deg, sigma_m); the first level is the clean evaluation.
SO3_LEVELS: tuple[tuple[float, float], ...] = ((0.0, 0.0), (0.5, 0.025), (1.0, 0.05), (2.0, 0.1), (3.0, 0.15))


def relative_drop(clean: float, noisy: float) -> float:
    """``(clean - noisy) / clean`` (0 when the clean score is 0)."""
    return (clean - noisy) / clean if clean > 0 else 0.0


def pose_errors(ego_T_cam: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-camera rotation angle (degrees) of ``R R_true^T`` and translation distance (metres)
    between ``n 4 4`` poses and the true ones."""
    rel = ego_T_cam[:, :3, :3] @ np.transpose(truth[:, :3, :3], (0, 2, 1))
    cos = np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)
    return np.degrees(np.arccos(cos)), np.linalg.norm(ego_T_cam[:, :3, 3] - truth[:, :3, 3], axis=1)


class PoseCorrection:
    """Pose error of the (noisy) cameras a dataset hands the model, before and after the
    model's predicted camera offsets; an ``on_output`` hook of :func:`evaluate_model`."""

    def __init__(self, dataset: OccDataset) -> None:
        self.dataset = dataset
        self.before: list[tuple[np.ndarray, np.ndarray]] = []
        self.after: list[tuple[np.ndarray, np.ndarray]] = []

    def __call__(self, index: int, batch: Batch, out: ModelOutput) -> None:
        """Add frame ``index``: its handed and corrected poses against the stored true ones."""
        handed = batch.inputs.ego_T_cam
        corrected = out.offsets.apply(handed)[0].double().cpu().numpy()  # n 4 4
        truth = self.dataset.source.frame(index, with_images=False).ego_T_cam
        self.before.append(pose_errors(handed[0].double().cpu().numpy(), truth))
        self.after.append(pose_errors(corrected, truth))

    def summary(self) -> dict[str, float]:
        """Means over cameras and frames: ``rot_err_deg_before/after``, ``trans_err_m_before/after``."""
        def mean(errs: list[tuple[np.ndarray, np.ndarray]], k: int) -> float:
            return float(np.concatenate([e[k] for e in errs]).mean())

        return {"rot_err_deg_before": mean(self.before, 0), "rot_err_deg_after": mean(self.after, 0),
                "trans_err_m_before": mean(self.before, 1), "trans_err_m_after": mean(self.after, 1)}


def robustness_sweep(model: CausalOcc, cfg_source: str, split: str, device: torch.device, max_frames: int = 0,
                     progress: bool = True, levels: tuple[tuple[float, float], ...] = SO3_LEVELS) -> dict[str, Any]:
    """Evaluate ``model`` at every so3 level and at the elementwise standard level."""
    entries: list[dict[str, Any]] = []
    noises = [CameraNoise("so3", d, m) for d, m in levels] + [CameraNoise("elementwise", STANDARD.sigma_deg,
                                                                          STANDARD.sigma_m)]
    for noise in noises:
        clean = noise.sigma_deg == 0 and noise.sigma_m == 0
        dataset = cache_synthetic_frames(
            OccDataset(cfg_source, split, model.cfg, camera_noise=None if clean else noise, noise_seed=NOISE_SEED))
        poses = PoseCorrection(dataset) if model.cfg.offsets.enabled and noise.mode == "so3" and not clean else None
        s = evaluate_model(model, dataset, device, max_frames, progress=progress, desc=f"noise {noise}",
                           on_output=poses).summary()
        entries.append({"mode": noise.mode, "sigma_deg": noise.sigma_deg, "sigma_m": noise.sigma_m,
                        "miou": s["miou"], "miou_d": s["miou_d"], "iou": s["iou"], "frames": s["frames"]})
        if poses is not None:
            entries[-1].update(poses.summary())
    clean_miou = entries[0]["miou"]
    for e in entries:
        e["relative_drop"] = relative_drop(clean_miou, e["miou"])
    standard = next(e for e in entries if e["mode"] == "so3" and e["sigma_deg"] == STANDARD.sigma_deg)
    return {"clean_miou": clean_miou, "standard_noise": str(STANDARD), "standard_miou": standard["miou"],
            "standard_relative_drop": standard["relative_drop"], "levels": entries}


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of the sweep."""
    lines = [f"{'mode':<12}{'rot deg':>8}{'trans m':>9}{'mIoU %':>8}{'drop %':>8}"
             f"{'pose err deg/m before':>24}{'after offsets':>16}"]
    for e in result["levels"]:
        pose = (f"{e['rot_err_deg_before']:>15.2f} /{e['trans_err_m_before']:>6.3f}"
                f"{e['rot_err_deg_after']:>9.2f} /{e['trans_err_m_after']:>6.3f}") if "rot_err_deg_before" in e else ""
        lines.append(f"{e['mode']:<12}{e['sigma_deg']:>8.2f}{e['sigma_m']:>9.3f}{100 * e['miou']:>8.2f}"
                     f"{100 * e['relative_drop']:>8.1f}{pose}")
    return "\n".join(lines)


def plot_sweep(result: dict[str, Any], png: Path, title: str = "") -> Path:
    """mIoU against the so3 rotation sigma (translation scales with it); elementwise as a marker."""
    from scaocc_core.viz import plt, save_figure

    so3 = [e for e in result["levels"] if e["mode"] == "so3"]
    elem = [e for e in result["levels"] if e["mode"] == "elementwise"]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot([e["sigma_deg"] for e in so3], [100 * e["miou"] for e in so3], marker="o", label="so3")
    ax.plot([e["sigma_deg"] for e in elem], [100 * e["miou"] for e in elem], marker="s", linestyle="",
            label="elementwise")
    ax.set_xlabel("rotation sigma (deg); translation sigma = 0.05 m/deg")
    ax.set_ylabel("mIoU %")
    ax.set_title(title or "mIoU under camera-parameter noise")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, png)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``scaocc robustness``."""
    parser.add_argument("--checkpoint", required=True, help="checkpoint written by scaocc train")
    parser.add_argument("--data", required=True, help="manifest directory or synthetic:KEY=VALUE,...")
    parser.add_argument("--split", default="val", help="split to evaluate (default: val)")
    parser.add_argument("--max-frames", type=int, default=0, help="at most this many frames per level (0 = all)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", required=True, type=Path, help="write the sweep here")
    parser.add_argument("--png", required=True, type=Path, help="write the mIoU curve here")


def run(args: argparse.Namespace) -> int:
    """Run ``scaocc robustness``."""
    model, cfg = load_checkpoint(args.checkpoint, args.device)
    result = robustness_sweep(model, args.data, args.split, torch.device(args.device), args.max_frames)
    result.update(checkpoint=str(args.checkpoint), model=cfg.name, split=args.split)
    print(format_table(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    plot_sweep(result, args.png, f"{cfg.name}: mIoU under camera noise")
    print(f"standard noise {result['standard_noise']}: relative drop {100 * result['standard_relative_drop']:.1f}% "
          f"-> {args.json}, {args.png}")
    return 0
