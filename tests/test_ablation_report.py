"""The ablation's aggregation and the table generated from ablation.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scaocc_core.training.ablation import COLUMNS, NOISES, aggregate, plot_ablation_curves, to_markdown

from .fixtures import ROOT


def _run(variant: str, seed: int, miou: float) -> dict:
    scores = {label: {"miou": miou * (1 - 0.1 * i), "miou_d": miou / 2, "iou": 0.5, "rayiou": 0.3,
                      "drop": 0.1 * i} for i, label in enumerate(NOISES)}
    return {"variant": variant, "seed": seed, "steps": 90, "step_time_s": 2.0, "consistency": 0.2,
            "val_history": [[45, miou / 2], [90, miou]],
            "val": scores, "hard": scores, "grid": {"scored_on": "native Occ3D grid (200x200x16, 0.4 m)"}}


def test_rows_are_mean_and_std_over_seeds_and_the_table_comes_from_them():
    runs = [_run("0_baseline", 0, 0.10), _run("0_baseline", 1, 0.20), _run("5_normalized_conv", 0, 0.30)]
    rows = aggregate(runs, ["0_baseline", "5_normalized_conv"])
    assert [r["variant"] for r in rows] == ["0_baseline", "5_normalized_conv"]
    mean, std = rows[0]["val mIoU"]
    assert mean == pytest.approx(0.15) and std == pytest.approx(0.0707107, rel=1e-5)
    assert rows[1]["val mIoU"] == (pytest.approx(0.30), 0.0)
    table = to_markdown({"preset": "cpu", "steps": 90, "pretrain_steps": 1200,
                         "scored_on": runs[0]["grid"]["scored_on"], "rows": rows})
    assert "| 0_baseline | 2 | 90 | 15.0 ± 7.1 |" in table and "native Occ3D grid" in table
    assert "90 training steps per run from an encoder pretrained for 1200 frames" in table
    assert all(label in table for label, *_ in COLUMNS)


def test_curves_plot_one_line_per_rung(tmp_path: Path):
    runs = [_run("0_baseline", 0, 0.10), _run("0_baseline", 1, 0.20), _run("5_normalized_conv", 0, 0.30)]
    report = {"preset": "cpu", "rows": aggregate(runs, ["0_baseline", "5_normalized_conv"]), "runs": runs}
    png = plot_ablation_curves(report, tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


@pytest.mark.parametrize("name", ["ablation.json", "ablation_400steps.json"])
def test_experiments_md_tables_are_generated_from_the_committed_reports(name: str):
    """EXPERIMENTS.md section 5 carries each committed report's table exactly as ``--report`` prints it."""
    report = json.loads((ROOT / "experiments" / name).read_text())
    assert len({(r["variant"], r["seed"]) for r in report["runs"]}) == len(report["runs"])
    assert all(len(row["seeds"]) >= 2 for row in report["rows"]), "every rung of a committed ladder has 2 seeds"
    assert to_markdown(report).strip() in (ROOT / "EXPERIMENTS.md").read_text()
