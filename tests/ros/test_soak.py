"""The 30-second soak (``bench/soak.py``): two occ_node processes, good sets and every category of
hostile message; every bad message counted, no restart, memory flat after warm-up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scaocc_ros.tools.processes import ROOT, free_domain_id, ros_environment
from scaocc_ros.tools.soak import rss_slope


@pytest.mark.slow
@pytest.mark.soak
def test_thirty_second_soak(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    cmd = [sys.executable, str(ROOT / "bench" / "soak.py"), "--seconds", "30", "--warm-s", "12",
           "--silence-every-s", "12", "--json", str(out), "--plot", str(tmp_path / "rss.png"),
           "--logs", str(tmp_path / "logs"),
           "--max-age-s", "30"]  # counting, not latency: a loaded CI machine delivers good images late
    run = subprocess.run(cmd, env=ros_environment(free_domain_id()), capture_output=True, text=True, timeout=600)
    assert out.is_file(), run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["bad_sent"] >= 200 and result["bad_counted"] == result["bad_sent"], result["nodes"]
    assert result["node_restarts_needed"] == 0
    for name, node in result["nodes"].items():
        assert set(node["bad_sent_by_category"]) >= {"stamp_future", "info_mismatched_size", "frame_id_empty"}, name
        assert node["rss_mb_end"] <= 1.15 * node["rss_mb_warm"], (name, node["rss_mb_warm"], node["rss_mb_end"])
    assert (tmp_path / "rss.png").stat().st_size > 10_000


def test_rss_trend_is_the_least_squares_slope_after_the_warm_up() -> None:
    warm_up = [(float(t), 300.0 + 5.0 * t) for t in range(20)]  # climbing while the node warms up
    after = [(float(t), 500.0 + 0.1 * t) for t in range(20, 120)]  # then 0.1 MiB/s = 60 MiB per 10 min
    assert rss_slope([*warm_up, *after, (120.0, float("nan"))], warm_s=20.0) == pytest.approx(60.0)
    assert rss_slope([*warm_up, *after[:2]], warm_s=20.0) is None  # too few samples for a trend
