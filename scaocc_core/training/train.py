"""Train a model: ``scaocc train --config config/model/X.yaml --data DATA --out RUN_DIR``.

Single process by default; under ``torchrun --nproc_per_node=K -m scaocc_core.training.train``
(or ``torchrun ... $(which scaocc) train ...``) it trains with DistributedDataParallel
(gloo on CPU, NCCL on CUDA). ``DATA`` is a manifest directory or ``synthetic:KEY=VALUE,...``.
RUN_DIR receives ``last.pt`` (resumable, every ``checkpoint_every`` steps), ``final.pt``,
``metrics.csv``, ``curves.png`` and ``tensorboard/`` (when TensorBoard is installed).

Example::

    scaocc train --config config/model/scaocc_tiny.yaml --data data/synth_default \\
        --train-config config/train/cpu.yaml --out runs/tiny --steps 300
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import sys
from pathlib import Path

import yaml

from scaocc_core.config import ConfigError, load_config
from scaocc_core.memory import keep_freed_memory
from scaocc_core.training.config import TrainConfig, load_train_config
from scaocc_core.training.distributed import cleanup, setup
from scaocc_core.training.engine import train

log = logging.getLogger(__name__)
DEFAULT_TRAIN_CONFIG = Path(__file__).resolve().parents[2] / "config" / "train" / "cpu.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``scaocc train``."""
    parser.add_argument("--config", required=True, type=Path, help="model YAML (config/model/*.yaml)")
    parser.add_argument("--data", required=True, help="manifest directory or synthetic:scenes=8,frames=10,...")
    parser.add_argument("--out", required=True, type=Path, help="run directory (checkpoints, metrics.csv, curves.png)")
    parser.add_argument("--train-config", type=Path, default=None,
                        help="training YAML (config/train/*.yaml); default: config/train/cpu.yaml")
    parser.add_argument("--steps", type=int, default=None, help="override the number of optimiser steps")
    parser.add_argument("--seed", type=int, default=None, help="override the run seed")
    parser.add_argument("--pretrained", type=Path, default=None,
                        help="initialise the image encoder from this file (scaocc pretrain's encoder.pt, or a "
                             "torchvision/mmdet ResNet); overrides encoder.pretrained of --config")
    parser.add_argument("--init", type=Path, default=None,
                        help="start from every weight of this checkpoint (a previous stage's final.pt), with a "
                             "fresh optimiser and schedule; the architecture must match --config")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt if it exists")
    parser.add_argument("--device", default=None, choices=("cpu", "cuda"), help="default: cuda if available")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def resolve_train_config(path: Path | None, steps: int | None = None, seed: int | None = None) -> TrainConfig:
    """The training config from ``path`` (default: ``config/train/cpu.yaml``) with overrides applied."""
    if path is None and DEFAULT_TRAIN_CONFIG.is_file():
        path = DEFAULT_TRAIN_CONFIG
    cfg = load_train_config(path) if path is not None else TrainConfig()
    if steps is not None:
        cfg = dataclasses.replace(cfg, steps=steps)
    if seed is not None:
        cfg = dataclasses.replace(cfg, seed=seed)
    return cfg.validate()


def run(args: argparse.Namespace) -> int:
    """Run ``scaocc train``."""
    model_cfg = load_config(args.config)
    if args.pretrained is not None:
        if not args.pretrained.is_file():
            raise ConfigError(f"--pretrained {args.pretrained}: no such file")
        model_cfg = dataclasses.replace(
            model_cfg, encoder=dataclasses.replace(model_cfg.encoder, pretrained=str(args.pretrained)))
    cfg = resolve_train_config(args.train_config, args.steps, args.seed)
    info = setup(args.device)
    try:
        if info.is_main:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "model.yaml").write_text(yaml.safe_dump(model_cfg.to_dict(), sort_keys=False))
            (args.out / "command.txt").write_text(" ".join(shlex.quote(a) for a in sys.argv) + "\n")
        result = train(model_cfg, cfg, args.data, args.out, info, resume=args.resume, progress=not args.no_progress,
                       init=args.init)
    finally:
        cleanup(info)
    if info.is_main:
        best = f", val mIoU {100 * result.val_history[-1][1]:.2f}%" if result.val_history else ""
        print(f"trained {result.steps} steps ({result.mean_step_time_s:.2f} s/step{best}) -> {result.final_checkpoint}")
    return 0


def main() -> int:
    """Entry point for ``torchrun -m scaocc_core.training.train``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="scaocc train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args()
    keep_freed_memory()  # as the scaocc command line does (scaocc_core.memory)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
