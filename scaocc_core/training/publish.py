"""Publish a finished run as a small checkpoint plus a provenance JSON (used by ``make models``).

The published file is the run's ``final.pt`` (weights and config, no optimiser state). The
JSON records the training command, the git commit, the data source and its seed, the training
time, and metrics measured now on the native Occ3D grid: on the data's ``val`` split (used
for model selection), clean and under the standard noise, and, with ``--test``, on a held-out
world never used for training or selection, clean and under so3 noise of 1 deg / 5 cm and
3 deg / 15 cm.

Example::

    python -m scaocc_core.training.publish --run runs/models/scaocc_tiny --data DATA --test data/test_s1000 \\
        --out models/scaocc_tiny.pt --json models/scaocc_tiny.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from scaocc_core.checkpoint import read_checkpoint
from scaocc_core.data.noise import CameraNoise
from scaocc_core.training.engine import FINAL
from scaocc_core.training.evaluate import evaluate_checkpoint
from scaocc_core.training.robustness import STANDARD, relative_drop

log = logging.getLogger(__name__)


def git_commit(repo: Path) -> str | None:
    """The current commit of ``repo`` (with ``-dirty`` if tracked files changed), or None."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("-dirty" if dirty else "")


#: Camera noise levels of the held-out test (the issue's targets use the 3 deg / 15 cm one).
TEST_NOISES = (STANDARD, CameraNoise("so3", 3.0, 0.15))


def _scores(checkpoint: Path, data: str, split: str, noise: CameraNoise | None, max_frames: int) -> dict[str, Any]:
    s = evaluate_checkpoint(checkpoint, data, split, noise, max_frames=max_frames)
    for key in ("table", "checkpoint"):
        s.pop(key)
    return s


def held_out_scores(checkpoint: Path, test: str, max_frames: int = 0) -> dict[str, Any]:
    """Clean and noisy native scores on every frame (split ``all``) of the held-out ``test`` world."""
    clean = _scores(checkpoint, test, "all", None, max_frames)
    out: dict[str, Any] = {"clean": clean}
    for noise in TEST_NOISES:
        noisy = _scores(checkpoint, test, "all", noise, max_frames)
        out[str(noise)] = noisy | {"relative_drop": relative_drop(clean["miou"], noisy["miou"])}
    return out


def publish(run_dir: Path, data: str, out: Path, json_path: Path, command: str, max_frames: int = 0,
            test: str | None = None) -> dict[str, Any]:
    """Copy ``run_dir/final.pt`` to ``out`` and write its provenance to ``json_path``."""
    final = run_dir / FINAL
    payload = read_checkpoint(final)
    meta = payload.get("meta", {})
    chain = [meta]  # this stage and the stages it was initialised from (train --init)
    while isinstance(chain[-1].get("init"), dict):
        chain.append(chain[-1]["init"].get("meta") or {})
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(final, out)
    clean = _scores(out, data, "val", None, max_frames)
    noisy = _scores(out, data, "val", STANDARD, max_frames)
    record = {
        "checkpoint": out.name,
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "size_bytes": out.stat().st_size,
        "model": payload["config"]["name"],
        "command": command,
        "git_commit": git_commit(Path(__file__).resolve().parents[2]),
        "data": data,
        "data_seed": _data_seed(data),
        "train_steps": meta.get("step"),
        "train_seconds": meta.get("train_seconds"),
        "train_config": meta.get("train_config"),
        "init": meta.get("init"),
        "total_train_steps": sum(m.get("step") or 0 for m in chain),
        "total_train_seconds": sum(m.get("train_seconds") or 0.0 for m in chain),
        "pretrained_encoder": payload["config"]["encoder"]["pretrained"] or (meta.get("init") or {}).get(
            "pretrained_encoder"),
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
                    "cuda": torch.cuda.is_available()},
        "eval_val_clean": clean,
        "eval_val_noise": noisy,
        "relative_drop_standard_noise": relative_drop(clean["miou"], noisy["miou"]),
        "test": None if test is None else {"data": test, **held_out_scores(out, test, max_frames)},
    }
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def _data_seed(data: str) -> int | None:
    for item in data.split(","):
        key, _, value = item.partition("=")
        if key.strip().endswith("seed") and value.strip().isdigit():
            return int(value)
    return None


def main(argv: list[str] | None = None) -> int:
    """Command line of ``python -m scaocc_core.training.publish``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="finished run directory (holds final.pt)")
    parser.add_argument("--data", required=True, help="the data the run was trained on (its val split is scored)")
    parser.add_argument("--out", type=Path, required=True, help="published checkpoint path")
    parser.add_argument("--json", type=Path, required=True, help="provenance JSON path")
    parser.add_argument("--test", default=None, help="a held-out world (never trained on) scored clean and noisy")
    parser.add_argument("--command", default=None, help="training command to record (default: read from the run)")
    parser.add_argument("--max-frames", type=int, default=0, help="evaluate at most this many val frames")
    args = parser.parse_args(argv)
    cmd_file = args.run / "command.txt"
    command = args.command or (cmd_file.read_text().strip() if cmd_file.is_file() else "")
    record = publish(args.run, args.data, args.out, args.json, command, args.max_frames, args.test)
    val = record["eval_val_clean"]["miou"], record["eval_val_noise"]["miou"]
    print(f"{args.out} ({record['size_bytes'] / 1e6:.1f} MB), native Occ3D grid: val mIoU "
          f"{100 * val[0]:.2f}, under {STANDARD} {100 * val[1]:.2f}")
    if record["test"] is not None:
        t = record["test"]
        print(f"held-out {args.test}: mIoU {100 * t['clean']['miou']:.2f}, car IoU "
              f"{100 * (t['clean']['per_class']['car'] or 0):.2f}, RayIoU {100 * t['clean']['rayiou']:.2f}; "
              + ", ".join(f"{n} drop {100 * t[str(n)]['relative_drop']:.1f}%" for n in TEST_NOISES))
    print(f"-> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
