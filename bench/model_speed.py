"""Per-stage forward time, training-step time, causal-loss overhead and pooling speed-up.

Usage: ``python bench/model_speed.py [--configs baseline_tiny scaocc_tiny scaocc_r50] [--reps 3]
[--data data/models/train_s0_256]``. Everything is measured side by side in one run on this
machine (CPU, or CUDA if present) and printed as one table; ratios compare numbers from the
same run. The training steps run on a made-up scene, or with ``--data`` on real training
frames (their classes decide how much of the grid the causal loss' score covers).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable

import torch

from scaocc_core.batch import CameraInputs, Targets
from scaocc_core.config import ModelConfig, load_config
from scaocc_core.data.dataset import OccDataset
from scaocc_core.grid import FREE
from scaocc_core.losses import OccupancyLoss
from scaocc_core.memory import keep_freed_memory
from scaocc_core.model.causal_occ import CausalOcc
from scaocc_core.model.lift import FrustumLifter
from scaocc_core.model.splat import grouped_features, pool_hard, pool_hard_reference, pool_soft, splat

STAGES = ("encoder", "offset_head", "depth_head", "lifter", "propagation", "voxel_net")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def fake_inputs(cfg: ModelConfig, device: torch.device) -> tuple[CameraInputs, Targets]:
    n, H, W = cfg.image.num_cams, cfg.image.height, cfg.image.width
    K = torch.tensor([[W * 0.8, 0, W / 2], [0, W * 0.8, H / 2], [0, 0, 1.0]])
    yaw = torch.arange(n) * (2 * torch.pi / n)
    base = torch.tensor([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])
    T = torch.eye(4).repeat(n, 1, 1)
    for i in range(n):
        c, s = torch.cos(yaw[i]), torch.sin(yaw[i])
        T[i, :3, :3] = torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]) @ base
        T[i, 2, 3] = 1.5
    inputs = CameraInputs(torch.rand(1, n, 3, H, W), K.expand(1, n, 3, 3).clone(), T[None],
                          torch.eye(3).expand(1, n, 3, 3).clone(), torch.zeros(1, n, 3), torch.eye(4)[None],
                          torch.ones(1, n, dtype=torch.bool)).to(device)
    X, Y, Z = cfg.grid.size
    sem = torch.full((1, X, Y, Z), FREE, dtype=torch.long)
    sem[:, :, :, 1] = 11
    sem[:, X // 2 + 5 : X // 2 + 8, Y // 2 - 3 : Y // 2 + 3, 2:4] = 4
    sem2d = torch.full((1, n, H, W), 11, dtype=torch.long)
    sem2d[..., : H // 2, :] = 4
    depth2d = torch.rand(1, n, H, W) * 40 + 1
    targets = Targets(sem, torch.ones_like(sem, dtype=torch.bool), None, sem2d, depth2d).to(device)
    return inputs, targets


def stage_times(model: CausalOcc, inputs: CameraInputs, device: torch.device, reps: int) -> dict[str, float]:
    """Median forward time per stage (ms) via forward hooks; splat = gap lifter -> propagation."""
    marks: dict[str, list[float]] = {}

    def mark(key: str) -> None:
        sync(device)
        marks.setdefault(key, []).append(time.perf_counter())

    handles = []
    for name in STAGES:
        module = getattr(model, name)
        if module is None:
            continue
        handles.append(module.register_forward_pre_hook(lambda m, a, key=name + ">": mark(key)))
        handles.append(module.register_forward_hook(lambda m, a, o, key=name + "<": mark(key)))
    with torch.no_grad():
        for _ in range(reps + 1):
            model(inputs)
    for h in handles:
        h.remove()
    out = {}
    for name in STAGES:
        if name + ">" in marks:
            out[name] = 1e3 * statistics.median(
                [e - s for s, e in zip(marks[name + ">"][1:], marks[name + "<"][1:])])
    out["splat"] = 1e3 * statistics.median(
        [e - s for s, e in zip(marks["lifter<"][1:], marks["propagation>"][1:])])
    return out


def real_frames(cfg: ModelConfig, data: str, count: int, device: torch.device) -> list[tuple[CameraInputs, Targets]]:
    """``count`` training frames of the manifest ``data``, spread over its train split, at the
    config's image size (no augmentation)."""
    dataset = OccDataset(data, "train", cfg)
    picks = torch.linspace(0, len(dataset) - 1, count).round().long().tolist()
    return [(item.inputs.to(device), item.targets.to(device)) for item in (dataset[i] for i in picks)]


def train_step_times(cfg: ModelConfig, device: torch.device, reps: int, lazy_every: int,
                     frames: list[tuple[CameraInputs, Targets]]) -> tuple[float, float, float]:
    """Training-step time without the causal loss, with it on every step, and lazily.

    Three models (same seed) alternate step by step on the same frame, so a change of machine
    load hits every column alike; step ``i`` trains on ``frames[i % len(frames)]``. Plain and
    causal: the mean of their steps (the causal loss' cost depends on the class it draws; the
    two causal models draw the same sequence). Lazy (``loss.causal_every = lazy_every``): the
    median over consecutive blocks of ``lazy_every`` steps (one with the causal loss, the rest
    without) of the block's mean step time.
    """
    variants = {"plain": (0.0, 1), "causal": (1.0, 1), "lazy": (1.0, lazy_every)}
    steps = {}
    for key, (weight, every) in variants.items():
        loss_cfg = dataclasses.replace(cfg.loss, causal_weight=weight, causal_every=every, depth_weight=0.0)
        c = dataclasses.replace(cfg, loss=loss_cfg)
        torch.manual_seed(0)
        model = CausalOcc(c).to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        steps[key] = (model, opt, OccupancyLoss(c.loss, c.depth))
    gens = {key: torch.Generator().manual_seed(0) for key in variants}

    def step(key: str, index: int) -> None:
        model, opt, loss_fn = steps[key]
        inputs, targets = frames[index % len(frames)]
        total, _ = loss_fn(model(inputs), targets, gens[key], step=index)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()

    times: dict[str, list[float]] = {key: [] for key in variants}
    for rep in range(reps * lazy_every + 1):
        for key in variants:
            sync(device)
            t = time.perf_counter()
            step(key, rep - 1)
            sync(device)
            if rep:  # the first round warms up
                times[key].append(time.perf_counter() - t)
    lazy = times["lazy"]
    blocks = [statistics.mean(lazy[i:i + lazy_every]) for i in range(0, len(lazy) - lazy_every + 1, lazy_every)]
    return statistics.mean(times["plain"]), statistics.mean(times["causal"]), statistics.median(blocks)


def channels_last_ratio(model: CausalOcc, cfg: ModelConfig, device: torch.device, reps: int) -> float:
    """Forward time of the 3D network with ``channels_last_3d`` divided by without it."""
    feat = torch.randn(1, cfg.depth.context_channels, *cfg.feature_grid.size, device=device)
    times = {}
    with torch.no_grad():
        for flag in (True, False):
            model.voxel_net.channels_last = flag
            times[flag] = timed(lambda: model.voxel_net(feat), device, reps)
    model.voxel_net.channels_last = cfg.voxel.channels_last
    return times[True] / times[False]


def pooling_ratio(device: torch.device) -> tuple[float, float]:
    g = torch.Generator().manual_seed(0)
    values = torch.randn(1, 2000, 16, generator=g).to(device)
    coords = (torch.rand(1, 2000, 3, generator=g) * 20).to(device)
    size = (20, 20, 8)
    fast = timed(lambda: pool_hard(values, coords, size), device, 5)
    ref = timed(lambda: pool_hard_reference(values, coords, size), device, 1)
    return fast, ref


def soft_filling_times(cfg: ModelConfig, device: torch.device, reps: int) -> dict[str, tuple[float, float]]:
    """Lifting + soft filling at ``cfg``'s sizes: the fused kernel vs the PyTorch reference.

    "causal" is forward, ``autograd.grad(..., create_graph=True)`` to depth, context and
    coordinates, and the backward of a loss on those gradients: what the causal loss asks of
    this stage (with a dense ``weight``: its own is zero away from one class' voxels). The
    frustum points are those of the benchmark's camera rig (:func:`fake_inputs`), so the share
    that falls outside the grid is a real one. Medians of interleaved repetitions.
    """
    n, C, G = cfg.image.num_cams, cfg.depth.context_channels, cfg.depth.groups
    h, w = cfg.image.height // cfg.encoder.stride, cfg.image.width // cfg.encoder.stride
    D = cfg.depth.num_bins
    gen = torch.Generator().manual_seed(0)
    size = cfg.feature_grid.size
    depth = torch.randn(1, n, G, D, h, w, generator=gen).softmax(3).to(device)
    context = torch.rand(1, n, C, h, w, generator=gen).to(device)
    inputs, _ = fake_inputs(cfg, device)
    lifter = FrustumLifter((cfg.image.height, cfg.image.width), cfg.encoder.stride, cfg.depth,
                           cfg.feature_grid).to(device)
    with torch.no_grad():
        coords = lifter(inputs, inputs.ego_T_cam, None)  # 1 n D h w 3, feature-grid voxels
    weight = torch.randn(1, C, *size, generator=gen).to(device)

    def kernel(d: torch.Tensor, e: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return splat(d, e, c, size, "soft")[0]

    def reference(d: torch.Tensor, e: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return pool_soft(grouped_features(d, e), c.reshape(1, -1, 3), size)

    def forward(fn: Callable[..., torch.Tensor]) -> None:
        with torch.no_grad():
            fn(depth, context, coords)

    def causal(fn: Callable[..., torch.Tensor]) -> None:
        args = [t.clone().requires_grad_() for t in (depth, context, coords)]
        gd, ge, gc = torch.autograd.grad((fn(*args) * weight).sum(), args, create_graph=True)
        (torch.relu(ge.mean(2)).sum() + gd.square().sum() + gc.square().sum()).backward()

    times: dict[str, dict[str, list[float]]] = {k: {"kernel": [], "reference": []} for k in ("forward", "causal")}
    for rep in range(reps + 1):
        for kind, run in (("forward", forward), ("causal", causal)):
            for name, fn in (("kernel", kernel), ("reference", reference)):
                sync(device)
                t = time.perf_counter()
                run(fn)
                sync(device)
                if rep:
                    times[kind][name].append(time.perf_counter() - t)
    return {k: (statistics.median(v["kernel"]), statistics.median(v["reference"])) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["baseline_tiny", "scaocc_tiny", "scaocc_r50"])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--lazy-every", type=int, default=2,
                        help="loss.causal_every of the lazy column (default: 2)")
    parser.add_argument("--data", help="train the steps on frames of this manifest (default: a made-up scene)")
    parser.add_argument("--frames", type=int, default=8, help="how many frames of --data (default: 8)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    kept = keep_freed_memory()  # as the scaocc command line does (bench/allocator.py measures its effect)
    print(f"device: {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, malloc keeps freed memory: {kept}")
    rows = []
    for name in args.configs:
        cfg = load_config(f"config/model/{name}.yaml")
        reps = args.reps if "r50" not in name or device.type == "cuda" else 1
        model = CausalOcc(cfg).to(device).eval()
        inputs, _ = fake_inputs(cfg, device)
        stages = stage_times(model, inputs, device, reps)
        cl_ratio = channels_last_ratio(model, cfg, device, reps)
        frames = real_frames(cfg, args.data, args.frames, device) if args.data else [fake_inputs(cfg, device)]
        plain, causal, lazy = train_step_times(cfg, device, reps, args.lazy_every, frames)
        rows.append((name, stages, plain, causal, lazy, cl_ratio))
    print(f"\n{'config':<16}" + "".join(f"{s:>13}" for s in (*STAGES, "splat")) + f"{'fwd total':>11}"
          f"{'train step':>12}{'+causal':>10}{'ratio':>7}{'lazy':>9}{'ratio':>7}{'CL3d/NC':>9}")
    for name, stages, plain, causal, lazy, cl_ratio in rows:
        cells = "".join(f"{stages.get(s, 0.0):>11.1f}ms" for s in (*STAGES, "splat"))
        print(f"{name:<16}{cells}{sum(stages.values()):>9.1f}ms{1e3 * plain:>10.0f}ms{1e3 * causal:>8.0f}ms"
              f"{causal / plain:>6.2f}x{1e3 * lazy:>7.0f}ms{lazy / plain:>6.2f}x{cl_ratio:>8.2f}x")
    print("ratio: training step with the causal loss over without, means of steps measured interleaved, on "
          + (f"{args.frames} training frames of {args.data}" if args.data else "a made-up scene"))
    print(f"lazy: the causal loss on one step in {args.lazy_every}, at {args.lazy_every}x its weight "
          "(loss.causal_every), mean step time of each such block of steps, median over blocks")
    print("CL3d/NC: 3D network forward with channels_last_3d over without (< 1: channels_last helps)")
    for name in args.configs:
        cfg = load_config(f"config/model/{name}.yaml")
        if cfg.lift.pooling == "soft" and device.type == "cpu":
            for kind, (kern, ref) in soft_filling_times(cfg, device, args.reps).items():
                print(f"lifting + soft filling, {name}, {kind}: fused numba kernel {1e3 * kern:.0f} ms, PyTorch "
                      f"reference {1e3 * ref:.0f} ms -> {ref / kern:.1f}x faster")
    fast, ref = pooling_ratio(device)
    print(f"\nhard pooling, 2000 points x 16 ch: index_add {1e3 * fast:.3f} ms, naive loop {1e3 * ref:.1f} ms "
          f"-> {ref / fast:.0f}x faster")


if __name__ == "__main__":
    main()
