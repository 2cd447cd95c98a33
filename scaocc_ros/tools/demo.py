"""``make demo``: the synthetic car and occ_node as separate processes over real DDS (localhost).

``python -m scaocc_ros.tools.demo [--frames 20 --rate 10 --out demo_out]`` starts ``scaocc
node`` (extrinsics from ``/tf_static``) and ``scaocc cameras`` as child processes on a
private ROS domain with localhost-only discovery, records the node's outputs (plus ground
truth, TF, CameraInfo, diagnostics) to ``<out>/outputs.mcap`` with an in-process recorder,
and writes ``<out>/cameras_pred.png`` (predicted voxels seen by each camera), ``<out>/bev.png``
(prediction vs ground truth) and ``<out>/summary.json`` (frames in and out, latency p50/p95,
output rate, mIoU against the synthetic truth, which model ran).

``--nuscenes`` instead publishes the real nuScenes sample frame (six JPEGs as
CompressedImage, CameraInfo, ``/tf_static`` from ``cam2ego``) to the node and writes
``<out>/nuscenes/{cameras_pred.png,bev.png,summary.json}``.

The model is ``models/scaocc_tiny.pt`` when it exists; otherwise the node runs randomly
initialised weights of ``config/model/scaocc_tiny.yaml``, and the output says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage
from tf2_msgs.msg import TFMessage

from scaocc_core.data.rig import NUSCENES_CAMERAS, default_sample_dir, load_nuscenes_sample_rig
from scaocc_core.training.evaluate import grid_note
from scaocc_ros import qos
from scaocc_ros.tools import synth_msgs as sm
from scaocc_ros.tools.bag_synth import BagWriter
from scaocc_ros.tools.demo_record import (
    Recorder,
    decode_images,
    grid_of,
    latency_stats,
    node_diagnostics,
    picture_stamp,
    read_recording,
    score,
    write_pictures,
)
from scaocc_ros.tools.processes import ROOT, ChildProcesses, join_private_domain, scaocc_command

DEMO_CHECKPOINT = ROOT / "models" / "scaocc_tiny.pt"
DEMO_CONFIG = ROOT / "config" / "model" / "scaocc_tiny.yaml"
CAMERAS = [sm.ros_camera_name(n) for n in NUSCENES_CAMERAS]
REAL_IMAGES_NOTE = ("a model trained on the synthetic world is not expected to be accurate on real nuScenes "
                    "images: this run shows the real-message path (JPEG, CameraInfo, /tf_static), not accuracy")


def display_path(path: Path) -> str:
    """``path`` relative to the repository when inside it (for messages)."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def model_choice(checkpoint: Path | None) -> tuple[list[str], dict[str, Any]]:
    """Node arguments for the demo model, and its description for the summary."""
    path = checkpoint if checkpoint is not None else DEMO_CHECKPOINT
    if path.is_file():
        return ["--model", str(path)], {"kind": "checkpoint", "path": str(path), "random_weights": False}
    if checkpoint is not None:
        raise FileNotFoundError(f"--checkpoint {checkpoint} not found")
    return [], {"kind": "random_init", "config": display_path(DEMO_CONFIG), "random_weights": True,
                "note": f"{display_path(DEMO_CHECKPOINT)} does not exist: RANDOMLY INITIALISED weights, "
                        "predictions are meaningless (the pipeline is what is demonstrated)"}


def node_command(model_args: list[str], compressed: bool, extra: list[str]) -> list[str]:
    """``scaocc node`` with the demo parameters (extrinsics from /tf_static)."""
    ros = ["-p", "extrinsics_source:=tf", "-p", f"image_transport:={'compressed' if compressed else 'raw'}",
           "-p", f"model_config:={DEMO_CONFIG}", *extra]
    return scaocc_command("node", "--params", str(ROOT / "config" / "occ_node.yaml"), *model_args,
                          "--ros-args", *ros)


def spin_while(node: Node, children: ChildProcesses, keep_going: Callable[[], bool], timeout: float) -> bool:
    """Spin ``node`` while ``keep_going()``; raises if a child fails; ``False`` on timeout."""
    end = time.monotonic() + timeout
    while keep_going():
        if time.monotonic() > end:
            return False
        children.check_alive()
        rclpy.spin_once(node, timeout_sec=0.05)
    return True


def wait_for_node_subscriptions(recorder: Node, children: ChildProcesses, compressed: bool, timeout: float) -> None:
    """Spin until every image topic has two subscribers, the recorder's and occ_node's."""
    topics = [sm.image_topic(c, compressed) for c in CAMERAS]
    if not spin_while(recorder, children, lambda: any(recorder.count_subscribers(t) < 2 for t in topics), timeout):
        raise TimeoutError(f"occ_node did not subscribe within {timeout} s")


def run_synthetic(args: argparse.Namespace, children: ChildProcesses, out: Path) -> dict[str, Any]:
    """The synthetic demo; returns the summary."""
    model_args, model = model_choice(args.checkpoint)
    bag_path = out / "outputs.mcap"
    with BagWriter(bag_path, overwrite=True) as writer:
        recorder = Recorder(writer, CAMERAS, args.compressed)
        try:
            children.start("node", node_command(model_args, args.compressed, []))
            print(f"demo: starting the node ({model['kind']}) ...", flush=True)
            wait_for_node_subscriptions(recorder, children, args.compressed, args.timeout)
            cams = ["cameras", "--frames", str(args.frames), "--rate", str(args.rate), "--seed", str(args.seed),
                    "--preset", args.preset, "--resolution", args.resolution, "--wait-subscribers", "180",
                    "--subscribers", "2"]  # occ_node and the recorder, or the first frames reach only one
            children.start("cameras", scaocc_command(*cams, *(["--compressed"] if args.compressed else [])))
            cam_proc = children.procs["cameras"]
            print(f"demo: rendering {args.frames} frames ...", flush=True)
            if not spin_while(recorder, children, lambda: cam_proc.poll() is None, args.timeout):
                raise TimeoutError(f"the camera publisher did not finish within {args.timeout} s")
            last = [recorder.outputs_received(), time.monotonic()]

            def still_arriving() -> bool:  # until no new output for drain_s (the node finishes its set)
                if recorder.outputs_received() != last[0]:
                    last[:] = [recorder.outputs_received(), time.monotonic()]
                return time.monotonic() - last[1] < args.drain_s

            spin_while(recorder, children, still_arriving, args.timeout)
            images = dict(recorder.images)
        finally:
            children.stop_all()
            recorder.destroy_node()
    rec = read_recording(bag_path, CAMERAS)
    metric, matched = score(rec)
    pictures: list[Path] = []
    stamp = picture_stamp(rec.predictions, images)
    if stamp is not None:
        pictures = write_pictures(rec, stamp, decode_images(images.get(stamp, {}), CAMERAS, args.compressed),
                                  CAMERAS, out, "synthetic frame")
    summary = {
        "mode": "synthetic", "model": model,
        "frames_in": rec.counts.get(sm.GROUND_TRUTH_TOPIC, 0), "frames_published": len(rec.predictions),
        "camera_rate_hz": args.rate, "resolution": args.resolution, "compressed": args.compressed,
        **latency_stats(rec), "scored_frames": len(matched), **metric.summary(),
        **(grid_note(grid_of(rec.predictions[matched[0]])) if matched else {}),
        "node_diagnostics": node_diagnostics(rec), "outputs_bag": str(bag_path),
        "topics_recorded": rec.counts, "pictures": [str(p) for p in pictures],
    }
    return summary


def publish_nuscenes(node: Node, sample_dir: Path, compressed_pubs: dict[str, Any], info_pubs: dict[str, Any],
                     ) -> int:
    """Publish the sample's six JPEGs and CameraInfos stamped now; returns the stamp."""
    data = json.loads((sample_dir / "sample.json").read_text())
    stamp = node.get_clock().now().nanoseconds
    for cam, name in zip(CAMERAS, NUSCENES_CAMERAS):
        c = data["cameras"][name]
        info_pubs[cam].publish(sm.camera_info_msg(cam, np.asarray(c["intrinsics_K"]), c["height"], c["width"], stamp))
        compressed_pubs[cam].publish(sm.compressed_msg(cam, (sample_dir / c["file"]).read_bytes(), stamp))
    return stamp


def run_nuscenes(args: argparse.Namespace, children: ChildProcesses, out: Path) -> dict[str, Any]:
    """One real nuScenes frame through real messages; returns the summary."""
    sample_dir = default_sample_dir()
    rig = load_nuscenes_sample_rig(sample_dir)
    model_args, model = model_choice(args.checkpoint)
    bag_path = out / "outputs.mcap"
    with BagWriter(bag_path, overwrite=True) as writer:
        recorder = Recorder(writer, CAMERAS, compressed=True)
        try:
            static = recorder.create_publisher(TFMessage, "/tf_static", qos.TF_STATIC_PUBLISHER)
            static.publish(sm.tf_static_msg(CAMERAS, np.stack([c.ego_T_cam for c in rig.cameras]),
                                            recorder.get_clock().now().nanoseconds))
            images = {c: recorder.create_publisher(CompressedImage, sm.image_topic(c, True), qos.CAMERA_PUBLISHER)
                      for c in CAMERAS}
            infos = {c: recorder.create_publisher(CameraInfo, sm.info_topic(c), qos.CAMERA_PUBLISHER)
                     for c in CAMERAS}
            children.start("node", node_command(model_args, True, []))
            print(f"demo --nuscenes: starting the node ({model['kind']}) ...", flush=True)
            wait_for_node_subscriptions(recorder, children, True, args.timeout)
            spin_while(recorder, children, lambda: True, 1.0)  # both ends of every topic matched
            sent = [publish_nuscenes(recorder, sample_dir, images, infos)]  # once: reliable, full size
            if not spin_while(recorder, children, lambda: recorder.outputs_received() == 0, args.timeout):
                raise TimeoutError(f"no occ_node output within {args.timeout} s for the one set sent; "
                                   f"the node's last problem: {last_problem(children.log_tail('node', 200))}")
            spin_while(recorder, children, lambda: True, 1.0)  # the other outputs of that set
            raw = dict(recorder.images)
        finally:
            children.stop_all()
            recorder.destroy_node()
    rec = read_recording(bag_path, CAMERAS)
    stamp = picture_stamp(rec.predictions, raw)
    if stamp is None:
        raise RuntimeError("the node answered none of the camera sets sent")
    pictures = write_pictures(rec, stamp, decode_images(raw.get(stamp, {}), CAMERAS, True), CAMERAS, out,
                              "nuScenes sample (real images)")
    return {"mode": "nuscenes", "model": model, "note": REAL_IMAGES_NOTE, "sample_dir": str(sample_dir),
            "sets_sent": len(sent), "frames_published": len(rec.predictions), **latency_stats(rec),
            "node_diagnostics": node_diagnostics(rec), "outputs_bag": str(bag_path),
            "pictures": [str(p) for p in pictures]}


def last_problem(log_text: str) -> str:
    """The node's last ERROR (else WARN, else any) log line, for a run that produced nothing."""
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    for level in ("[ERROR]", "[WARN]"):
        found = [ln for ln in lines if level in ln]
        if found:
            return found[-1]
    return lines[-1] if lines else "(the node logged nothing)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the demo."""
    parser.add_argument("--out", type=Path, default=ROOT / "demo_out", help="output directory")
    parser.add_argument("--frames", type=int, default=20, help="synthetic frames to publish")
    parser.add_argument("--rate", type=float, default=5.0, help="camera rate (Hz)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic world seed")
    parser.add_argument("--preset", default="default", help="synthetic preset")
    parser.add_argument("--resolution", default="256x704", help="camera image size HxW (the tiny models' input)")
    parser.add_argument("--compressed", action="store_true", help="JPEG CompressedImage transport")
    parser.add_argument("--checkpoint", type=Path, help=f"model (default {display_path(DEMO_CHECKPOINT)} "
                                                        "if it exists, else random weights)")
    parser.add_argument("--nuscenes", action="store_true", help="the real nuScenes sample frame instead")
    parser.add_argument("--timeout", type=float, default=300.0, help="bound of every wait (s)")
    parser.add_argument("--drain-s", type=float, default=8.0,
                        help="after the last frame, stop when no output came for this long (s)")


def run(args: argparse.Namespace) -> int:
    """Run the demo; prints where everything is. Returns the exit code."""
    out = Path(args.out) / ("nuscenes" if args.nuscenes else "")
    out.mkdir(parents=True, exist_ok=True)
    domain, env = join_private_domain()  # this process's recorder joins the node's domain
    rclpy.init(args=["scaocc_demo"], domain_id=domain)
    try:
        with ChildProcesses(env, out / "logs") as children:
            summary = (run_nuscenes if args.nuscenes else run_synthetic)(args, children, out)
    except (TimeoutError, RuntimeError, FileNotFoundError) as exc:
        print(f"demo failed: {exc}\n(child logs in {out / 'logs'})", file=sys.stderr)
        return 1
    finally:
        rclpy.try_shutdown()
    summary["ros_domain_id"] = domain
    summary["logs"] = str(out / "logs")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print_report(summary, out)
    if not summary["frames_published"]:  # a demo that produced nothing failed, with the node's reason
        node_log = out / "logs" / "node.log"
        text = node_log.read_text(errors="replace") if node_log.is_file() else ""
        print(f"demo failed: occ_node published nothing; its last problem: {last_problem(text)}", file=sys.stderr)
        return 1
    return 0


def print_report(summary: dict[str, Any], out: Path) -> None:
    """Human-readable lines of the summary."""
    model = summary["model"]
    print("=" * 72)
    if model["random_weights"]:
        print(f"MODEL: RANDOM WEIGHTS ({model['config']}) - {model['note']}")
    else:
        print(f"model: {model['path']}")
    if "note" in summary:
        print(f"NOTE: {summary['note']}")
    if summary["mode"] == "synthetic":
        print(f"frames in: {summary['frames_in']}, frames published by the node: {summary['frames_published']}")
        print(f"mIoU vs synthetic ground truth ({summary['scored_frames']} frames, "
              f"{summary.get('scored_on', 'nothing scored')}): {100 * summary['miou']:.2f} %, "
              f"geometric IoU {100 * summary['iou']:.2f} %")
    else:
        print(f"camera sets sent: {summary['sets_sent']}, outputs: {summary['frames_published']}")
    p50, p95, rate = summary["latency_p50_ms"], summary["latency_p95_ms"], summary["output_rate_hz"]
    print("latency (stamp -> voxels received): "
          + (f"p50 {p50:.0f} ms, p95 {p95:.0f} ms" if p50 is not None else "n/a")
          + (f"; output rate {rate:.2f} Hz" if rate else ""))
    print(f"outputs bag: {summary['outputs_bag']}")
    for p in summary["pictures"]:
        print(f"picture: {p}")
    print(f"summary: {out / 'summary.json'}\nlogs: {summary['logs']}")


def main() -> None:
    """``python -m scaocc_ros.tools.demo``."""
    parser = argparse.ArgumentParser(prog="scaocc_ros.tools.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
