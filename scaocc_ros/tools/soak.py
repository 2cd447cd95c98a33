"""The soak: good camera sets mixed with hostile messages, against occ_node in child processes.

Two nodes run side by side on a private localhost domain, one subscribing raw ``bgr8``
images and one JPEG ``CompressedImage`` (each category of bad input needs one of the two),
each fed the nuScenes sample rig (six 1600x900 cameras) at ``--rate`` by this process. From
``--hostile-start-s`` until ``--drain-s`` before the end, every tick also sends
``--hostile-per-tick`` hostile messages per node, round robin over every category of
:mod:`scaocc_ros.tools.hostile`; every ``--silence-every-s`` one camera goes silent for
``--silence-s``. The nodes' resident memory is sampled every second; a node that dies is
restarted (and counted). The result (``--json``):

- ``bad_sent`` / ``bad_counted`` (what the nodes' ``/diagnostics`` count as unusable);
- ``node_restarts_needed``; ``rss_mb_warm`` (the median of the 10 s from ``--warm-s``) and
  ``rss_mb_end`` (the median of the last 10 s: one sample may catch the transient tensors of
  an inference), summed over the nodes, and per node, with each node's memory every 10 s and
  its trend after the warm-up (``rss_mb_per_10min_after_warm``, a least-squares slope);
  ``--plot`` draws that memory;
- ``good_sets_sent`` / ``good_sets_answered``, delivery per camera, latency p50 / p95.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import rclpy

from scaocc_ros.tools import hostile
from scaocc_ros.tools.harness import CAMERAS, Feeder, SampleRig, rss_mb, spin_for, start_node, summary_of
from scaocc_ros.tools.processes import ChildProcesses, join_private_domain

NODES = {"raw": False, "compressed": True}  # name (and namespace soak_<name>) -> compressed
SILENT_CAMERA = CAMERAS[-1]
#: After a silence, hostile stamps stay off the camera this long: an image stamped a second
#: back may complete a set the camera missed while silent, and the node is right to use it.
RECOVERY_S = 1.5
RSS_WINDOW_S = 10.0  # rss_mb_warm and rss_mb_end are medians over this long (one sample a second)


class SoakNode:
    """One node under test: its feeder, its hostile categories, its memory samples."""

    def __init__(self, name: str, compressed: bool, rig: SampleRig, children: ChildProcesses,
                 params: list[str]) -> None:
        self.name, self.compressed, self.children, self.params = name, compressed, children, params
        self.namespace = f"soak_{name}"
        self.feeder = Feeder(self.namespace, rig, compressed)
        self.categories = hostile.categories(compressed)
        self.cycle = itertools.cycle(itertools.product(self.categories, CAMERAS))
        self.bad_sent: dict[str, int] = {k: 0 for k in self.categories}
        self.restarts = 0
        self.rss: list[tuple[float, float]] = []
        self.pid = self.start()

    def start(self) -> int:
        """Start (or restart) the node process."""
        transport = "compressed" if self.compressed else "raw"
        return start_node(self.children, self.name, self.namespace, transport, self.params)

    def alive(self) -> bool:
        """Whether the node process is running."""
        return self.children.procs[self.name].poll() is None

    def send_hostile(self, now_ns: int, spared: str | None, rng: np.random.Generator) -> None:
        """The next hostile message of the round robin (never to the ``spared`` camera)."""
        category, cam = next(self.cycle)
        while cam == spared:
            category, cam = next(self.cycle)
        context = hostile.Context(self.feeder, cam, now_ns, self.feeder.last_sent_ns[cam], rng)
        kind, msg = self.categories[category](context)
        (self.feeder.infos if kind == "info" else self.feeder.images)[cam].publish(msg)
        self.bad_sent[category] += 1

    def bad_counted(self) -> dict[str, int]:
        """Kind -> messages the node counted as unusable, all cameras (no_camera_info is start-up)."""
        out: dict[str, int] = {}
        for kinds in self.feeder.dropped_by_node().values():
            for k, v in kinds.items():
                out[k] = out.get(k, 0) + v
        return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the soak; returns the result."""
    domain, env = join_private_domain()
    rclpy.init(domain_id=domain)
    rng = np.random.default_rng(args.seed)
    rig = SampleRig()
    try:
        with ChildProcesses(env, Path(args.logs)) as children:
            params = ["-p", f"max_age_s:={args.max_age_s}"]
            nodes = [SoakNode(n, c, rig, children, params) for n, c in NODES.items()]
            feeders = [n.feeder for n in nodes]
            def started() -> bool:
                return all(f.ready() for f in feeders) or not all(n.alive() for n in nodes)

            spin_for(feeders, args.start_timeout_s, started)
            if not all(f.ready() for f in feeders) or not all(n.alive() for n in nodes):
                raise RuntimeError("a node did not start:\n" + "\n".join(children.log_tail(n.name) for n in nodes))
            spin_for(feeders, 2.0)
            start = time.monotonic()
            tick, last_rss = 0, -1.0
            while (t := time.monotonic() - start) < args.seconds:
                phase = t % args.silence_every_s
                silent = SILENT_CAMERA if args.silence_every_s - args.silence_s <= phase else None
                spared = SILENT_CAMERA if silent or phase < RECOVERY_S else None
                now = feeders[0].now_ns()
                for node in nodes:
                    if not node.alive():
                        node.restarts += 1
                        node.pid = node.start()
                    node.feeder.publish_set(now, skip=(silent,) if silent else ())
                    if args.hostile_start_s <= t < args.seconds - args.drain_s:
                        for _ in range(args.hostile_per_tick):
                            node.send_hostile(now, spared, rng)
                if t - last_rss >= 1.0:
                    last_rss = t
                    for node in nodes:
                        node.rss.append((t, rss_mb(node.pid) or float("nan")))
                tick += 1
                spin_for(feeders, max(0.0, start + tick / args.rate - time.monotonic()))
            settle(feeders, nodes, args.settle_s)  # until the nodes have taken everything sent
            out = result(args, nodes)
            for f in feeders:
                f.destroy_node()
            return out
    finally:
        rclpy.try_shutdown()


def settle(feeders: list[Feeder], nodes: list[SoakNode], limit_s: float) -> None:
    """Spin until two diagnostics reports in a row show the same counts (at most ``limit_s``)."""
    def counts() -> tuple[object, ...]:
        return tuple((n.bad_counted(), n.feeder.synchroniser_received()) for n in nodes)

    end = time.monotonic() + limit_s
    previous = None
    while time.monotonic() < end:
        spin_for(feeders, 2.5)
        now = counts()
        if now == previous:
            return
        previous = now


def result(args: argparse.Namespace, nodes: list[SoakNode]) -> dict[str, Any]:
    """The JSON result (see the module docstring)."""
    per_node = {}
    for node in nodes:
        warm = float(np.nanmedian([m for t, m in node.rss if args.warm_s <= t < args.warm_s + RSS_WINDOW_S]))
        end = float(np.nanmedian([m for _, m in node.rss[-int(RSS_WINDOW_S):]]))
        counted = node.bad_counted()
        per_node[node.name] = {
            "bad_sent": sum(node.bad_sent.values()), "bad_sent_by_category": node.bad_sent,
            "bad_counted": sum(counted.values()), "bad_counted_by_kind": counted, "restarts": node.restarts,
            "rss_mb_warm": round(warm, 1), "rss_mb_end": round(end, 1),
            "rss_mb_max": round(max(m for _, m in node.rss), 1),
            "rss_mb_per_10min_after_warm": rss_slope(node.rss, args.warm_s),
            "rss_mb_every_10s": [[round(t), round(m, 1)] for t, m in node.rss[::10]], **summary_of(node.feeder)}
    rows = per_node.values()
    out: dict[str, Any] = {
        "seconds": args.seconds, "rate_hz": args.rate, "node_max_age_s": args.max_age_s,
        "bad_sent": sum(r["bad_sent"] for r in rows), "bad_counted": sum(r["bad_counted"] for r in rows),
        "node_restarts_needed": sum(r["restarts"] for r in rows),
        "rss_mb_warm": round(sum(r["rss_mb_warm"] for r in rows), 1),
        "rss_mb_end": round(sum(r["rss_mb_end"] for r in rows), 1),
        "good_sets_sent": sum(r["good_sets_sent"] for r in rows),
        "good_sets_answered": sum(r["good_sets_answered"] for r in rows),
        "delivery": {n: r["delivery"] for n, r in per_node.items()},
        "latency_p50_ms": {n: r["latency_p50_ms"] for n, r in per_node.items()},
        "latency_p95_ms": {n: r["latency_p95_ms"] for n, r in per_node.items()},
        "silent_camera": SILENT_CAMERA, "silence": f"{args.silence_s} s every {args.silence_every_s} s",
        "nodes": per_node,
    }
    out["passed"] = bool(out["bad_counted"] == out["bad_sent"] and out["node_restarts_needed"] == 0
                         and all(r["rss_mb_end"] <= 1.15 * r["rss_mb_warm"] for r in rows))
    return out


def rss_slope(samples: list[tuple[float, float]], warm_s: float) -> float | None:
    """Least-squares trend of resident memory after ``warm_s``, in MiB per 10 minutes."""
    kept = [(t, m) for t, m in samples if t >= warm_s and np.isfinite(m)]
    if len(kept) < 3:
        return None
    t, m = np.array(kept).T  # n 2 -> 2 n
    return round(float(np.polyfit(t, m, 1)[0]) * 600.0, 2)


def plot_rss(out: dict[str, Any], png: Path) -> Path:
    """Resident memory of each node over the soak, as a PNG."""
    from scaocc_core.viz import plt, save_figure

    fig, ax = plt.subplots(figsize=(8, 4))
    for name, node in out["nodes"].items():
        t, m = zip(*node["rss_mb_every_10s"], strict=True)
        ax.plot(np.array(t) / 60.0, m, label=f"{name} node (trend {node['rss_mb_per_10min_after_warm']} MiB/10 min)")
    ax.set_xlabel("minutes")
    ax.set_ylabel("resident memory (MiB)")
    ax.set_title(f"soak: {out['seconds']:.0f} s at {out['rate_hz']:g} Hz, {out['bad_sent']} hostile messages")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, png)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the soak."""
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--rate", type=float, default=10.0, help="good camera sets per second per node")
    parser.add_argument("--hostile-per-tick", type=int, default=1, help="hostile messages per node per set")
    parser.add_argument("--hostile-start-s", type=float, default=3.0)
    parser.add_argument("--drain-s", type=float, default=5.0, help="good sets only at the end (s)")
    parser.add_argument("--warm-s", type=float, default=20.0, help="when rss_mb_warm is taken (s)")
    parser.add_argument("--silence-every-s", type=float, default=20.0)
    parser.add_argument("--silence-s", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-age-s", type=float, default=5.0,
                        help="the nodes' max_age_s: raise it where the machine is so loaded that good images reach "
                             "the nodes later than that (they are then rightly counted as stale)")
    parser.add_argument("--settle-s", type=float, default=60.0,
                        help="after the last message, wait up to this long for the nodes' counts to settle")
    parser.add_argument("--start-timeout-s", type=float, default=900.0, help="bound of the nodes' start-up")
    parser.add_argument("--logs", default="/tmp/scaocc_soak_logs", help="node logs")
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--plot", type=Path, help="write the nodes' resident memory over time here (PNG)")


def main(argv: list[str] | None = None) -> int:
    """``python bench/soak.py``: prints the result; exit 0 when it passed."""
    parser = argparse.ArgumentParser(prog="soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        out = run(args)
    except (RuntimeError, TimeoutError) as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(out, indent=1)
    if args.json:
        args.json.write_text(text)
    if args.plot:
        plot_rss(out, args.plot)
    print(text)
    print(f"bad sent {out['bad_sent']}, counted {out['bad_counted']}; restarts {out['node_restarts_needed']}; "
          f"rss warm {out['rss_mb_warm']} MB, end {out['rss_mb_end']} MB; passed: {out['passed']}")
    return 0 if out["passed"] else 1
