"""GPU measurements beside ``bench/inference.py``: training step, pooling kernel, pre-processing.

    python3 bench/gpu_bench.py train --json out/train.json          # scaocc_r50 step, +causal ratio
    python3 bench/gpu_bench.py pool --json out/pool.json            # kernel GB/s vs copy peak, vs index_add
    python3 bench/gpu_bench.py pre --json out/pre.json               # pre-processing: CPU vs on the device
    python3 bench/gpu_bench.py train --device cpu --small           # the same code on the CPU, small sizes

``train``: the training loop's own step (:class:`~scaocc_core.training.engine.TrainStep`,
bf16 autocast as ``config/train/default.yaml``, GradScaler, clipping, AdamW) of one config
with and without the causal loss, interleaved (A B A B ...) in one process; the ratio is
the median with over the median without.

``pool``: the fused Triton kernel on the config's frustum (the model's geometry on a ring
rig, batch 1): the kernel alone (voxel indices precomputed) and the whole call, against the
``index_add`` reference (``grouped_features`` + ``pool_hard``) and against the memory
bound: :func:`~scaocc_core.deploy.pool_triton.pool_bytes` over the device-to-device copy
bandwidth measured in the same run (bytes read plus written). Launch parameters are swept.
Device timings are medians of CUDA-event-timed runs (``triton.testing.do_bench``, which
clears the L2 between runs); on the CPU, wall-clock medians (the Triton interpreter:
correctness of the path only, its speed means nothing).

``pre``: the node's pre-processing of six 900x1600 camera images as the Predictor does it
(OpenCV on the CPU, all cores) beside the same resize + crop done on the device (uint8
upload from pinned memory, bilinear antialiased resize, crop, float scaling): what moving
it to the GPU would save, and how close its pixels are (mean absolute difference in [0, 1]).
The profile of the network is ``bench/gpu_profile.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scaocc_core.batch import Batch, CameraInputs, Targets  # noqa: E402
from scaocc_core.config import GridConfig, ImageConfig, ModelConfig, load_config  # noqa: E402
from scaocc_core.grid import FREE  # noqa: E402


def config(name: str, small: bool) -> ModelConfig:
    """A shipped config; ``small``: 2 cameras, 64x176 images, a 20x20x4 grid (CPU dry runs)."""
    cfg = load_config(ROOT / "config" / "model" / f"{name}.yaml")
    if not small:
        return cfg
    return dataclasses.replace(cfg, image=ImageConfig(num_cams=2, height=64, width=176),
                               grid=GridConfig(lower=cfg.grid.lower, upper=cfg.grid.upper, size=(20, 20, 4))
                               ).validate()


def pool_grid(cfg: ModelConfig) -> GridConfig:
    """The grid the lifted features are pooled into (``feature_grid`` where the config has one)."""
    return getattr(cfg, "feature_grid", cfg.grid)


def sync(device: torch.device) -> None:
    """Wait for the device."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def wall_ms(fn: Callable[[], object], device: torch.device, reps: int, warmup: int = 1) -> list[float]:
    """Wall milliseconds of each of ``reps`` calls (synchronised), after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        out.append(1e3 * (time.perf_counter() - t0))
    return out


def device_ms(fn: Callable[[], object], device: torch.device, reps: int = 50) -> float:
    """Median milliseconds per call: CUDA events via ``triton.testing.do_bench`` on the GPU, wall clock else."""
    if device.type == "cuda":
        import triton.testing

        return float(triton.testing.do_bench(fn, warmup=25, rep=max(reps, 20), return_mode="median"))
    return statistics.median(wall_ms(fn, device, max(1, min(reps, 3))))


def ring_batch(cfg: ModelConfig, device: torch.device, batch: int, seed: int = 0) -> Batch:
    """Random images on a ring rig with voxel and 2D truth holding several classes."""
    from scaocc_core.deploy.parity import ring_rig

    g = torch.Generator().manual_seed(seed)
    n, H, W = cfg.image.num_cams, cfg.image.height, cfg.image.width
    K, T = ring_rig(n, (H, W))
    inputs = CameraInputs(
        torch.rand(batch, n, 3, H, W, generator=g), torch.from_numpy(K).float().expand(batch, n, 3, 3).clone(),
        torch.from_numpy(T).float().expand(batch, n, 4, 4).clone(), torch.eye(3).expand(batch, n, 3, 3).clone(),
        torch.zeros(batch, n, 3), torch.eye(4).expand(batch, 4, 4).clone(), torch.ones(batch, n, dtype=torch.bool))
    X, Y, Z = cfg.grid.size
    sem = torch.full((batch, X, Y, Z), FREE, dtype=torch.long)
    sem[..., 0] = 11
    for i, cls in enumerate((1, 4, 9, 15)):
        x0, y0 = (X // 5) * (i + 1) - 2, Y // 2 - 2
        sem[:, x0 : x0 + 4, y0 : y0 + 4, 1 : max(2, Z // 3)] = cls
    choices = torch.tensor([11, 4, 15, 255])
    sem2d = choices[torch.randint(0, 4, (batch, n, H, W), generator=g)]
    depth2d = torch.rand(batch, n, H, W, generator=g) * 40 + 1
    targets = Targets(sem, torch.ones_like(sem, dtype=torch.bool), None, sem2d, depth2d)
    return Batch(inputs, targets).to(device)


# --------------------------------------------------------------------------- train


def train_steps(cfg: ModelConfig, device: torch.device, batch: int, reps: int, amp: str) -> dict[str, Any]:
    """Median step ms with and without the causal loss, interleaved, and their ratio."""
    from scaocc_core.losses import OccupancyLoss
    from scaocc_core.model.causal_occ import CausalOcc
    from scaocc_core.training.engine import TrainStep

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[amp] if device.type == "cuda" else None
    data = ring_batch(cfg, device, batch)
    steps: dict[bool, Callable[[], None]] = {}
    for causal in (False, True):
        loss_cfg = dataclasses.replace(cfg.loss, causal_weight=1.0 if causal else 0.0)
        c = dataclasses.replace(cfg, loss=loss_cfg)
        torch.manual_seed(0)
        model = CausalOcc(c).to(device).train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4)
        scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
        runner = TrainStep(model, OccupancyLoss(c.loss, c.depth), dtype)

        def step(runner: TrainStep = runner, opt: torch.optim.Optimizer = opt, params: list = params,
                 scaler: torch.amp.GradScaler = scaler) -> None:
            total, parts = runner(data, torch.Generator().manual_seed(0))
            if not all(v == v for v in parts.values()):
                raise FloatingPointError(f"NaN in the loss: {parts}")
            opt.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            scaler.step(opt)
            scaler.update()

        steps[causal] = step
    times: dict[bool, list[float]] = {False: [], True: []}
    for causal in (False, True):
        wall_ms(steps[causal], device, 0, warmup=2)  # cuDNN autotuning, allocator
    for _ in range(reps):
        for causal in (False, True):
            times[causal] += wall_ms(steps[causal], device, 1, warmup=0)
    plain, with_causal = statistics.median(times[False]), statistics.median(times[True])
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"config": cfg.name, "batch": batch, "amp": amp if dtype is not None else "none", "reps": reps,
            "train_step_ms": round(plain, 2), "train_step_causal_ms": round(with_causal, 2),
            "causal_ratio": round(with_causal / plain, 3), "plain_ms_all": [round(t, 2) for t in times[False]],
            "causal_ms_all": [round(t, 2) for t in times[True]],
            "peak_memory_gib": None if peak is None else round(peak, 2)}


# --------------------------------------------------------------------------- pool


def frustum(cfg: ModelConfig, device: torch.device, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Depth ``1 n G D h w``, context ``1 n C h w`` and coords ``1 n D h w 3`` of the config on a ring rig."""
    from scaocc_core.geometry import frustum_to_voxel, make_frustum

    n, G, D, C = cfg.image.num_cams, cfg.depth.groups, cfg.depth.num_bins, cfg.depth.context_channels
    h, w = cfg.image.height // cfg.encoder.stride, cfg.image.width // cfg.encoder.stride
    g = torch.Generator().manual_seed(seed)
    depth = torch.randn(1, n, G, D, h, w, generator=g).mul(2).softmax(dim=3).to(device)
    context = torch.randn(1, n, C, h, w, generator=g).to(device)
    cam = ring_batch(cfg, device, 1, seed).inputs
    grid = make_frustum((cfg.image.height, cfg.image.width), (h, w), cfg.depth).to(device)
    coords = frustum_to_voxel(grid, cam.intrinsics, cam.ego_T_cam, cam.post_rot, cam.post_tran, cam.bda, pool_grid(cfg))
    return depth, context, coords


def copy_gbps(device: torch.device, nbytes: int) -> float:
    """Device-to-device copy bandwidth, bytes read plus written."""
    src = torch.rand(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    ms = device_ms(lambda: dst.copy_(src), device)
    return 2 * nbytes / (ms * 1e-3) / 1e9


def pool(cfg: ModelConfig, device: torch.device, copy_bytes: int) -> dict[str, Any]:
    """See the module docstring."""
    from scaocc_core.deploy import pool_triton as pt
    from scaocc_core.model.splat import grouped_features, pool_hard

    size = pool_grid(cfg).size
    sets = [frustum(cfg, device, seed) for seed in range(3)]  # rotated so no run re-reads a cached input
    it = iter(range(1 << 30))

    def pick() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return sets[next(it) % len(sets)]

    depth, context, coords = sets[0]
    C = context.shape[2]
    index = pt.voxel_index(coords.reshape(1, -1, 3), size)
    indices = [pt.voxel_index(s[2].reshape(1, -1, 3), size) for s in sets]
    moved = pt.pool_bytes(depth, context, index, C, size[0] * size[1] * size[2])
    fused = pt.pool_hard_fused(depth, context, coords, size)
    ref = pool_hard(grouped_features(depth.double(), context.double()), coords.reshape(1, -1, 3), size)
    rel_err = float((fused.double() - ref).norm() / ref.norm())

    def kernel(block_p: int = pt.BLOCK_P, warps: int = 4) -> Callable[[], object]:
        def run() -> object:
            k = next(it) % len(sets)
            d, c, _ = sets[k]
            return pt._launch(d, c, indices[k], size, block_p, warps)
        return run

    def whole() -> object:
        d, c, x = pick()
        return pt.pool_hard_fused(d, c, x, size)

    def reference() -> object:
        d, c, x = pick()
        return pool_hard(grouped_features(d, c), x.reshape(1, -1, 3), size)

    peak = copy_gbps(device, copy_bytes)
    sweep = {}
    for block_p, warps in ((32, 2), (64, 4), (128, 4), (128, 8), (256, 8)):
        sweep[f"{block_p}x{warps}"] = round(device_ms(kernel(block_p, warps), device), 4)
    best = min(sweep, key=lambda k: sweep[k])
    kernel_ms = sweep[f"{pt.BLOCK_P}x4"]
    whole_ms, ref_ms = device_ms(whole, device), device_ms(reference, device)
    gbps = moved / (kernel_ms * 1e-3) / 1e9
    bound_ms = moved / (peak * 1e9) * 1e3
    return {
        "config": cfg.name, "points": index.numel(), "points_inside": int((index >= 0).sum()),
        "channels": C, "groups": cfg.depth.groups, "grid": list(size), "bytes_moved": moved,
        "rel_err_vs_float64": rel_err, "kernel_ms": round(kernel_ms, 4), "call_ms": round(whole_ms, 4),
        "index_add_ms": round(ref_ms, 4), "speedup_vs_index_add": round(ref_ms / whole_ms, 2),
        "pool_gbps": round(gbps, 1), "copy_gbps": round(peak, 1),
        "datasheet_gbps": pt.device_bandwidth_gbps(device), "pool_peak_fraction": round(gbps / peak, 3),
        "bound_ms": round(bound_ms, 4), "kernel_over_bound": round(kernel_ms / bound_ms, 2),
        "launch_sweep_ms": sweep, "best_launch": best,
        "note": "kernel = the Triton launch with indices precomputed (grid zeroing included); call = "
                "pool_hard_fused (voxel indices too); peak = device-to-device copy in the same run",
    }


# --------------------------------------------------------------------------- pre


def pre(cfg: ModelConfig, device: torch.device, reps: int) -> dict[str, Any]:
    """See the module docstring."""
    import numpy as np
    import torch.nn.functional as F

    from scaocc_core.data.augment import eval_image_aug
    from scaocc_core.deploy.parity import ring_rig
    from scaocc_core.predictor import Predictor, PredictorInput

    n, fH, fW = cfg.image.num_cams, cfg.image.height, cfg.image.width
    src = (900, 1600)
    K, T = ring_rig(n, src)
    rng = np.random.default_rng(0)
    # smooth images (noise would make any two resamplers look far apart)
    base = rng.integers(0, 256, (n, 9, 16, 3)).astype(np.float32)
    images = [cv2_resize(b, src) for b in base]
    inp = PredictorInput(images, K, T, np.ones(n, dtype=bool))
    predictor = Predictor.from_config(cfg, "cpu")
    cpu_ms = wall_ms(lambda: predictor.preprocess(inp), torch.device("cpu"), reps)
    ref = predictor.preprocess(inp)["images"][0]  # n 3 fH fW
    aug = eval_image_aug(src, (fH, fW))
    new_h, new_w = int(src[0] * aug.resize), int(src[1] * aug.resize)
    x0, y0 = aug.crop
    pinned = torch.empty((n, *src, 3), dtype=torch.uint8).pin_memory() if device.type == "cuda" else \
        torch.empty((n, *src, 3), dtype=torch.uint8)

    def on_device() -> torch.Tensor:
        for i, img in enumerate(inp.images):
            pinned[i].numpy()[...] = img
        x = pinned.to(device, non_blocking=True).permute(0, 3, 1, 2).float()  # n 3 H W
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
        return (x[:, :, y0 : y0 + fH, x0 : x0 + fW] / 255.0).contiguous()

    dev_ms = wall_ms(on_device, device, reps)
    diff = float((on_device().cpu() - torch.from_numpy(ref)).abs().mean())
    return {"config": cfg.name, "images": f"{n} x {src[0]}x{src[1]} -> {fH}x{fW}", "reps": reps,
            "cpu_preprocess_ms": round(statistics.median(cpu_ms), 2), "cpu_threads": os.cpu_count(),
            "device_preprocess_ms": round(statistics.median(dev_ms), 3), "mean_abs_diff": round(diff, 4),
            "note": "device: copy into pinned memory, upload, antialiased bilinear resize, crop, /255; "
                    "cpu: Predictor.preprocess (OpenCV INTER_AREA resize + crop, float32)"}


def cv2_resize(img: Any, hw: tuple[int, int]) -> Any:
    """``img`` enlarged to ``hw`` (bicubic) as uint8."""
    import cv2
    import numpy as np

    return np.clip(cv2.resize(img, (hw[1], hw[0]), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("train", "pool", "pre"))
    parser.add_argument("--config", default="scaocc_r50")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--small", action="store_true", help="2 cameras, 64x176 images, 20x20x4 grid")
    parser.add_argument("--batch", type=int, default=4, help="train: batch size (the GPU recipe's 4)")
    parser.add_argument("--reps", type=int, default=6, help="train: timed steps of each variant; pre: runs")
    parser.add_argument("--amp", default="bf16", choices=("bf16", "fp16", "none"), help="train: autocast on CUDA")
    parser.add_argument("--copy-mib", type=int, default=2048, help="pool: size of the copy measuring the peak")
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu" and args.what == "pool":
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before pool_triton is imported
    t0 = time.perf_counter()
    cfg = config(args.config, args.small)
    if args.what == "train":
        result = train_steps(cfg, device, args.batch, args.reps, args.amp)
    elif args.what == "pre":
        result = pre(cfg, device, args.reps)
    else:
        result = pool(cfg, device, args.copy_mib << 20)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    result = {**result, "device": str(device), "gpu": gpu, "torch": torch.__version__, "small": args.small,
              "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
