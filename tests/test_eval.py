"""Evaluation CLI, robustness sweep and consistency score on a micro checkpoint."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from scaocc_core.checkpoint import save_checkpoint
from scaocc_core.cli import main
from scaocc_core.grid import CLASS_NAMES
from scaocc_core.model.causal_occ import CausalOcc
from scaocc_core.training.ablation import ladder
from scaocc_core.training.evaluate import frame_indices
from scaocc_core.training.robustness import SO3_LEVELS, STANDARD, pose_errors, relative_drop

from .fixtures import front_config, write_micro_world


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("eval")
    world = write_micro_world(root / "world", scenes=2, frames=1, val_scenes=1, seed=3)
    torch.manual_seed(0)
    ckpt = save_checkpoint(root / "micro.pt", CausalOcc(front_config(full=True)), front_config(full=True))
    return ckpt, str(world)


def test_eval_json_has_the_required_keys(setup: tuple[Path, str], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, world = setup
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(ckpt), "--data", world, "--camera-noise", "so3:1,0.05",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert {"miou", "miou_d", "iou", "per_class", "frames", "camera_noise"} <= set(result)
    assert set(result["per_class"]) == set(CLASS_NAMES)
    assert result["frames"] == 1 and result["camera_noise"] == "so3:1,0.05"
    assert 0.0 <= result["miou"] <= 1.0 and 0.0 <= result["iou"] <= 1.0
    assert "mIoU (0..16)" in capsys.readouterr().out


def test_eval_rejects_bad_noise_and_missing_checkpoint(setup: tuple[Path, str], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, world = setup
    with pytest.raises(ValueError, match="so3:1,0.05"):
        main(["eval", "--checkpoint", str(ckpt), "--data", world, "--camera-noise", "so3", "--json",
              str(tmp_path / "x.json")])
    # a missing checkpoint is a bad file: one line and exit 1, no traceback
    assert main(["eval", "--checkpoint", str(tmp_path / "none.pt"), "--data", world, "--json",
                 str(tmp_path / "x.json")]) == 1
    assert "checkpoint not found" in capsys.readouterr().err


def test_robustness_sweep_output(setup: tuple[Path, str], tmp_path: Path) -> None:
    ckpt, world = setup
    js, png = tmp_path / "rob.json", tmp_path / "rob.png"
    assert main(["robustness", "--checkpoint", str(ckpt), "--data", world, "--json", str(js), "--png", str(png)]) == 0
    result = json.loads(js.read_text())
    levels = result["levels"]
    assert [(e["sigma_deg"], e["sigma_m"]) for e in levels if e["mode"] == "so3"] == list(SO3_LEVELS)
    assert [e["mode"] for e in levels].count("elementwise") == 1
    assert levels[0]["relative_drop"] == 0.0 and result["clean_miou"] == levels[0]["miou"]
    assert result["standard_noise"] == str(STANDARD)
    for e in levels:
        assert 0.0 <= e["miou"] <= 1.0 and e["frames"] == 1
        assert e["relative_drop"] == pytest.approx(relative_drop(result["clean_miou"], e["miou"]))
    assert png.stat().st_size > 1000
    noisy = [e for e in levels if e["mode"] == "so3" and e["sigma_deg"] > 0]
    assert all("rot_err_deg_before" in e for e in noisy) and "rot_err_deg_before" not in levels[0]
    # the untrained offsets are exactly zero: the poses stay as wrong as the noise made them
    for e in noisy:
        assert e["rot_err_deg_before"] > 0 and e["rot_err_deg_after"] == pytest.approx(e["rot_err_deg_before"])
        assert e["trans_err_m_after"] == pytest.approx(e["trans_err_m_before"], abs=1e-6)
    assert noisy[-1]["rot_err_deg_before"] > noisy[0]["rot_err_deg_before"]  # 3 deg sigma > 0.5 deg


def test_pose_errors_by_hand() -> None:
    truth = np.stack([np.eye(4), np.eye(4)])
    a = np.radians(2.0)
    moved = truth.copy()
    moved[0, :3, :3] = [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
    moved[1, :3, 3] = [0.03, 0.04, 0.0]
    rot, trans = pose_errors(moved, truth)
    assert rot == pytest.approx([2.0, 0.0], abs=1e-6) and trans == pytest.approx([0.0, 0.05])


def test_consistency_scores_are_shares(setup: tuple[Path, str], tmp_path: Path) -> None:
    ckpt, world = setup
    js = tmp_path / "cons.json"
    assert main(["consistency", "--checkpoint", str(ckpt), "--checkpoint-baseline", str(ckpt), "--data", world,
                 "--max-frames", "1", "--json", str(js)]) == 0
    result = json.loads(js.read_text())
    assert len(result) == 2
    for scores in result.values():
        assert scores["per_class"] and set(scores["per_class"]) <= set(CLASS_NAMES)
        values = list(scores["per_class"].values())
        assert all(0.0 <= v <= 1.0 for v in values)
        assert scores["mean"] == pytest.approx(float(np.mean(values)))
    first, second = result.values()
    assert first == second  # the same checkpoint scored twice


def test_frame_indices_spread_evenly() -> None:
    assert frame_indices(10, 0) == list(range(10))
    assert frame_indices(10, 5) == [0, 2, 4, 6, 8]
    assert frame_indices(3, 8) == [0, 1, 2]


def test_ablation_ladder_is_cumulative() -> None:
    base = front_config()
    base = replace(base, loss=replace(base.loss, depth_weight=1.0))
    full = front_config(full=True)
    rungs = dict(ladder(base, full))
    assert list(rungs) == ["0_baseline", "1_no_depth_sup", "2_causal_loss", "3_grouped_lift", "4_camera_offsets",
                           "5_normalized_conv"]
    assert rungs["0_baseline"].loss.depth_weight == 1.0 and rungs["1_no_depth_sup"].loss.depth_weight == 0.0
    assert rungs["2_causal_loss"].loss.causal_weight == 1.0 and rungs["2_causal_loss"].depth.groups == 1
    assert rungs["3_grouped_lift"].depth.groups == 4 and not rungs["3_grouped_lift"].offsets.enabled
    assert rungs["4_camera_offsets"].offsets.enabled and rungs["4_camera_offsets"].voxel.propagation == "residual"
    assert rungs["5_normalized_conv"].voxel == full.voxel
    with pytest.raises(ValueError, match="differs"):
        ladder(base, replace(full, image=replace(full.image, width=160)))
    supervised = replace(full, loss=replace(full.loss, depth_weight=1.0))  # no rung 1 where depth is the same
    assert [n for n, _ in ladder(base, supervised)] == ["0_baseline", "2_causal_loss", "3_grouped_lift",
                                                        "4_camera_offsets", "5_normalized_conv"]
