"""Learning is real: a micro model overfits two frames and beats a trivial predictor on unseen ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scaocc_core.data.dataset import OccDataset
from scaocc_core.grid import NUM_CLASSES
from scaocc_core.metrics import OccMetric
from scaocc_core.training.distributed import DistInfo
from scaocc_core.training.engine import train
from scaocc_core.training.evaluate import evaluate_model

from .fixtures import front_config, micro_train_config, write_micro_world


def test_micro_model_overfits_two_frames(tmp_path: Path) -> None:
    world = str(write_micro_world(tmp_path / "world", scenes=1, frames=2, val_scenes=0, preset="easy"))
    cfg = front_config()
    result = train(cfg, micro_train_config(100, lr=5e-3), world, tmp_path / "run", DistInfo(), progress=False)
    metric = evaluate_model(result.model, OccDataset(world, "train", cfg), torch.device("cpu"), progress=False)
    summary = metric.summary()
    assert summary["frames"] == 2
    assert summary["miou"] > 0.5, metric.table()


def per_height_prior(dataset: OccDataset) -> np.ndarray:
    """The trivial predictor: the most frequent (camera-visible) class of each height level, Z."""
    counts = np.zeros((front_config().grid.size[2], NUM_CLASSES), dtype=np.int64)
    for i in range(len(dataset)):
        labels = dataset.labels(i)
        assert labels is not None
        for z in range(counts.shape[0]):
            sem, mask = labels.semantics[..., z], labels.mask_camera[..., z]
            counts[z] += np.bincount(sem[mask].ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
    return counts.argmax(axis=1)


def test_trained_model_beats_per_height_prior_on_unseen_frames(tmp_path: Path) -> None:
    world = str(write_micro_world(tmp_path / "world", scenes=4, frames=2, val_scenes=1, seed=5))
    cfg = front_config()
    tcfg = micro_train_config(80, lr=5e-3, augment=True)
    result = train(cfg, tcfg, world, tmp_path / "run", DistInfo(), progress=False)
    val = OccDataset(world, "val", cfg)
    model_miou = evaluate_model(result.model, val, torch.device("cpu"), progress=False).summary()["miou"]
    prior = per_height_prior(OccDataset(world, "train", cfg))
    trivial = OccMetric()
    for i in range(len(val)):
        labels = val.labels(i)
        assert labels is not None
        guess = np.broadcast_to(prior, labels.semantics.shape).copy()  # X Y Z, constant per height
        trivial.update(guess[None], labels.semantics[None], labels.mask_camera[None])
    trivial_miou = trivial.summary()["miou"]
    # measured: 0.14 vs 0.06
    message = f"model {model_miou:.3f} vs per-height prior {trivial_miou:.3f}"
    assert model_miou > max(1.5 * trivial_miou, trivial_miou + 0.02), message
