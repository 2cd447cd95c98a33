"""The training loop: AdamW, warm-up + cosine, clipping, AMP on CUDA, checkpoints, resume, DDP.

The model and its loss run inside one module (:class:`TrainStep`) so that under
DistributedDataParallel the causal loss' inner ``autograd.grad(..., create_graph=True)``
(w.r.t. the image features) happens inside the DDP forward: it never accumulates into
parameter ``.grad``, so DDP's reducer only fires during the one outer ``backward``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from scaocc_core.batch import Batch, collate
from scaocc_core.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from scaocc_core.config import ModelConfig, model_config_from_dict
from scaocc_core.data.augment import AugmentConfig
from scaocc_core.data.dataset import OccDataset, class_frequencies
from scaocc_core.data.manifest import ManifestError
from scaocc_core.losses import OccupancyLoss, class_weights
from scaocc_core.model.causal_occ import CausalOcc
from scaocc_core.model.encoder import load_encoder_weights
from scaocc_core.training.config import TrainConfig, lr_factor
from scaocc_core.training.distributed import DistInfo, barrier
from scaocc_core.training.evaluate import evaluate_model
from scaocc_core.training.records import MetricsLog, plot_curves
from scaocc_core.training.synthdata import cache_synthetic_frames

log = logging.getLogger(__name__)

LAST = "last.pt"
FINAL = "final.pt"


class TrainStep(nn.Module):
    """Forward + loss in one module: ``batch -> (total loss, {part: value})``."""

    def __init__(self, model: CausalOcc, loss: OccupancyLoss, amp_dtype: torch.dtype | None) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.amp_dtype = amp_dtype

    def forward(self, batch: Batch, generator: torch.Generator, progress: float = 1.0,
                step: int | None = None) -> tuple[Tensor, dict[str, float]]:
        """Loss of one batch; ``generator`` draws the causal loss' class, ``progress`` (0..1) its
        warm-up and the training ``step`` its lazy schedule."""
        device = batch.inputs.images.device
        ctx = torch.autocast(device.type, dtype=self.amp_dtype) if self.amp_dtype is not None else nullcontext()
        with ctx:
            out = self.model(batch.inputs)
            return self.loss(out, batch.targets, generator, progress, step)


@dataclass
class TrainResult:
    """What a finished (or resumed-to-the-end) run reports."""

    run_dir: Path
    steps: int
    final_checkpoint: Path
    mean_step_time_s: float
    train_seconds: float
    model: CausalOcc
    val_history: list[tuple[int, float]] = field(default_factory=list)


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: only on CUDA, as configured."""
    if device.type != "cuda" or cfg.amp == "none":
        return None
    return torch.bfloat16 if cfg.amp == "bf16" else torch.float16


def epoch_batches(dataset: OccDataset, cfg: TrainConfig, info: DistInfo, epoch: int) -> list[list[int]]:
    """This process' batches (lists of frame indices) of ``epoch``: shuffled, sharded, full."""
    sampler: DistributedSampler[int] = DistributedSampler(
        dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.seed, drop_last=True)
    sampler.set_epoch(epoch)
    ids = list(sampler)
    n = len(ids) // cfg.batch_size
    return [ids[i * cfg.batch_size : (i + 1) * cfg.batch_size] for i in range(n)]


def causal_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """The causal loss' class sampler for one step: a pure function of (seed, rank, step)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + rank * 7919 + step) % (2**63))


@dataclass
class RunState:
    """Everything besides the weights that a run needs to continue exactly where it stopped.

    Saved as one dict under ``train_state`` in ``last.pt`` and read back with the same keys
    (as nanoGPT does with its checkpoint dict).
    """

    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    scheduler: torch.optim.lr_scheduler.LambdaLR
    step: int = 0
    seconds: float = 0.0

    def state_dict(self) -> dict[str, Any]:
        """Plain dict for the checkpoint."""
        return {"step": self.step, "seconds": self.seconds, "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`'s output."""
        self.step, self.seconds = int(state["step"]), float(state["seconds"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])


def _resume(path: Path, cfg: ModelConfig, model: CausalOcc, state: RunState) -> None:
    payload = read_checkpoint(path)
    if model_config_from_dict(payload["config"]) != cfg:
        raise CheckpointError(f"{path} was trained with another model config; use a new --out or the same --config")
    train_state = payload.get("train_state")
    if not isinstance(train_state, dict) or set(train_state) != set(state.state_dict()):
        raise CheckpointError(f"{path} has no complete train_state; it cannot be resumed")
    model.load_state_dict(payload["model"])
    state.load_state_dict(train_state)


def _datasets(model_cfg: ModelConfig, cfg: TrainConfig, data: str) -> tuple[OccDataset, OccDataset | None]:
    augment = (AugmentConfig(extrinsic_noise_prob=cfg.extrinsic_noise_prob, lowres_prob=cfg.lowres_prob)
               if cfg.augment else None)
    train_ds = cache_synthetic_frames(OccDataset(data, "train", model_cfg, augment=augment, seed=cfg.seed))
    try:
        return train_ds, cache_synthetic_frames(OccDataset(data, "val", model_cfg))
    except ManifestError:
        log.warning("%s has no val split; training without validation", data)
        return train_ds, None


def _build_model(model_cfg: ModelConfig, cfg: TrainConfig, device: torch.device) -> CausalOcc:
    torch.manual_seed(cfg.seed)  # identical initial weights in every process
    model = CausalOcc(model_cfg)
    if model_cfg.encoder.pretrained:
        load_encoder_weights(model.encoder, model_cfg.encoder.pretrained)
    return model.to(device).train()


def init_from(path: Path, model: CausalOcc) -> dict[str, Any]:
    """Load every weight of ``model`` from checkpoint ``path`` (a previous training stage).

    Only the weights: the optimiser, schedule and step start afresh. Returns the provenance to
    store in the new checkpoints' meta (``init``): the file, its sha256, its own meta (so a chain
    of stages stays traceable) and the pretrained encoder the chain started from (a later
    stage's config has none of its own). The architectures must match exactly.
    """
    payload = read_checkpoint(path)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as e:
        raise CheckpointError(f"--init {path}: its weights do not fit this model config ({e})") from e
    meta = payload.get("meta", {})
    encoder = payload["config"]["encoder"].get("pretrained") or (meta.get("init") or {}).get("pretrained_encoder")
    return {"checkpoint": str(path), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
            "pretrained_encoder": encoder, "meta": meta}


def train(model_cfg: ModelConfig, cfg: TrainConfig, data: str, run_dir: Path, info: DistInfo,
          resume: bool = False, progress: bool = True, init: Path | None = None) -> TrainResult:
    """Train ``model_cfg`` on ``data`` (its ``train`` split) into ``run_dir``; see module docs.

    ``init``: start from the weights of this checkpoint (:func:`init_from`) instead of a fresh
    model; a resumed run's own weights take precedence.
    """
    device = info.device
    run_dir = Path(run_dir)
    last = run_dir / LAST
    if last.exists() and not resume:
        raise FileExistsError(f"{run_dir} already holds a run ({last}); pass --resume or choose another --out")
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    train_ds, val_ds = _datasets(model_cfg, cfg, data)
    if len(train_ds) < cfg.batch_size * info.world_size:
        raise ValueError(f"training split of {data} has {len(train_ds)} frames, fewer than batch_size "
                         f"{cfg.batch_size} x {info.world_size} processes")
    weights = class_weights(class_frequencies(train_ds, cfg.class_frequency_frames))
    model = _build_model(model_cfg, cfg, device)
    init_meta = init_from(init, model) if init is not None else None
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    dtype = amp_dtype(cfg, device)
    state = RunState(optimizer, torch.amp.GradScaler("cuda", enabled=dtype == torch.float16),
                     torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg)))
    if resume and last.exists():
        _resume(last, model_cfg, model, state)
        log.info("resuming %s at step %d", run_dir, state.step)
    runner: nn.Module = TrainStep(model, OccupancyLoss(model_cfg.loss, model_cfg.depth, weights), dtype)
    if info.distributed:
        # Unused-parameter detection: e.g. a stride-8 encoder never runs ResNet layer4.
        runner = DistributedDataParallel(runner, device_ids=[device.index] if device.type == "cuda" else None,
                                         find_unused_parameters=True)
    records = MetricsLog(run_dir, resume_step=state.step) if info.is_main else None
    steps_per_epoch = len(epoch_batches(train_ds, cfg, info, 0))
    val_history: list[tuple[int, float]] = []
    step_times: list[float] = []
    bar = tqdm(total=cfg.steps, initial=state.step, desc=f"train {model_cfg.name}",
               disable=not (progress and info.is_main))
    while state.step < cfg.steps:
        epoch, offset = divmod(state.step, steps_per_epoch)
        train_ds.set_epoch(epoch)
        loader = DataLoader(train_ds, batch_sampler=epoch_batches(train_ds, cfg, info, epoch)[offset:],
                            collate_fn=collate, num_workers=cfg.num_workers,
                            multiprocessing_context="spawn" if cfg.num_workers > 0 else None)
        for batch in loader:
            t0 = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            parts, grad_norm = _optimise(runner, params, state, batch.to(device),
                                         causal_generator(cfg.seed, info.rank, state.step), cfg)
            dt = time.perf_counter() - t0
            step_times.append(dt)
            state.seconds += dt
            bar.update(1)
            bar.set_postfix(loss=f"{parts['total']:.3f}", s_per_step=f"{dt:.2f}")
            row: dict[str, Any] = {}
            if state.step % cfg.log_every == 0 or state.step == cfg.steps:
                row = {"step": state.step, "epoch": epoch, "lr": lr, "elapsed_s": round(state.seconds, 2),
                       "step_time_s": round(dt, 4), "grad_norm": grad_norm, **parts}
            if val_ds is not None and len(val_ds) and (state.step % cfg.val_every == 0 or state.step == cfg.steps):
                s = evaluate_model(model, val_ds, device, cfg.val_frames, info, progress, desc="val").summary()
                val_history.append((state.step, s["miou"]))
                row = {**row, "step": state.step, "val_miou": s["miou"], "val_miou_d": s["miou_d"], "val_iou": s["iou"]}
                log.info("step %d: val mIoU %.2f%% (native grid %s)", state.step, 100 * s["miou"],
                         "x".join(map(str, model_cfg.grid.size)))
            if records is not None and row:
                records.log(row)
            if info.is_main and (state.step % cfg.checkpoint_every == 0 or state.step == cfg.steps):
                save_checkpoint(last, model, model_cfg, meta={"step": state.step, "data": data,
                                                              "train_config": cfg.to_dict(), "init": init_meta},
                                train_state=state.state_dict())
            if state.step >= cfg.steps:
                break
    bar.close()
    final = run_dir / FINAL
    if info.is_main:
        if records is not None:
            records.close()
            plot_curves(records.path, run_dir / "curves.png")
        meta = {"step": state.step, "train_seconds": state.seconds, "data": data, "train_config": cfg.to_dict(),
                "val_miou": val_history[-1][1] if val_history else None, "init": init_meta}
        save_checkpoint(final, model, model_cfg, meta=meta)
    barrier(info)
    mean_dt = sum(step_times[1:]) / max(len(step_times) - 1, 1) if step_times else 0.0
    return TrainResult(run_dir, state.step, final, mean_dt, state.seconds, model, val_history)


def _optimise(runner: nn.Module, params: list[nn.Parameter], state: RunState, batch: Batch, generator: torch.Generator,
              cfg: TrainConfig) -> tuple[dict[str, float], float]:
    """One optimiser step on ``batch``; advances ``state``. Returns the loss parts and the gradient norm."""
    total, parts = runner(batch, generator, state.step / max(cfg.steps, 1), state.step)
    if not math.isfinite(parts["total"]) and not state.scaler.is_enabled():
        raise FloatingPointError(f"loss became non-finite at step {state.step}: {parts}")
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(total).backward()
    state.scaler.unscale_(state.optimizer)
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip or math.inf))
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.scheduler.step()
    state.step += 1
    return parts, grad_norm
