"""Assemble ``gpu.json`` from what ``bench/gpu_check.sh`` wrote into its output folder.

    python3 bench/gpu_report.py OUT                 # writes OUT/gpu.json and prints its table
    python3 bench/gpu_report.py OUT --machine "..." # overrides the machine description

Reads (each optional; a missing part leaves its fields null): ``cuda_tests.xml`` (pytest's
JUnit report of ``tests/cuda``), ``inference.json`` (``bench/inference.py --json``),
``train.json``, ``pool.json`` and ``pre.json`` (``bench/gpu_bench.py``). The schema (``bench/results/gpu.json``):

``machine``, ``gpu`` (torch's device name, null without a GPU), ``torch``, ``date``,
``command``, ``note``, ``cuda_tests_passed`` / ``cuda_tests_failed`` / ``cuda_tests_skipped``,
``rows`` (``{config, device, backend, precision, latency_ms, pre_ms, post_ms, fps}`` plus
extras), ``train_step_ms`` / ``train_step_causal_ms`` / ``causal_ratio`` (r50),
``pool_gbps`` / ``pool_peak_fraction`` (plus the pool's other figures under ``pool``),
``preprocess`` (the node's pre-processing on the CPU against on the device),
and ``goals``: each issue goal with its target, the measured value and whether it is met.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

GOAL_FPS, FLOOR_FPS = 200.0, 100.0  # scaocc_r50 fp16 end to end on an H100/H200
GOAL_POOL_OVER_BOUND = 2.0  # pooling kernel within 2x of the bandwidth bound
GOAL_CAUSAL_RATIO = 1.15  # causal loss adds at most 15 % to an r50 training step


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def junit_counts(path: Path) -> dict[str, int | None]:
    """Passed, failed (failures + errors) and skipped tests of a pytest JUnit XML report."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {"cuda_tests_passed": None, "cuda_tests_failed": None, "cuda_tests_skipped": None}
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    return {"cuda_tests_passed": total - failed - skipped, "cuda_tests_failed": failed, "cuda_tests_skipped": skipped}


def failed_tests(path: Path) -> list[str]:
    """Names of the failed or errored test cases, with the first line of their message."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return []
    out = []
    for case in root.iter("testcase"):
        for bad in (*case.findall("failure"), *case.findall("error")):
            message = (bad.get("message") or "").splitlines()[:1]
            out.append(f"{case.get('name')}: {message[0][:160] if message else ''}")
    return out


def goals(rows: list[dict[str, Any]], train: dict[str, Any] | None, pool: dict[str, Any] | None) -> dict[str, Any]:
    """Each goal of the issue: target, measured value, met (null when not measured on a GPU)."""
    r50 = [r for r in rows if r.get("config") == "scaocc_r50" and str(r.get("device", "")).startswith("cuda")
           and r.get("precision") == "fp16" and r.get("fps")]
    best = max(r50, key=lambda r: r["fps"]) if r50 else None
    fps = best["fps"] if best else None
    def on_gpu(part: dict[str, Any] | None) -> bool:
        return part is not None and str(part.get("device", "")).startswith("cuda")

    over = pool.get("kernel_over_bound") if on_gpu(pool) and pool else None
    ratio = train.get("causal_ratio") if on_gpu(train) and train else None
    return {
        "r50_fp16_fps": {"target": GOAL_FPS, "floor": FLOOR_FPS, "measured": fps,
                         "backend": best["backend"] if best else None,
                         "met": None if fps is None else fps >= GOAL_FPS,
                         "floor_met": None if fps is None else fps >= FLOOR_FPS},
        "pool_over_bound": {"target": GOAL_POOL_OVER_BOUND, "measured": over,
                            "met": None if over is None else over <= GOAL_POOL_OVER_BOUND},
        "causal_ratio": {"target": GOAL_CAUSAL_RATIO, "measured": ratio,
                         "met": None if ratio is None else ratio <= GOAL_CAUSAL_RATIO},
    }


def assemble(out: Path, machine: str | None, command: str, note: str | None = None) -> dict[str, Any]:
    """The ``gpu.json`` object from the parts in ``out``."""
    inference = read_json(out / "inference.json") or {}
    train = read_json(out / "train.json")
    pool = read_json(out / "pool.json")
    pre = read_json(out / "pre.json")
    rows = inference.get("rows", [])
    gpu = inference.get("gpu") or (train or {}).get("gpu") or (pool or {}).get("gpu")
    torch_version = inference.get("torch") or (train or {}).get("torch") or (pool or {}).get("torch")
    return {
        "machine": machine or inference.get("machine"),
        "gpu": gpu,
        "torch": torch_version,
        "date": datetime.date.today().isoformat(),
        "command": command,
        "note": note,
        **junit_counts(out / "cuda_tests.xml"),
        "cuda_tests_failures": failed_tests(out / "cuda_tests.xml"),
        "rows": rows,
        "pre": inference.get("pre"),
        "post": inference.get("post"),
        "train_step_ms": train.get("train_step_ms") if train else None,
        "train_step_causal_ms": train.get("train_step_causal_ms") if train else None,
        "causal_ratio": train.get("causal_ratio") if train else None,
        "train": train,
        "pool_gbps": pool.get("pool_gbps") if pool else None,
        "pool_peak_fraction": pool.get("pool_peak_fraction") if pool else None,
        "pool": pool,
        "preprocess": pre,
        "goals": goals(rows, train, pool),
    }


def table(report: dict[str, Any]) -> str:
    """The rows as a markdown table, then the training and pooling figures."""
    header = ["config", "device", "backend", "precision", "latency ms", "pre ms", "post ms", "FPS", "pipelined FPS"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in report["rows"]:
        def f(key: str, r: dict[str, Any] = r) -> str:
            return "-" if r.get(key) is None else str(r[key])

        lines.append("| " + " | ".join([r["config"], r["device"], r["backend"], r["precision"], f("latency_ms"),
                                         f("pre_ms"), f("post_ms"), f("fps"), f("fps_pipelined")]) + " |")
    lines.append(f"\nmachine: {report['machine']}; torch {report['torch']}")
    lines.append(f"cuda tests: {report['cuda_tests_passed']} passed, {report['cuda_tests_failed']} failed, "
                 f"{report['cuda_tests_skipped']} skipped")
    lines.append(f"train step (r50): {report['train_step_ms']} ms, with causal loss "
                 f"{report['train_step_causal_ms']} ms, ratio {report['causal_ratio']}")
    lines.append(f"pool kernel: {report['pool_gbps']} GB/s, {report['pool_peak_fraction']} of the copy peak")
    lines.append("goals: " + json.dumps(report["goals"]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the folder bench/gpu_check.sh wrote")
    parser.add_argument("--machine", default=None, help="machine description (default: inference.json's)")
    parser.add_argument("--command", default="bench/gpu_check.sh OUT")
    parser.add_argument("--note", default=None, help="a sentence on what this report is (and is not)")
    parser.add_argument("--output", type=Path, default=None, help="default: OUT/gpu.json")
    args = parser.parse_args()
    if not args.out.is_dir():
        sys.exit(f"{args.out} is not a folder")
    report = assemble(args.out, args.machine, args.command, args.note)
    (args.output or args.out / "gpu.json").write_text(json.dumps(report, indent=1) + "\n")
    print(table(report))


if __name__ == "__main__":
    main()
