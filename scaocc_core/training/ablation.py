"""The paper's cumulative ablation ladder on the synthetic benchmark.

Rungs (each adds one component to the previous one)::

    0 baseline          BEVDetOcc-like (baseline_*.yaml), with depth supervision
    1 depth sup.        the full config's depth-loss weight; only where it differs from the
                        baseline's (scaocc_r50 learns depth implicitly; scaocc_tiny keeps the
                        supervision, EXPERIMENTS.md section 2)
    2 + causal loss     semantic causal loss on the propagated 3D features
    3 + grouped lift    channel-grouped lifting (G from scaocc_*.yaml)
    4 + cam. offsets    learnable camera offsets with soft (trilinear) filling
    5 + norm. conv      normalised 3D convolution = scaocc_*.yaml, the full method

Every rung is trained with ``--seeds`` seeds on the default-preset world (its held-out
scenes are the first evaluation set), from one encoder pretrained on that world's 2D labels
where the preset says so (``cpu``: the world and pretraining of ``make models``). Each is
evaluated on the native Occ3D grid, clean and under so3 camera noise of 1 deg / 5 cm and 3
deg / 15 cm, on those scenes and on a second world (another seed, ``hard`` preset): mIoU,
mIoU_D, geometric IoU, RayIoU, and the causal consistency. Finished runs (``result.json``)
are skipped, interrupted ones resume from their last checkpoint. Results:
``OUT/ablation.json`` (every rung and seed, the step budget) and ``OUT/ablation.md``, the
table generated from it (``--report FILE`` prints it again), and
``OUT/ablation_curves.png``, the val mIoU curve of each rung.

Example::

    scaocc ablation --preset cpu --seeds 2 --out runs/ablation
    scaocc ablation --report experiments/ablation.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from scaocc_core.checkpoint import load_checkpoint
from scaocc_core.config import ModelConfig, load_config
from scaocc_core.data.dataset import OccDataset
from scaocc_core.data.noise import CameraNoise
from scaocc_core.rayiou import RayIoU
from scaocc_core.training.config import TrainConfig
from scaocc_core.training.consistency import consistency_score
from scaocc_core.training.distributed import DistInfo, pick_device
from scaocc_core.training.engine import train
from scaocc_core.training.evaluate import NOISE_SEED, evaluate_model, grid_note
from scaocc_core.training.pretrain import STEPS as PRETRAIN_STEPS
from scaocc_core.training.pretrain import pretrain
from scaocc_core.training.robustness import STANDARD, relative_drop
from scaocc_core.training.synthdata import SynthSet, cache_synthetic_frames, ensure_synthetic

log = logging.getLogger(__name__)
CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "model"


@dataclass(frozen=True)
class AblationPreset:
    """Benchmark size: configs, the two synthetic worlds, pretraining, training and evaluation budget.

    ``pretrain_steps`` > 0 pretrains the image encoder once on the training world
    (:mod:`~scaocc_core.training.pretrain`, the full config's encoder) and every rung starts from it.
    ``image_hw``, where set, replaces the configs' network input size in every rung.
    """

    baseline: str
    full: str
    train_set: SynthSet
    hard_set: SynthSet
    train: TrainConfig
    eval_frames: int
    consistency_frames: int
    pretrain_steps: int = 0
    image_hw: tuple[int, int] | None = None


PRESETS: dict[str, AblationPreset] = {
    # The world, encoder pretraining and recipe of `make models`, with fewer steps: 5 rungs x 2 seeds
    # in about an hour on 2 CPU cores (EXPERIMENTS.md section 5 has the measured time).
    "cpu": AblationPreset(
        baseline="baseline_tiny.yaml", full="scaocc_tiny.yaml",
        train_set=SynthSet(seed=0, preset="default", scenes=24, frames=8, val_scenes=2, height=128, width=352),
        hard_set=SynthSet(seed=100, preset="hard", scenes=2, frames=4, val_scenes=0, height=128, width=352),
        train=TrainConfig(steps=120, batch_size=1, lr=2e-3, warmup_steps=15, min_lr_ratio=0.05, amp="none",
                          augment=True, num_workers=0, checkpoint_every=20, val_every=20, val_frames=4,
                          log_every=5),
        eval_frames=6, consistency_frames=2, pretrain_steps=PRETRAIN_STEPS, image_hw=(128, 352),
    ),
    # Occ3D scale for users with a GPU (r50 configs, 256x704 images, 200x200x16 grid).
    "gpu": AblationPreset(
        baseline="baseline_r50.yaml", full="scaocc_r50.yaml",
        train_set=SynthSet(seed=0, preset="default", scenes=48, frames=20, val_scenes=8, height=256, width=704),
        hard_set=SynthSet(seed=100, preset="hard", scenes=8, frames=20, val_scenes=0, height=256, width=704),
        train=TrainConfig(steps=12_000, batch_size=4, lr=2e-4, warmup_steps=500, amp="bf16", augment=True,
                          num_workers=4, checkpoint_every=1000, val_every=4000, val_frames=40),
        eval_frames=0, consistency_frames=20,
    ),
}


def ladder(baseline: ModelConfig, full: ModelConfig) -> list[tuple[str, ModelConfig]]:
    """The cumulative variants, derived from the two YAMLs with ``dataclasses.replace``.

    Rung 1 (depth supervision as in the full config) exists only where the two configs'
    depth weights differ; each name starts with its rung number.
    """
    b, f = baseline, full
    v0 = replace(b, name="0_baseline")
    depth_as_full = replace(v0.loss, depth_weight=f.loss.depth_weight)
    v1 = replace(v0, name="1_no_depth_sup" if f.loss.depth_weight == 0 else "1_depth_sup", loss=depth_as_full)
    v2 = replace(v1, name="2_causal_loss",
                 loss=replace(v1.loss, causal_weight=f.loss.causal_weight, causal_feature=f.loss.causal_feature,
                              causal_warmup=f.loss.causal_warmup))
    v3 = replace(v2, name="3_grouped_lift", depth=replace(v2.depth, groups=f.depth.groups))
    v4 = replace(v3, name="4_camera_offsets", offsets=f.offsets, lift=f.lift)
    v5 = replace(v4, name="5_normalized_conv", voxel=f.voxel)
    if replace(v5, name=f.name) != f:
        raise ValueError(f"the ladder's last rung differs from {f.name} in more than the four components; "
                         "align the baseline and full configs")
    rungs = (v0, v1, v2, v3, v4, v5) if v1.loss != v0.loss else (v0, v2, v3, v4, v5)
    return [(v.name, v.validate()) for v in rungs]


#: Noise levels every rung is scored under (label -> noise); ``None`` is the clean input.
NOISES: dict[str, CameraNoise | None] = {"clean": None, "so3_1deg_5cm": STANDARD,
                                         "so3_3deg_15cm": CameraNoise("so3", 3.0, 0.15)}


def evaluate_run(ckpt: Path, sets: dict[str, str], preset: AblationPreset, device: torch.device) -> dict[str, Any]:
    """Native scores of every noise level on each evaluation set, plus consistency on the first."""
    model, cfg = load_checkpoint(ckpt, device)
    out: dict[str, Any] = {"grid": grid_note(cfg.grid)}
    for name, (source, split) in {k: (v, "val" if k == "val" else "all") for k, v in sets.items()}.items():
        out[name] = {}
        for label, noise in NOISES.items():
            ds = cache_synthetic_frames(OccDataset(source, split, cfg, camera_noise=noise, noise_seed=NOISE_SEED))
            rays = RayIoU(cfg.grid)
            s = evaluate_model(model, ds, device, preset.eval_frames, desc=f"{name} {label}", rays=rays).summary()
            out[name][label] = {"miou": s["miou"], "miou_d": s["miou_d"], "iou": s["iou"],
                                "rayiou": rays.summary()["rayiou"], "per_class": s["per_class"]}
        clean = out[name]["clean"]["miou"]
        for label in NOISES:
            out[name][label]["drop"] = relative_drop(clean, out[name][label]["miou"])
    val_source = sets["val"]
    out["consistency"] = consistency_score(model, cache_synthetic_frames(OccDataset(val_source, "val", cfg)), device,
                                           preset.consistency_frames)["mean"]
    return out


def run_one(name: str, cfg: ModelConfig, seed: int, run_dir: Path, sets: dict[str, str], preset: AblationPreset,
            device: torch.device) -> dict[str, Any]:
    """Train (or resume) one variant with one seed and evaluate it; cached in ``result.json``."""
    result_path = run_dir / "result.json"
    if result_path.is_file():
        log.info("%s seed %d: done already, skipping", name, seed)
        return dict(json.loads(result_path.read_text()))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "model.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    t0 = time.time()
    res = train(cfg, replace(preset.train, seed=seed), sets["val"], run_dir, DistInfo(device=device), resume=True)
    metrics = evaluate_run(res.final_checkpoint, sets, preset, device)
    result = {"variant": name, "seed": seed, "steps": res.steps, "step_time_s": res.train_seconds / max(res.steps, 1),
              "wall_s": time.time() - t0, "val_history": res.val_history, **metrics}
    result_path.write_text(json.dumps(result, indent=2))
    return result


def _mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


#: Columns of the table: (label, evaluation set, noise level, metric).
COLUMNS = [("val mIoU", "val", "clean", "miou"), ("val mIoU 1°/5cm", "val", "so3_1deg_5cm", "miou"),
           ("val mIoU 3°/15cm", "val", "so3_3deg_15cm", "miou"), ("val drop 3°/15cm", "val", "so3_3deg_15cm", "drop"),
           ("val mIoU_D", "val", "clean", "miou_d"), ("val IoU", "val", "clean", "iou"),
           ("val RayIoU", "val", "clean", "rayiou"), ("hard mIoU", "hard", "clean", "miou"),
           ("hard drop 3°/15cm", "hard", "so3_3deg_15cm", "drop")]


def aggregate(results: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """Mean and std over seeds of every reported number, per variant (in ladder order)."""
    rows = []
    for name in names:
        runs = [r for r in results if r["variant"] == name]
        if not runs:
            continue
        row: dict[str, Any] = {"variant": name, "seeds": [r["seed"] for r in runs], "steps": runs[0]["steps"]}
        for label, group, noise, metric in COLUMNS:
            row[label] = _mean_std([r[group][noise][metric] for r in runs])
        row["step_time_s"] = _mean_std([r["step_time_s"] for r in runs])
        row["consistency"] = _mean_std([r["consistency"] for r in runs])
        rows.append(row)
    return rows


def to_markdown(report: dict[str, Any]) -> str:
    """The ablation table of an ``ablation.json`` report (percent, mean ± std over seeds)."""
    def pct(v: list[float] | tuple[float, float]) -> str:
        return f"{100 * v[0]:.1f} ± {100 * v[1]:.1f}"

    labels = [c[0] for c in COLUMNS]
    lines = ["| variant | seeds | steps | " + " | ".join(labels) + " | s/step | consistency |",
             "|" + "---|" * (len(labels) + 5)]
    for r in report["rows"]:
        cells = " | ".join(pct(r[label]) for label in labels)
        lines.append(f"| {r['variant']} | {len(r['seeds'])} | {r['steps']} | {cells} | {r['step_time_s'][0]:.2f} | "
                     f"{pct(r['consistency'])} |")
    lines.append("")
    budget = f"{report['steps']} training steps per run" if "steps" in report else "see the steps column"
    if report.get("pretrain_steps"):
        budget += f" from an encoder pretrained for {report['pretrain_steps']} frames"
    if report.get("causal_every", 1) > 1:
        k = report["causal_every"]
        budget += f"; the causal loss on one step in {k}, at {k}x its weight"
    lines.append(f"Preset `{report['preset']}` ({budget}); scored on the {report['scored_on']}; "
                 "val = held-out scenes of the training world, hard = a second world (seed 100, hard preset); "
                 "noise = so3 camera noise; drop = relative mIoU drop.")
    return "\n".join(lines)


def plot_ablation_curves(report: dict[str, Any], png_path: Path) -> Path:
    """Validation mIoU against training step, one line per rung (mean over its seeds), as a PNG."""
    from scaocc_core.viz import plt, save_figure

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in report["rows"]:
        curves = [dict(r["val_history"]) for r in report["runs"] if r["variant"] == row["variant"]]
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        ax.plot(steps, [100 * float(np.mean([c[s] for c in curves])) for s in steps], marker="o",
                label=f"{row['variant']} ({len(curves)} seed{'s' * (len(curves) > 1)})")
    ax.set_xlabel("training step")
    ax.set_ylabel("val mIoU % (native grid)")
    ax.set_title(f"ablation ladder, preset {report['preset']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, png_path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``scaocc ablation``."""
    parser.add_argument("--report", type=Path, default=None, metavar="ABLATION_JSON",
                        help="only print the table of an existing ablation.json (nothing is trained)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="benchmark size (default: cpu)")
    parser.add_argument("--seeds", type=int, default=2, help="training seeds per variant (default: 2)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (data, runs, ablation.md/json)")
    parser.add_argument("--device", default=None, choices=("cpu", "cuda"), help="default: cuda if available")
    parser.add_argument("--steps", type=int, default=None, help="override the preset's training steps")
    parser.add_argument("--variants", default=None, metavar="I,J,...",
                        help="only these rungs (rung numbers, e.g. 0,5 for baseline vs full method)")
    parser.add_argument("--causal-every", type=int, default=1, metavar="K",
                        help="lazy causal loss: on every K-th step at K times its weight (default: 1, every step)")


def run(args: argparse.Namespace) -> int:
    """Run ``scaocc ablation``."""
    if args.report is not None:
        print(to_markdown(json.loads(args.report.read_text())))
        return 0
    if args.out is None:
        raise ValueError("--out is required to run the ablation")
    preset = PRESETS[args.preset]
    if args.steps is not None:
        preset = replace(preset, train=replace(preset.train, steps=args.steps))
    if args.seeds <= 0:
        raise ValueError("--seeds must be positive")
    if args.causal_every < 1:
        raise ValueError("--causal-every must be >= 1")
    device = pick_device(args.device)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    sets = {"val": str(ensure_synthetic(preset.train_set, out / "data")),
            "hard": str(ensure_synthetic(preset.hard_set, out / "data"))}
    full, baseline = load_config(CONFIG_DIR / preset.full), load_config(CONFIG_DIR / preset.baseline)
    if preset.image_hw is not None:
        full, baseline = (replace(c, image=replace(c.image, height=preset.image_hw[0], width=preset.image_hw[1]))
                          for c in (full, baseline))
    variants = ladder(baseline, full)
    variants = [(n, replace(c, loss=replace(c.loss, causal_every=args.causal_every))) for n, c in variants]
    if preset.pretrain_steps > 0:
        encoder = out / "pretrain" / "encoder.pt"
        if not encoder.is_file():
            pretrain(full, str(sets["val"]), encoder.parent, preset.pretrain_steps)
        variants = [(n, replace(c, encoder=replace(c.encoder, pretrained=str(encoder)))) for n, c in variants]
    if args.variants:
        numbers = [name.split("_")[0] for name, _ in variants]
        picks = set(args.variants.split(","))
        if not picks <= set(numbers):
            raise ValueError(f"--variants must list rung numbers among {','.join(numbers)}, got {args.variants!r}")
        variants = [v for v, n in zip(variants, numbers) if n in picks]
    (out / "preset.json").write_text(json.dumps(dataclasses.asdict(preset), indent=2))
    results = []
    # Endpoints first (baseline, full method), then the rungs between: a partial run still
    # answers the main question. Seeds in the outer loop for the same reason.
    order = [variants[0], variants[-1], *variants[1:-1]] if len(variants) > 1 else variants
    for seed in range(args.seeds):
        for name, cfg in order:
            results.append(run_one(name, cfg, seed, out / "runs" / f"{name}_seed{seed}", sets, preset, device))
            report = {"preset": args.preset, "steps": preset.train.steps, "pretrain_steps": preset.pretrain_steps,
                      "causal_every": args.causal_every,
                      "scored_on": results[0]["grid"]["scored_on"],
                      "rows": aggregate(results, [n for n, _ in variants]), "runs": results}
            (out / "ablation.json").write_text(json.dumps(report, indent=2))
            (out / "ablation.md").write_text(to_markdown(report) + "\n")
            plot_ablation_curves(report, out / "ablation_curves.png")
    print((out / "ablation.md").read_text())
    return 0
