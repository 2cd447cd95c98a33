"""Diagnostics bookkeeping -> DiagnosticStatus, without a node."""

from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus

from scaocc_ros.diagnostics import NodeStats, Thresholds, diagnostic_statuses
from scaocc_ros.sync import ApproximateTimeSync

S = 10**9
LIMITS = Thresholds(calibration_deg=1.0, calibration_m=0.1, min_cameras=1, camera_timeout_s=1.0)


def statuses(stats: NodeStats, sync: ApproximateTimeSync[object], now: int) -> dict[str, DiagnosticStatus]:
    return {s.name.split(": ")[1]: s for s in diagnostic_statuses(stats, sync, now, LIMITS, "occ_node")}


def values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def test_rates_latency_and_calibration_warning() -> None:
    stats = NodeStats(["a", "b"], window_s=2.0)
    sync: ApproximateTimeSync[object] = ApproximateTimeSync(["a", "b"], slop_ns=0, queue_size=3, timeout_ns=S)
    for k in range(20):  # 10 Hz each for 2 s
        t = k * S // 10
        for cam in ("a", "b"):
            stats.received(cam, t)
            sync.add(cam, t, None, t)
    for lat in range(1, 101):
        stats.inferred(float(lat), np.array([0.5, 2.0]), np.array([0.01, 0.02]))
    out = statuses(stats, sync, 19 * S // 10)
    assert out["inputs"].level == DiagnosticStatus.OK
    assert float(values(out["inputs"])["a.rate_hz"]) == pytest.approx(10.0)
    inference = values(out["inference"])
    assert float(inference["latency_p50_ms"]) == pytest.approx(50.5)
    assert float(inference["latency_p95_ms"]) == pytest.approx(95.05)
    assert float(values(out["sync"])["success_rate"]) == 1.0
    assert out["calibration"].level == DiagnosticStatus.WARN and "b (2.00 deg" in out["calibration"].message
    assert "a (" not in out["calibration"].message


def test_malformed_warns_once_per_report_and_silence_is_an_error() -> None:
    stats = NodeStats(["a"])
    sync: ApproximateTimeSync[object] = ApproximateTimeSync(["a"], slop_ns=0, queue_size=3, timeout_ns=S)
    stats.received("a", 0)
    stats.malformed_message("a", "image")
    stats.malformed_message("a", "image")
    first = statuses(stats, sync, 0)["inputs"]
    assert first.level == DiagnosticStatus.WARN and "a: 2 image since the last report" in first.message
    assert values(first)["a.malformed"] == "image=2"
    stats.received("a", S // 2)
    assert statuses(stats, sync, S // 2)["inputs"].level == DiagnosticStatus.OK  # nothing new
    silent = statuses(stats, sync, 3 * S)["inputs"]
    assert silent.level == DiagnosticStatus.ERROR and "no camera images for 2.5 s" in silent.message


def test_late_and_dropped_inputs_warn_above_their_thresholds_naming_the_camera() -> None:
    stats = NodeStats(["a", "b"])
    sync: ApproximateTimeSync[object] = ApproximateTimeSync(["a", "b"], slop_ns=0, queue_size=3, timeout_ns=S)
    limits = Thresholds(1.0, 0.1, 1, 1.0, late_duplicate=2, dropped=0)
    for t in (0, 1):
        stats.received("a", t)
        stats.received("b", t)
    stats.malformed_message("b", "late")
    stats.malformed_message("b", "duplicate")
    ok = {s.name: s for s in diagnostic_statuses(stats, sync, 1, limits, "occ_node")}["occ_node: inputs"]
    assert ok.level == DiagnosticStatus.OK  # 2 late/duplicate: not above 2
    for _ in range(3):
        stats.malformed_message("b", "late")
    stats.no_extrinsics("a")
    warn = {s.name: s for s in diagnostic_statuses(stats, sync, 2, limits, "occ_node")}["occ_node: inputs"]
    assert warn.level == DiagnosticStatus.WARN
    assert "b: 3 late since the last report" in warn.message and "a: 1 no_extrinsics" in warn.message
