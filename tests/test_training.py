"""Training loop: schedule, config errors, checkpoints that resume exactly, corrupt files, records."""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from scaocc_core.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from scaocc_core.config import ConfigError
from scaocc_core.training.config import TrainConfig, lr_factor, train_config_from_dict
from scaocc_core.training.distributed import DistInfo
from scaocc_core.training.engine import FINAL, LAST, train
from scaocc_core.training.publish import publish
from scaocc_core.training.records import read_metrics
from scaocc_core.training.synthdata import CachedFrames

from .fixtures import front_config, micro_train_config, write_micro_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(write_micro_world(tmp_path_factory.mktemp("world"), scenes=2, frames=2, val_scenes=1))


def test_lr_schedule_warms_up_then_decays() -> None:
    cfg = TrainConfig(steps=100, warmup_steps=10, min_lr_ratio=0.1)
    factors = [lr_factor(s, cfg) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(factors[:10], factors[1:10]))
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert factors[-1] == pytest.approx(0.1, abs=2e-3)


def test_train_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="stepz"):
        train_config_from_dict({"stepz": 3})
    with pytest.raises(ConfigError, match="amp"):
        train_config_from_dict({"amp": "fp8"})
    with pytest.raises(ConfigError, match="steps"):
        train_config_from_dict({"steps": 0})


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["model"]


def test_resume_continues_with_the_same_weights(world: str, tmp_path: Path) -> None:
    cfg = front_config(full=True)  # causal loss, offsets, soft pooling: the hardest state to restore
    constant = dict(warmup_steps=0, min_lr_ratio=1.0, checkpoint_every=1)
    straight = train(cfg, micro_train_config(3, **constant), world, tmp_path / "straight", DistInfo(), progress=False)
    first = train(cfg, micro_train_config(2, **constant), world, tmp_path / "split", DistInfo(), progress=False)
    state = read_checkpoint(tmp_path / "split" / LAST)
    assert state["train_state"]["step"] == 2 and first.steps == 2
    assert set(state["train_state"]) == {"optimizer", "scheduler", "scaler", "step", "seconds"}
    resumed = train(cfg, micro_train_config(3, **constant), world, tmp_path / "split", DistInfo(), resume=True,
                    progress=False)
    assert resumed.steps == 3 and len([r for r in read_metrics(tmp_path / "split" / "metrics.csv")]) == 3
    a, b = _weights(straight.final_checkpoint), _weights(resumed.final_checkpoint)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=f"weight {k} differs after resume")
    changed = any(not torch.equal(a[k], state["model"][k]) for k in a if a[k].is_floating_point())
    assert changed, "the resumed step did not update the weights"


def test_training_writes_records_and_refuses_to_overwrite(world: str, tmp_path: Path) -> None:
    cfg = micro_train_config(2, val_every=2)
    result = train(front_config(), cfg, world, tmp_path, DistInfo(), progress=False)
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert rows[-1]["val_miou"] != "" and float(rows[0]["total"]) > 0
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert result.val_history and result.val_history[-1][0] == 2
    model, loaded_cfg = load_checkpoint(tmp_path / FINAL)
    assert loaded_cfg == front_config() and not model.training
    with pytest.raises(FileExistsError, match="--resume"):
        train(front_config(), cfg, world, tmp_path, DistInfo(), progress=False)


def test_corrupt_checkpoint_gives_a_clear_error(world: str, tmp_path: Path) -> None:
    (tmp_path / LAST).write_bytes(b"\x80\x02 definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        train(front_config(), micro_train_config(2), world, tmp_path, DistInfo(), resume=True, progress=False)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / LAST)


def test_resume_with_another_config_is_refused(world: str, tmp_path: Path) -> None:
    train(front_config(), micro_train_config(1, checkpoint_every=1), world, tmp_path, DistInfo(), progress=False)
    other = replace(front_config(), name="other")
    with pytest.raises(CheckpointError, match="another model config"):
        train(other, micro_train_config(2), world, tmp_path, DistInfo(), resume=True, progress=False)


def test_second_stage_starts_from_the_first_stage_weights(world: str, tmp_path: Path) -> None:
    """``train --init``: stage 2 starts from stage 1's weights (fresh optimiser), records where they
    came from, and publish adds the steps of both stages; a checkpoint of another architecture is refused."""
    cfg = front_config()
    first = train(cfg, micro_train_config(2), world, tmp_path / "one", DistInfo(), progress=False)
    zero_lr = micro_train_config(1, lr=1e-12, warmup_steps=0, min_lr_ratio=1.0, weight_decay=0.0)
    second = train(cfg, zero_lr, world, tmp_path / "two", DistInfo(), progress=False, init=first.final_checkpoint)
    a, b = _weights(first.final_checkpoint), _weights(second.final_checkpoint)
    for k in a:
        if a[k].is_floating_point() and "running" not in k:  # BatchNorm statistics still move in train mode
            torch.testing.assert_close(a[k], b[k], msg=f"weight {k} did not come from --init")
    meta = read_checkpoint(second.final_checkpoint)["meta"]
    assert meta["init"]["checkpoint"] == str(first.final_checkpoint) and meta["init"]["meta"]["step"] == 2
    record = publish(tmp_path / "two", world, tmp_path / "m.pt", tmp_path / "m.json", "cmd", max_frames=1)
    assert record["train_steps"] == 1 and record["total_train_steps"] == 3
    with pytest.raises(CheckpointError, match="do not fit"):
        train(front_config(full=True), micro_train_config(1), world, tmp_path / "three", DistInfo(), progress=False,
              init=first.final_checkpoint)


class CountingSource:
    """A frame source that counts its renders."""

    grid = None
    calls = 0

    def __len__(self) -> int:
        return 3

    def frame(self, index: int) -> list[int]:
        CountingSource.calls += 1
        return [index] * 1000


def test_frame_cache_is_not_pickled_to_workers() -> None:
    cached = CachedFrames(CountingSource())
    assert cached.frame(1) == cached.frame(1) and CountingSource.calls == 1  # rendered once, then kept
    copy = pickle.loads(pickle.dumps(cached))  # what a spawned DataLoader worker receives
    assert copy.cache == {} and cached.cache.keys() == {1}
    assert copy.frame(2) == [2] * 1000
