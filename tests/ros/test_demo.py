"""The demo: model choice (random weights said so), scoring against the truth, and a short run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from std_msgs.msg import Header

from scaocc_core.config import GridConfig
from scaocc_core.data.labels import OccLabels, downsample_labels
from scaocc_core.grid import CLASS_NAMES, FREE
from scaocc_core.predictor import Prediction
from scaocc_ros import outputs
from scaocc_ros.tools import demo, demo_record
from scaocc_ros.tools import synth_msgs as sm
from scaocc_ros.tools.demo_record import (
    Recording,
    decode_images,
    grid_of,
    latency_stats,
    picture_stamp,
    score,
    write_pictures,
)
from scaocc_ros.tools.processes import free_domain_id, ros_environment
from tests.fixtures import tiny_checkpoint

OCC3D = GridConfig()
MODEL_GRID = GridConfig(size=(100, 100, 8))


def test_model_choice_says_random_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "DEMO_CHECKPOINT", tmp_path / "absent.pt")
    args, model = demo.model_choice(None)
    assert args == [] and model["random_weights"] and "RANDOMLY INITIALISED" in model["note"]
    ckpt = tmp_path / "present.pt"
    ckpt.write_bytes(b"x")
    monkeypatch.setattr(demo, "DEMO_CHECKPOINT", ckpt)
    assert demo.model_choice(None) == (["--model", str(ckpt)], {"kind": "checkpoint", "path": str(ckpt),
                                                                 "random_weights": False})
    with pytest.raises(FileNotFoundError, match="not found"):
        demo.model_choice(tmp_path / "missing.pt")


def _prediction_msg(labels: np.ndarray, stamp: int) -> object:
    pred = Prediction(labels, np.zeros_like(labels), np.zeros((6, 3)), np.zeros((6, 3)))
    return outputs.voxel_grid_msg(pred, MODEL_GRID, CLASS_NAMES, Header(stamp=sm.stamp_msg(stamp)))


def test_score_compares_on_the_model_grid_by_stamp() -> None:
    rng = np.random.default_rng(0)
    sem = np.full(OCC3D.size, FREE, np.uint8)
    sem[:, :, :2] = 11  # road
    sem[rng.random(OCC3D.size) < 0.02] = 4  # cars
    visible = rng.random(OCC3D.size) < 0.7
    truth = downsample_labels(OccLabels(sem, visible, visible), (2, 2, 2)).semantics
    rec = Recording()
    rec.truths = {1: sm.ground_truth_msg(sem, visible, OCC3D, 1), 2: sm.ground_truth_msg(sem, visible, OCC3D, 2)}
    rec.predictions = {1: _prediction_msg(truth, 1), 3: _prediction_msg(truth, 3)}  # stamp 3 has no truth
    rec.receive_ns = {1: 1 + 250_000_000, 3: 3 + 450_000_000}
    assert grid_of(rec.truths[1]) == OCC3D and grid_of(rec.predictions[1]) == MODEL_GRID
    metric, matched = score(rec)
    assert matched == [1] and metric.summary()["miou"] == pytest.approx(1.0)
    rec.predictions[1] = _prediction_msg(np.full(MODEL_GRID.size, FREE, np.uint8), 1)
    metric, _ = score(rec)
    assert metric.summary()["miou"] == 0.0 and metric.summary()["iou"] == 0.0
    stats = latency_stats(rec)
    assert stats["latency_p50_ms"] == pytest.approx(350.0) and stats["latency_p95_ms"] == pytest.approx(440.0)


def test_pictures_use_the_most_complete_answered_set_and_tolerate_missing_cameras() -> None:
    """A camera image the recorder missed no longer means no pictures: the most complete answered
    set is drawn, and decoding leaves the missed camera as ``None`` (drawn grey)."""
    images = {1: {"a": b"", "b": b""}, 2: {"a": b""}, 3: {"a": b"", "b": b""}, 9: {"a": b"", "b": b""}}
    assert picture_stamp([1, 2, 3], images) == 3  # the newest complete answered set; 9 was not answered
    assert picture_stamp([1, 2], {2: {"a": b""}}) == 2 and picture_stamp([4], {}) == 4
    assert picture_stamp([], images) is None
    assert decode_images({}, ["CAM_FRONT", "CAM_BACK"], compressed=True) == [None, None]


def test_pictures_draw_what_arrived_and_name_what_the_recorder_missed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CameraInfo the recorder never received (a clean-clone CI run lost one camera's) leaves
    that camera without voxels and named in the title; it no longer aborts the demo."""
    labels = np.full(MODEL_GRID.size, FREE, np.uint8)
    labels[60:70, 45:55, 1:4] = 4  # a car 8-16 m ahead
    rec = Recording()
    rec.predictions = {5: _prediction_msg(labels, 5)}
    K = np.array([[100.0, 0, 80], [0, 100.0, 40], [0, 0, 1]])
    optical_T = {"front": [[0, 0, 1], [-1, 0, 0], [0, -1, 0]], "back": [[0, 0, -1], [1, 0, 0], [0, -1, 0]]}
    for cam, R in optical_T.items():
        T = np.eye(4)
        T[:3, :3] = R
        rec.tf_tree.set(sm.EGO_FRAME, sm.optical_frame(cam), T)
    rec.infos = {"front": sm.camera_info_msg("front", K, 80, 160, 5)}  # "back"'s never arrived
    drawn: dict[str, object] = {}

    def capture(images: list[np.ndarray], overlays: list[np.ndarray], path: Path, suptitle: str) -> Path:
        drawn.update(images=images, overlays=overlays, suptitle=suptitle)
        return camera_overlay(images, overlays, path, suptitle=suptitle)

    camera_overlay = demo_record.camera_overlay_png
    monkeypatch.setattr(demo_record, "camera_overlay_png", capture)
    paths = write_pictures(rec, 5, [None, np.zeros((80, 160, 3), np.uint8)], ["front", "back"], tmp_path, "t")
    assert [p.name for p in paths] == ["bev.png", "cameras_pred.png"] and all(p.stat().st_size for p in paths)
    front, back = drawn["overlays"]  # type: ignore[misc]
    assert (front == 4).any() and (back == 255).all()  # the car drawn where calibrated, nothing else
    assert drawn["images"][0].shape == (80, 160, 3) and (drawn["images"][0] == 128).all()  # type: ignore[index]
    assert "no image received from front" in drawn["suptitle"]  # type: ignore[operator]
    assert "no calibration received from back" in drawn["suptitle"]  # type: ignore[operator]


@pytest.mark.slow
def test_short_demo_run(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "micro.pt")
    out = tmp_path / "demo_out"
    cmd = [sys.executable, "-m", "scaocc_ros.tools.demo", "--out", str(out), "--frames", "3", "--rate", "4",
           "--resolution", "64x176", "--checkpoint", str(ckpt), "--drain-s", "3", "--timeout", "90"]
    run = subprocess.run(cmd, env=ros_environment(free_domain_id()), capture_output=True, text=True, timeout=150)
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == {"kind": "checkpoint", "path": str(ckpt), "random_weights": False}
    assert summary["frames_in"] == 3 and 1 <= summary["frames_published"] <= 3
    assert summary["scored_frames"] == summary["frames_published"] and 0.0 <= summary["miou"] <= 1.0
    assert summary["latency_p50_ms"] > 0 and summary["latency_p95_ms"] >= summary["latency_p50_ms"]
    assert summary["topics_recorded"]["/occ_node/points"] == summary["frames_published"]
    for name in ("cameras_pred.png", "bev.png", "outputs.mcap"):
        assert (out / name).stat().st_size > 0, name
    assert str(out / "bev.png") in run.stdout and "model: " + str(ckpt) in run.stdout
