"""Inference benchmark: one table, every backend measured side by side in one run.

    .venv/bin/python bench/inference.py                      # tiny + r50, CPU (and CUDA if present)
    .venv/bin/python bench/inference.py --configs scaocc_tiny --repeats 10 --threads 2
    python3 bench/inference.py --devices cuda --json out/inference.json   # the CUDA rows only

Per config and backend: median wall latency per frame (network only, on preprocessed
inputs, host->device and device->host copies included), the node's pre-processing
(``Predictor.preprocess``: six 900x1600 RGB images resized and cropped, after the raw
``Image`` conversion where ROS is importable) and post-processing (the node's four voxel
outputs; a numpy stand-in when ROS is not importable) measured separately, end-to-end FPS
``1 / (pre + network + post)``, the pipelined bound ``1 / max(pre, network, post)`` (the
node overlapping the stages of consecutive frames), the ratio to eager PyTorch on the same
device, and CPU seconds per frame (process time; on a shared machine wall time includes
waiting for the cores). On CUDA the torch rows are eager fp32, fp16 and bf16 (autocast),
fp16 compiled, fp16 CUDA graphs and fp16 compiled + CUDA graphs; ONNX Runtime and
TensorRT rows only where their CUDA builds are installed. r50 on CPU runs 2 repeats and no
torch.compile. Models are randomly initialised (speed does not depend on the weights); the
post-processing packs a synthetic frame's true occupancy. ``--json`` writes the rows in
``bench/results/gpu.json``'s row schema (``bench/gpu_report.py`` assembles that file).
The pooling kernel's bandwidth is measured by ``bench/gpu_bench.py pool``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scaocc_core.checkpoint import save_checkpoint  # noqa: E402
from scaocc_core.config import ModelConfig, load_config  # noqa: E402
from scaocc_core.data.rig import default_sample_dir  # noqa: E402
from scaocc_core.data.synthetic import SynthSpec, render_frame  # noqa: E402
from scaocc_core.deploy.backends import BackendUnavailable, EngineError  # noqa: E402
from scaocc_core.deploy.onnx_model import OnnxModelError  # noqa: E402
from scaocc_core.deploy.parity import ring_rig  # noqa: E402
from scaocc_core.model.causal_occ import CausalOcc  # noqa: E402
from scaocc_core.predictor import Prediction, Predictor, PredictorInput, decode_reduction, make_predictor  # noqa: E402,E501


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[float, float]:
    """Median wall seconds and mean process-CPU seconds per call."""
    for _ in range(warmup):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    walls = []
    cpu0 = time.process_time()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls), (time.process_time() - cpu0) / repeats


def camera_input(cfg: ModelConfig) -> PredictorInput:
    """Six (or n) random 900x1600 camera images on a ring rig, like the node receives."""
    rng = np.random.default_rng(0)
    n = cfg.image.num_cams
    K, T = ring_rig(n, (900, 1600))
    images = [rng.integers(0, 256, (900, 1600, 3), dtype=np.uint8) for _ in range(n)]
    return PredictorInput(images, K, T, np.ones(n, dtype=bool))


def synthetic_prediction(cfg: ModelConfig) -> Prediction:
    """A prediction with a realistic occupancy: a synthetic frame's ground truth.

    A random-weight model labels nearly every voxel occupied, which would overstate the
    output packing (its cost grows with the number of occupied voxels).
    """
    spec = SynthSpec(seed=0, scenes=1, frames=1, height=64, width=176, grid=cfg.grid)
    labels = render_frame(spec, 0, 0).semantics
    n = cfg.image.num_cams
    return Prediction(labels, np.full(labels.shape, 200, np.uint8), np.zeros((n, 3)), np.zeros((n, 3)))


def preprocess_fn(inp: PredictorInput, predictor: Predictor) -> tuple[Callable[[], object], str]:
    """The node's input side for one set: six raw ``bgr8`` Image messages -> RGB -> model feeds."""
    try:
        from sensor_msgs.msg import Image

        from scaocc_ros import convert
    except ImportError:
        return partial(predictor.preprocess, inp), "preprocess (scaocc_ros not importable)"
    msgs = []
    for img in inp.images:
        h, w = img.shape[:2]
        msgs.append(Image(height=h, width=w, encoding="bgr8", step=3 * w, data=img[..., ::-1].tobytes()))

    def ros_pre() -> object:
        images = [convert.to_rgb(m) for m in msgs]
        return predictor.preprocess(PredictorInput(images, inp.intrinsics, inp.ego_T_cam, inp.camera_valid))

    return ros_pre, "bgr8 Image -> RGB -> preprocess"


def jpeg_blobs(inp: PredictorInput) -> tuple[list[np.ndarray], str]:
    """JPEG bytes of a camera set and what they are: the real nuScenes sample JPEGs (1600x900)
    when present, else the set's random images at quality 90 (noise is dominated by entropy
    decoding, which a reduced decode does not save)."""
    import cv2

    jpegs = sorted(default_sample_dir().glob("*.jpg"))
    if len(jpegs) == len(inp.images):
        return [np.fromfile(f, dtype=np.uint8) for f in jpegs], "the nuScenes sample JPEGs"
    blobs = [cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1] for img in inp.images]
    return blobs, "random-noise JPEGs (sample frame not found)"


def jpeg_decode_ms(blobs: list[np.ndarray], model_hw: tuple[int, int], repeats: int) -> tuple[float, float, int]:
    """Median ms to decode a set of JPEG ``CompressedImage`` data (``image_transport: compressed``).

    Returns (full-size ms, ms at the node's reduced scale, that scale's ``s``): the node decodes
    at ``1/s`` from :func:`decode_reduction` (``scaocc_ros.convert``; plain OpenCV when ROS
    is not importable).
    """
    import cv2

    first = cv2.imdecode(blobs[0], cv2.IMREAD_COLOR)
    if first is None:
        raise ValueError("the benchmark's first JPEG cannot be decoded")
    s = decode_reduction(first.shape[:2], model_hw)
    try:
        from sensor_msgs.msg import CompressedImage

        from scaocc_ros import convert
    except ImportError:
        flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                 8: cv2.IMREAD_REDUCED_COLOR_8}

        def decode(r: int) -> object:
            return [cv2.imdecode(b, flags[r])[..., ::-1].copy() for b in blobs]  # type: ignore[index]
    else:
        msgs = [CompressedImage(format="jpeg", data=b.tobytes()) for b in blobs]

        def decode(r: int) -> object:
            return [convert.compressed_to_rgb(m, r) for m in msgs]

    full, _ = timed(partial(decode, 1), repeats)
    reduced, _ = timed(partial(decode, s), repeats)
    return 1e3 * full, 1e3 * reduced, s


def postprocess_fn(pred: Prediction, predictor: Predictor) -> tuple[Callable[[], object], str]:
    """The node's output packing for one prediction, and what it measures."""
    try:
        from rclpy.serialization import serialize_message
        from std_msgs.msg import Header

        from scaocc_ros import outputs
    except ImportError:
        def numpy_pack() -> object:
            idx = np.argwhere(pred.labels != 17)  # m 3
            pts = np.zeros(len(idx), dtype=[("xyz", "<f4", 3), ("c", "<f4"), ("rgb", "<u4"), ("l", "u1")])
            pts["xyz"] = np.asarray(predictor.grid.lower) + (idx + 0.5) * np.asarray(predictor.grid.voxel_size)
            pts["c"] = pred.confidence[tuple(idx.T)] / 255.0
            pts["l"] = pred.labels[tuple(idx.T)]
            return pts.tobytes()

        return numpy_pack, "numpy packing (scaocc_ros not importable)"

    def ros_pack() -> object:
        header = Header()
        outputs.voxel_grid_msg(pred, predictor.grid, predictor.class_names, header)
        outputs.point_cloud_msg(pred, predictor.grid, header)
        outputs.bev_msg(pred, predictor.grid, header)
        return outputs.marker_array_cdr(pred, predictor.grid, header, set(), serialize_message)

    return ros_pack, "voxels + PointCloud2 + OccupancyGrid + MarkerArray"


@dataclass(frozen=True)
class Variant:
    """One row of the table: a backend with its options."""

    label: str
    backend: str
    precision: str = "fp32"
    compile: bool = False
    cuda_graph: bool = False

    def make(self, ckpt: Path, device: str, threads: int) -> Predictor:
        """The predictor of this variant (raises BackendUnavailable / EngineError where it cannot run)."""
        return make_predictor(ckpt, device, self.backend, precision=self.precision, compile=self.compile,
                              cuda_graph=self.cuda_graph, threads=threads)


def ort_cuda_available() -> bool:
    """Whether this onnxruntime build has the CUDA execution provider (checked before any export)."""
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def variants_for(device: str, compile_torch: bool) -> list[Variant]:
    """Every variant to measure on ``device``."""
    if not device.startswith("cuda"):
        out = [Variant("torch eager", "torch")]
        if compile_torch:
            out.append(Variant("torch compiled", "torch", compile=True))
        return [*out, Variant("onnxruntime", "onnxruntime")]
    out = [Variant("torch eager", "torch"), Variant("torch eager", "torch", "fp16"),
           Variant("torch eager", "torch", "bf16")]
    out.append(Variant("torch CUDA graph", "torch", "fp16", cuda_graph=True))
    if compile_torch:  # last: minutes of compilation the first time
        out += [Variant("torch compiled", "torch", "fp16", compile=True),
                Variant("torch compiled + CUDA graph", "torch", "fp16", compile=True, cuda_graph=True)]
    if ort_cuda_available():  # else it would export the model only to fail
        out += [Variant("onnxruntime", "onnxruntime"), Variant("onnxruntime", "onnxruntime", "fp16")]
    return [*out, Variant("tensorrt", "tensorrt", "fp16")]


def bench_config(name: str, device: str, repeats: int, threads: int, compile_torch: bool, workdir: Path,
                 on_row: Callable[[dict[str, Any]], None] = lambda row: None) -> tuple[list[dict[str, Any]], set[str]]:
    """Rows (``gpu.json`` schema plus extras) for one config on one device, and what pre and post measured.

    ``on_row`` sees each row as soon as it is measured.
    """
    cfg = load_config(ROOT / "config" / "model" / f"{name}.yaml")
    torch.manual_seed(0)
    ckpt = save_checkpoint(workdir / f"{name}.pt", CausalOcc(cfg), cfg)
    inp = camera_input(cfg)
    realistic = synthetic_prediction(cfg)
    rows: list[dict[str, Any]] = []
    legend: set[str] = set()
    eager: float | None = None
    cuda = device.startswith("cuda")
    for v in variants_for(device, compile_torch):
        row: dict[str, Any] = {"config": name, "device": device, "backend": v.label, "precision": v.precision,
                               "latency_ms": None, "pre_ms": None, "post_ms": None, "fps": None}
        try:
            predictor = v.make(ckpt, device, threads)
            feeds = predictor.preprocess(inp)
            warmup = 3 if (v.compile or v.cuda_graph) else (2 if cuda else 1)
            net, cpu = timed(partial(predictor.run, feeds), repeats, warmup=warmup)
        except (BackendUnavailable, EngineError, OnnxModelError) as exc:
            rows.append({**row, "notes": f"unavailable: {str(exc)[:80]}"})
            on_row(rows[-1])
            continue
        pre_fn, pre_what = preprocess_fn(inp, predictor)
        pre, _ = timed(pre_fn, min(repeats, 10))
        post_fn, post_what = postprocess_fn(realistic, predictor)
        post, _ = timed(post_fn, min(repeats, 10))
        legend |= {f"pre: {pre_what}", f"post: {post_what}"}
        eager = net if eager is None else eager
        frame = pre + net + post
        rows.append({**row, "latency_ms": round(1e3 * net, 3), "pre_ms": round(1e3 * pre, 2),
                     "post_ms": round(1e3 * post, 2), "fps": round(1 / frame, 2),
                     "fps_pipelined": round(1 / max(pre, net, post), 2), "network_fps": round(1 / net, 1),
                     "vs_eager": round(eager / net, 2), "cpu_ms": round(1e3 * cpu, 1), "repeats": repeats})
        on_row(rows[-1])
        del predictor
        if cuda:
            torch.cuda.empty_cache()
    return rows, legend


HEADER = ["config", "device", "backend", "precision", "latency ms", "pre ms", "post ms", "FPS", "pipelined FPS",
          "vs eager", "CPU ms", "notes"]


def table_cells(row: dict[str, Any]) -> list[str]:
    """One printed row."""
    def f(key: str, fmt: str = "{:.1f}") -> str:
        return "-" if row.get(key) is None else fmt.format(row[key])

    return [row["config"], row["device"], row["backend"], row["precision"], f("latency_ms", "{:.2f}"), f("pre_ms"),
            f("post_ms"), f("fps", "{:.2f}"), f("fps_pipelined", "{:.2f}"), f("vs_eager", "{:.2f}x"),
            f("cpu_ms", "{:.0f}"), row.get("notes", "")]


def print_table(rows: list[dict[str, Any]]) -> None:
    """Markdown table of ``rows``."""
    cells = [table_cells(r) for r in rows]
    widths = [max(len(r[i]) for r in [HEADER, *cells]) for i in range(len(HEADER))]
    for r in [HEADER, ["-" * w for w in widths], *cells]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")


def machine() -> str:
    """A one-line description of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{gpu}; {os.cpu_count()} CPUs ({cpu}); Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["scaocc_tiny", "scaocc_r50"])
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when present")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs per backend (default 5 on CPU, 30 on CUDA; r50 on CPU: 2)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all available)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to build on CPU)")
    parser.add_argument("--no-jpeg", action="store_true", help="skip the JPEG decode measurement")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows and the machine here")
    args = parser.parse_args()
    from scaocc_core.deploy.onnx_model import default_threads
    from scaocc_core.memory import keep_freed_memory

    keep_freed_memory()  # as the node does

    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    rows: list[dict[str, Any]] = []
    legend: set[str] = set()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    decode: list[dict[str, Any]] = []

    def write_json() -> None:
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({
                "machine": machine(), "gpu": gpu, "torch": torch.__version__, "threads": threads, "rows": rows,
                "pre": sorted(w for w in legend if w.startswith("pre")),
                "post": sorted(w for w in legend if w.startswith("post")), "jpeg_decode": decode}, indent=1))

    def on_row(row: dict[str, Any]) -> None:  # printed and saved as measured: a time limit keeps what ran
        rows.append(row)
        print(" | ".join(table_cells(row)), flush=True)
        write_json()

    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            for device in devices:
                slow = name.endswith("r50") and device == "cpu"  # minutes per compile, ~20 s a frame
                repeats = 2 if slow else (args.repeats or (30 if device.startswith("cuda") else 5))
                _, what = bench_config(name, device, repeats, threads, not (args.no_compile or slow), Path(tmp),
                                       on_row)
                legend |= what
    print(f"\ntorch {torch.__version__}, {threads} CPU threads, GPU: {gpu or 'none'}")
    print("latency: network only (median, copies to and from the device included); FPS: 1 / (pre + network + "
          "post); pipelined FPS: 1 / max(pre, network, post); vs eager: eager latency / latency (same device, "
          "first row); CPU ms: process CPU time per network run")
    if not args.no_jpeg:
        for name in args.configs:
            cfg = load_config(ROOT / "config" / "model" / f"{name}.yaml")
            blobs, source = jpeg_blobs(camera_input(cfg))
            full, reduced, s = jpeg_decode_ms(blobs, (cfg.image.height, cfg.image.width), args.repeats or 5)
            decode.append({"config": name, "full_ms": round(full, 2), "reduced_ms": round(reduced, 2), "scale": s,
                           "source": source})
        print("with image_transport: compressed, decoding adds " + ", ".join(
            f"{d['config']}: full {d['full_ms']:.1f} ms, reduced 1/{d['scale']} {d['reduced_ms']:.1f} ms"
            for d in decode) + f" ({decode[0]['source']}; the node decodes reduced)")
    print("; ".join(sorted(legend)) + "\n")
    print_table(rows)
    write_json()


if __name__ == "__main__":
    main()
