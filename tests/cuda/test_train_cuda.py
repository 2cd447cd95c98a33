"""One training step of every shipped config on CUDA: causal loss, AMP, no NaN.

The step is the training loop's own (:class:`~scaocc_core.training.engine.TrainStep` under
autocast, GradScaler, clipping, AdamW); the inputs are random images on a ring rig with a
synthetic voxel and 2D ground truth holding several classes, so the causal loss samples a
real class and differentiates through the 3D network twice.
"""

from __future__ import annotations

import math

import pytest
import torch

from scaocc_core.batch import Batch
from scaocc_core.losses import OccupancyLoss
from scaocc_core.model.causal_occ import CausalOcc
from scaocc_core.training.engine import TrainStep
from tests.cuda.common import CONFIGS, ON_CUDA, model_config, ring_inputs, synthetic_targets

pytestmark = pytest.mark.cuda


def one_step(name: str, device: torch.device, amp: torch.dtype | None) -> tuple[dict[str, float], float]:
    """Run one step; returns the loss parts and the largest parameter change."""
    cfg = model_config(name)
    assert cfg.loss.causal_weight > 0 or name.startswith("baseline")
    torch.manual_seed(0)
    model = CausalOcc(cfg).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    step = TrainStep(model, OccupancyLoss(cfg.loss, cfg.depth), amp)
    inputs, targets = ring_inputs(cfg, device, seed=1), synthetic_targets(cfg, device, seed=1)
    total, parts = step(Batch(inputs, targets), torch.Generator().manual_seed(0))
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    scaler.unscale_(optimizer)
    grads = [p.grad for p in params if p.grad is not None]
    assert grads, "no parameter received a gradient"
    assert all(bool(torch.isfinite(g).all()) for g in grads), "non-finite gradient"
    torch.nn.utils.clip_grad_norm_(params, 5.0)
    scaler.step(optimizer)
    scaler.update()
    change = max(float((p.detach() - b).abs().max()) for p, b in zip(params, before))
    return parts, change


@pytest.mark.parametrize("name", CONFIGS)
def test_train_step_with_causal_loss_and_amp(device: torch.device, name: str) -> None:
    amp = torch.bfloat16 if ON_CUDA else None  # the GPU recipe (config/train/default.yaml) is bf16
    parts, change = one_step(name, device, amp)
    assert all(math.isfinite(v) for v in parts.values()), parts
    if not name.startswith("baseline"):
        assert "causal" in parts and parts["causal"] > 0, parts
    assert change > 0, "the optimizer did not move any parameter"


def test_train_step_fp16_with_grad_scaler(device: torch.device) -> None:
    if not ON_CUDA:
        pytest.skip("float16 autocast needs CUDA (dry run on the CPU)")
    parts, change = one_step("scaocc_tiny", device, torch.float16)
    assert math.isfinite(parts["total"]) and parts["causal"] > 0 and change > 0
