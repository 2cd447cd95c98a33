"""Inference benchmark: one table, every backend measured side by side in one run.

    .venv/bin/python bench/inference.py                      # tiny + r50, CPU (and CUDA if present)
    .venv/bin/python bench/inference.py --configs scaocc_tiny --repeats 10 --threads 2

Per config and backend: median wall latency per frame (network only, on preprocessed
inputs), FPS, the ratio to eager PyTorch on the same device, and CPU seconds per frame
(process time; on a shared machine wall time includes waiting for the cores). Then the
node's pre-processing (``Predictor.preprocess``: six 900x1600 RGB images resized and
cropped) and post-processing (PointCloud2 + MarkerArray from ``scaocc_ros.outputs``; a
numpy stand-in when ROS is not importable) as a share of the whole frame. On CUDA also
float16 variants (autocast, compile + CUDA graphs, ONNX Runtime CUDA, TensorRT where
installed) and the fused pooling kernel's achieved bandwidth. r50 on CPU runs 2 repeats
and no torch.compile. Models are randomly initialised (speed does not depend on the
weights); the post-processing packs a synthetic frame's true occupancy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scaocc_core.batch import CameraInputs  # noqa: E402
from scaocc_core.checkpoint import save_checkpoint  # noqa: E402
from scaocc_core.config import ModelConfig, load_config  # noqa: E402
from scaocc_core.data.rig import default_sample_dir  # noqa: E402
from scaocc_core.data.synthetic import SynthSpec, render_frame  # noqa: E402
from scaocc_core.deploy.backends import BackendUnavailable, TorchPredictor, make_predictor  # noqa: E402
from scaocc_core.deploy.onnx_model import OnnxModelError  # noqa: E402
from scaocc_core.deploy.parity import ring_rig  # noqa: E402
from scaocc_core.deploy.pool_triton import measure_pool, triton_available  # noqa: E402
from scaocc_core.model.causal_occ import CausalOcc  # noqa: E402
from scaocc_core.model.offsets import zero_offsets  # noqa: E402
from scaocc_core.predictor import Prediction, Predictor, PredictorInput, decode_reduction  # noqa: E402


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[float, float]:
    """Median wall seconds and mean process-CPU seconds per call."""
    for _ in range(warmup):
        fn()
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
        return outputs.marker_array_cdr(pred, predictor.grid, header, set())

    return ros_pack, "voxels + PointCloud2 + OccupancyGrid + MarkerArray"


def backends_for(ckpt: Path, device: str, threads: int, compile_torch: bool
                 ) -> list[tuple[str, Callable[[], Predictor]]]:
    """(name, factory) of every backend to measure on ``device``."""
    out: list[tuple[str, Callable[[], Predictor]]] = [
        ("torch eager", lambda: make_predictor(ckpt, device, "torch")),
    ]
    if compile_torch:
        out.append(("torch compiled", lambda: make_predictor(ckpt, device, "torch", compile=True)))
    out.append(("onnxruntime", lambda: make_predictor(ckpt, device, "onnxruntime", threads=threads)))
    if device.startswith("cuda"):
        out += [
            ("torch fp16", lambda: make_predictor(ckpt, device, "torch", precision="fp16")),
            ("torch fp16 compiled+graphs", lambda: make_predictor(ckpt, device, "torch", precision="fp16",
                                                                   compile=True, cuda_graph=True)),
            ("onnxruntime fp16", lambda: make_predictor(ckpt, device, "onnxruntime", precision="fp16")),
            ("tensorrt fp16", lambda: make_predictor(ckpt, device, "tensorrt", precision="fp16")),
        ]
    return out


def bench_config(name: str, device: str, repeats: int, threads: int, compile_torch: bool,
                 workdir: Path) -> tuple[list[list[str]], set[str]]:
    """Rows of the table for one config on one device, and what pre and post measured."""
    cfg = load_config(ROOT / "config" / "model" / f"{name}.yaml")
    torch.manual_seed(0)
    ckpt = save_checkpoint(workdir / f"{name}.pt", CausalOcc(cfg), cfg)
    inp = camera_input(cfg)
    realistic = synthetic_prediction(cfg)
    rows: list[list[str]] = []
    legend: set[str] = set()
    eager: float | None = None
    for label, factory in backends_for(ckpt, device, threads, compile_torch):
        try:
            predictor = factory()
        except (BackendUnavailable, OnnxModelError) as exc:
            rows.append([name, device, label, "-", "-", "-", "-", "-", f"unavailable: {str(exc)[:60]}"])
            continue
        feeds = predictor.preprocess(inp)
        net, cpu = timed(partial(predictor.run, feeds), repeats, warmup=2 if "compiled" in label else 1)
        pre_fn, pre_what = preprocess_fn(inp, predictor)
        pre, _ = timed(pre_fn, repeats)
        post_fn, post_what = postprocess_fn(realistic, predictor)
        post, _ = timed(post_fn, repeats)
        legend |= {f"pre: {pre_what}", f"post: {post_what}"}
        eager = net if eager is None else eager
        frame = pre + net + post
        rows.append([name, device, label, f"{1e3 * net:.1f}", f"{1 / frame:.2f}", f"{eager / net:.2f}x",
                     f"{1e3 * cpu:.0f}", f"{100 * (pre + post) / frame:.1f}%",
                     f"pre {1e3 * pre:.1f} ms, post {1e3 * post:.1f} ms"])
        if isinstance(predictor, TorchPredictor) and device.startswith("cuda") and label == "torch eager":
            rows.append(pool_row(name, predictor, inp))
    return rows, legend


def pool_row(name: str, predictor: TorchPredictor, inp: PredictorInput) -> list[str]:
    """Fused pooling kernel on this config's shapes (frustum of the ring rig): time and bandwidth."""
    if not triton_available():
        return [name, str(predictor.device), "pool kernel", "-", "-", "-", "-", "-", "Triton not installed"]
    cfg, dev = predictor.cfg, predictor.device
    n, G, D = cfg.image.num_cams, cfg.depth.groups, cfg.depth.num_bins
    h, w = cfg.image.height // cfg.encoder.stride, cfg.image.width // cfg.encoder.stride
    depth = torch.rand(1, n, G, D, h, w, device=dev).softmax(dim=3)  # b n G D h w
    context = torch.randn(1, n, cfg.depth.context_channels, h, w, device=dev)  # b n C h w
    feeds = predictor.preprocess(inp)
    t = [torch.from_numpy(feeds[k]).to(dev) for k in ("images", "intrinsics", "ego_T_cam", "post_rot", "post_tran")]
    camera = CameraInputs(t[0], t[1], t[2], t[3], t[4], torch.eye(4, device=dev)[None],
                          torch.ones(1, n, dtype=torch.bool, device=dev))
    with torch.inference_mode():
        coords = predictor.graph.model.lifter(camera, zero_offsets(t[2]))  # b n D h w 3
        report = measure_pool(depth, context, coords, cfg.grid.size)
    peak = f"{100 * (report.fraction_of_peak or 0):.0f}% of {report.peak_gbps:.0f} GB/s" if report.peak_gbps else ""
    return [name, str(dev), "pool kernel", f"{report.time_ms:.3f}", "-", "-", "-", "-",
            f"{report.bytes_moved / 1e6:.1f} MB moved, {report.gbps:.0f} GB/s {peak}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["scaocc_tiny", "scaocc_r50"])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per backend (r50 on CPU: 2)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all available)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to build on CPU)")
    args = parser.parse_args()
    from scaocc_core.deploy.onnx_model import default_threads

    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    header = ["config", "device", "backend", "latency ms", "frame FPS", "vs eager", "CPU ms", "pre+post",
              "notes"]
    rows: list[list[str]] = []
    legend: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            for device in devices:
                slow = name.endswith("r50") and device == "cpu"  # minutes per compile, ~20 s a frame
                repeats = 2 if slow else args.repeats
                new, what = bench_config(name, device, repeats, threads, not (args.no_compile or slow), Path(tmp))
                rows, legend = rows + new, legend | what
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    print(f"\ntorch {torch.__version__}, {threads} CPU threads, GPU: {gpu}")
    print("latency: network only (median); frame FPS: 1 / (pre + network + post); vs eager: eager latency /"
          " latency; CPU ms: process CPU time per network run")
    decode = []
    for name in args.configs:
        cfg = load_config(ROOT / "config" / "model" / f"{name}.yaml")
        blobs, source = jpeg_blobs(camera_input(cfg))
        full, reduced, s = jpeg_decode_ms(blobs, (cfg.image.height, cfg.image.width), args.repeats)
        decode.append(f"{name}: full {full:.1f} ms, reduced 1/{s} {reduced:.1f} ms")
    print("; ".join(sorted(legend)) + f"; with image_transport: compressed, decoding {source} adds "
          + ", ".join(decode) + " (the node decodes reduced)\n")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")


if __name__ == "__main__":
    main()
