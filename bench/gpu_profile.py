"""``torch.profiler`` over a few inference runs of the Predictor, each model stage marked.

    python3 bench/gpu_profile.py --config scaocc_r50 --precision fp16 --out out/profile_r50.txt
    python3 bench/gpu_profile.py --config scaocc_tiny --device cpu --small     # a CPU dry run

The network run (copies included) is written as tables sorted by self time, per stage and
per operator, followed by a cProfile of the pre-processing of six 900x1600 images.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from gpu_bench import config, sync

STAGES = ("encoder", "offset_head", "depth_head", "lifter", "propagation", "voxel_net")


@contextmanager
def stage_ranges(model: torch.nn.Module | None) -> Iterator[None]:
    """Mark each model stage as a profiler range (forward pre/post hooks)."""
    handles: list[Any] = []
    if model is not None:
        from torch.autograd.profiler import record_function

        for name in STAGES:
            module = getattr(model, name, None)
            if module is None:
                continue
            open_: dict[str, Any] = {}

            def pre(m: Any, a: Any, name: str = name, open_: dict = open_) -> None:
                open_["rf"] = record_function(f"stage::{name}")
                open_["rf"].__enter__()

            def post(m: Any, a: Any, o: Any, open_: dict = open_) -> None:
                open_.pop("rf").__exit__(None, None, None)

            handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def profile(name: str, device: torch.device, precision: str, iters: int, small: bool, out: Path | None) -> str:
    """Profiler tables of the Predictor's network run, and cProfile of its pre-processing."""
    import numpy as np
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from scaocc_core.checkpoint import save_checkpoint
    from scaocc_core.deploy.parity import ring_rig
    from scaocc_core.model.causal_occ import CausalOcc
    from scaocc_core.predictor import PredictorInput, make_predictor

    cfg = config(name, small)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_checkpoint(Path(tmp) / f"{name}.pt", CausalOcc(cfg), cfg)
        predictor = make_predictor(ckpt, str(device), "torch", precision=precision)
    n = cfg.image.num_cams
    K, T = ring_rig(n, (900, 1600))
    rng = np.random.default_rng(0)
    inp = PredictorInput([rng.integers(0, 256, (900, 1600, 3), dtype=np.uint8) for _ in range(n)], K, T,
                         np.ones(n, dtype=bool))
    feeds = predictor.preprocess(inp)
    for _ in range(2):
        predictor.run(feeds)
    model = getattr(getattr(predictor.engine, "graph", None), "model", None)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with stage_ranges(model), torch_profile(activities=activities) as prof:
        for _ in range(iters):
            predictor.run(feeds)
        sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = prof.key_averages()
    stages = [e for e in events if e.key.startswith("stage::")]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    lines = [f"{name} {precision} on {device} ({where}), torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads, {iters} runs profiled"]
    lines.append("\nper stage (inclusive, ms per run):")
    for e in sorted(stages, key=lambda e: -e.cpu_time_total):
        dev = getattr(e, "device_time_total", getattr(e, "cuda_time_total", 0.0))
        lines.append(f"  {e.key[7:]:<14} cpu {e.cpu_time_total / 1e3 / iters:8.2f}"
                     + (f"   device {dev / 1e3 / iters:8.2f}" if device.type == "cuda" else ""))
    self_key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    total = sum(getattr(e, self_key, 0.0) for e in events) / 1e3 / iters
    inside = sum((getattr(e, "device_time_total", 0.0) if device.type == "cuda" else e.cpu_time_total)
                 for e in stages) / 1e3 / iters
    lines.append(f"  {'total':<14} {total:8.2f} ms per run ({'device' if device.type == 'cuda' else 'cpu'} self "
                 f"time of all operators); outside the stages {total - inside:.2f} ms (splatting, the graph's "
                 f"argmax + confidence, copies)")
    lines.append(f"\noperators by {key}:")
    lines.append(events.table(sort_by=key, row_limit=25, max_name_column_width=60))
    stats = io.StringIO()
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(3):
        predictor.preprocess(inp)
    pr.disable()
    pstats.Stats(pr, stream=stats).sort_stats("tottime").print_stats(8)
    lines.append("pre-processing (Predictor.preprocess, 6 x 900x1600 -> model input), cProfile of 3 runs:")
    lines.append("\n".join(stats.getvalue().splitlines()[:30]))
    text = "\n".join(lines)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return text


def main() -> None:
    """``python3 bench/gpu_profile.py``: prints the tables (and writes them to ``--out``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="scaocc_r50")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--small", action="store_true", help="2 cameras, 64x176 images, 20x20x4 grid")
    parser.add_argument("--precision", default=None, help="fp32, fp16 or bf16 (default: fp16 on CUDA, else fp32)")
    parser.add_argument("--iters", type=int, default=5, help="runs profiled")
    parser.add_argument("--out", type=Path, default=None, help="write the tables here")
    args = parser.parse_args()
    device = torch.device(args.device)
    precision = args.precision or ("fp16" if device.type == "cuda" else "fp32")
    print(profile(args.config, device, precision, args.iters, args.small, args.out))


if __name__ == "__main__":
    main()
