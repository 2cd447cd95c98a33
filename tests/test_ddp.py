"""DistributedDataParallel training: 2 gloo processes, the full method (causal loss inside DDP)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from scaocc_core.checkpoint import read_checkpoint
from scaocc_core.model.causal_occ import CausalOcc
from scaocc_core.training.distributed import cleanup, setup
from scaocc_core.training.engine import LAST, train
from scaocc_core.training.records import read_metrics

from .fixtures import front_config, micro_train_config, write_micro_world

WORLD_SIZE = 2
STEPS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, port: int, data: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    info = setup("cpu")
    try:
        cfg = micro_train_config(STEPS, checkpoint_every=2, val_every=STEPS)
        result = train(front_config(full=True), cfg, data, Path(out) / "run", info, progress=False)
        params = {k: v.detach().clone() for k, v in result.model.named_parameters()}
        torch.save(params, Path(out) / f"rank{rank}.pt")
    finally:
        cleanup(info)


@pytest.mark.slow
def test_two_gloo_replicas_stay_identical(tmp_path: Path) -> None:
    data = write_micro_world(tmp_path / "world", scenes=3, frames=1, val_scenes=1)  # 2 train frames, 1 per rank
    torch.manual_seed(123)
    initial = {k: v.detach().clone() for k, v in CausalOcc(front_config(full=True)).named_parameters()}
    mp.spawn(_worker, args=(_free_port(), str(data), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert w0.keys() == w1.keys() == initial.keys()
    for k in w0:  # parameters (BN running statistics are per-process buffers, as in any DDP run)
        assert torch.equal(w0[k], w1[k]), f"replicas disagree on {k}"
    moved = [k for k in w0 if not torch.allclose(w0[k], initial[k])]
    assert len(moved) > len(w0) // 2, "training did not update the weights"
    # only rank 0 wrote: one metrics file with one row per step, a resumable checkpoint
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, STEPS + 1))
    assert read_checkpoint(tmp_path / "run" / LAST)["train_state"]["step"] == STEPS
