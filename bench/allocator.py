"""Training-step time with glibc's default malloc against :func:`scaocc_core.memory.keep_freed_memory`.

Usage: ``python bench/allocator.py [--config scaocc_tiny] [--rounds 3] [--steps 5]``.
The allocator is a per-process setting, so each round runs one child process per setting,
alternating, each timing ``--steps`` plain training steps (causal loss off) and as many with
the causal loss after three warm-up steps. Printed side by side: median step times, page
faults and system time per step, peak memory, and the ratios.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from model_speed import fake_inputs  # noqa: E402

from scaocc_core.config import load_config  # noqa: E402
from scaocc_core.losses import OccupancyLoss  # noqa: E402
from scaocc_core.memory import keep_freed_memory  # noqa: E402
from scaocc_core.model.causal_occ import CausalOcc  # noqa: E402


def child(config: str, steps: int, keep: bool) -> dict[str, float]:
    """Time ``steps`` plain and causal training steps in this process; per-step medians and means."""
    torch.set_num_threads(1)
    if keep:
        keep_freed_memory()
    cfg = load_config(f"config/model/{config}.yaml")
    out: dict[str, float] = {}
    for causal in (False, True):
        c = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, causal_weight=float(causal), depth_weight=0.0))
        torch.manual_seed(0)
        model = CausalOcc(c).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        loss_fn = OccupancyLoss(c.loss, c.depth)
        inputs, targets = fake_inputs(cfg, torch.device("cpu"))
        gen = torch.Generator().manual_seed(0)
        times, faults, system = [], 0, 0.0
        for i in range(steps + 3):
            before, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            total, _ = loss_fn(model(inputs), targets, gen)
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            after = resource.getrusage(resource.RUSAGE_SELF)
            if i >= 3:
                times.append(time.perf_counter() - t)
                faults += after.ru_minflt - before.ru_minflt
                system += after.ru_stime - before.ru_stime
        kind = "causal" if causal else "plain"
        out |= {f"{kind}_ms": 1e3 * statistics.median(times), f"{kind}_faults": faults / steps,
                f"{kind}_sys_ms": 1e3 * system / steps}
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="scaocc_tiny")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--child", choices=("default", "keep"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.config, args.steps, args.child == "keep")))
        return
    runs: dict[str, list[dict[str, float]]] = {"default": [], "keep": []}
    for _ in range(args.rounds):
        for setting in runs:
            cmd = [sys.executable, __file__, "--config", args.config, "--steps", str(args.steps), "--child", setting]
            runs[setting].append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
    print(f"{args.config}, CPU, 1 thread, {args.rounds} rounds x {args.steps} steps, torch {torch.__version__}")
    keys = ("plain_ms", "causal_ms", "plain_faults", "causal_faults", "plain_sys_ms", "causal_sys_ms", "peak_mb")
    print(f"{'malloc':<22}" + "".join(f"{k:>15}" for k in keys) + f"{'causal/plain':>14}")
    med = {s: {k: statistics.median(r[k] for r in rs) for k in keys} for s, rs in runs.items()}
    for setting, label in (("default", "glibc default"), ("keep", "keep_freed_memory")):
        m = med[setting]
        print(f"{label:<22}" + "".join(f"{m[k]:>15.0f}" for k in keys) + f"{m['causal_ms'] / m['plain_ms']:>13.2f}x")
    print(f"step time, keep / default: plain {med['keep']['plain_ms'] / med['default']['plain_ms']:.2f}x, "
          f"causal {med['keep']['causal_ms'] / med['default']['causal_ms']:.2f}x (medians over rounds)")


if __name__ == "__main__":
    main()
