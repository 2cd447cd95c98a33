"""Bookkeeping behind ``/diagnostics``: rates, drops, malformed messages, latency, calibration.

:class:`NodeStats` is updated from the node's callbacks and its worker thread (a lock guards
it); :func:`diagnostic_statuses` turns a snapshot into ``DiagnosticStatus`` messages.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from scaocc_ros.sync import ApproximateTimeSync

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


class NodeStats:
    """Thread-safe counters of one node run (times in nanoseconds of the node clock)."""

    def __init__(self, camera_names: list[str], window_s: float = 5.0, latency_samples: int = 200) -> None:
        self.names = list(camera_names)
        self.window_ns = int(window_s * 1e9)
        self.lock = threading.Lock()
        self.receive_ns: dict[str, deque[int]] = {n: deque() for n in self.names}
        self.malformed: dict[str, Counter[str]] = {n: Counter() for n in self.names}
        self.malformed_reported = 0
        self.no_camera_info: Counter[str] = Counter()
        self.no_extrinsics: Counter[str] = Counter()
        self.sets_inferred = 0
        self.sets_dropped = 0
        self.sets_skipped = 0
        self.inference_errors = 0
        self.last_error = ""
        self.latency_ms: deque[float] = deque(maxlen=latency_samples)
        self.rotation_deg = np.zeros(len(self.names))
        self.translation_m = np.zeros(len(self.names))
        self.notes: list[str] = []

    def received(self, camera: str, now_ns: int) -> None:
        """Count one image of ``camera`` (for the input rate)."""
        with self.lock:
            q = self.receive_ns[camera]
            q.append(now_ns)
            while q and now_ns - q[0] > self.window_ns:
                q.popleft()

    def malformed_message(self, camera: str, kind: str) -> None:
        """Count one skipped message of ``camera``; ``kind`` is image, camera_info, stamp..."""
        with self.lock:
            self.malformed[camera][kind] += 1

    def inferred(self, latency_ms: float, rotation_deg: np.ndarray, translation_m: np.ndarray) -> None:
        """Record one published prediction."""
        with self.lock:
            self.sets_inferred += 1
            self.latency_ms.append(latency_ms)
            self.rotation_deg, self.translation_m = rotation_deg, translation_m

    def rate_hz(self, camera: str, now_ns: int) -> float:
        """Images per second of ``camera`` over the last window."""
        q = self.receive_ns[camera]
        recent = [t for t in q if now_ns - t <= self.window_ns]
        return len(recent) / (self.window_ns / 1e9)


@dataclass(frozen=True)
class Thresholds:
    """Limits that turn a status into WARN."""

    calibration_deg: float
    calibration_m: float
    min_cameras: int
    camera_timeout_s: float


def _kv(key: str, value: object) -> KeyValue:
    return KeyValue(key=key, value=f"{value:.3f}" if isinstance(value, float) else str(value))


def diagnostic_statuses(stats: NodeStats, sync: ApproximateTimeSync[object], now_ns: int,
                        limits: Thresholds, prefix: str = "occ_node") -> list[DiagnosticStatus]:
    """The four statuses: inputs, synchronisation, inference and calibration."""
    with stats.lock:
        return [_inputs(stats, sync, now_ns, limits, prefix), _sync(sync, prefix),
                _inference(stats, prefix), _calibration(stats, limits, prefix)]


def _inputs(stats: NodeStats, sync: ApproximateTimeSync[object], now_ns: int, limits: Thresholds,
            prefix: str) -> DiagnosticStatus:
    active = sync.active()
    missing = [n for n, a in zip(stats.names, active) if not a]
    malformed_total = sum(sum(c.values()) for c in stats.malformed.values())
    new_malformed = malformed_total - stats.malformed_reported
    stats.malformed_reported = malformed_total
    values = [_kv("missing_cameras", ",".join(missing) or "none"), _kv("malformed_total", malformed_total)]
    for n in stats.names:
        values.append(_kv(f"{n}.rate_hz", stats.rate_hz(n, now_ns)))
        kinds = stats.malformed[n]
        values.append(_kv(f"{n}.malformed", ", ".join(f"{k}={v}" for k, v in sorted(kinds.items())) or "0"))
        if stats.no_camera_info[n] or stats.no_extrinsics[n]:
            values.append(_kv(f"{n}.waiting", f"camera_info={stats.no_camera_info[n]} "
                                              f"extrinsics={stats.no_extrinsics[n]}"))
    present = len(stats.names) - len(missing)
    problems = []
    last = max((q[-1] for q in stats.receive_ns.values() if q), default=None)
    if last is None or now_ns - last > limits.camera_timeout_s * 1e9:
        problems.append("no camera images" + ("" if last is None else f" for {(now_ns - last) / 1e9:.1f} s"))
        present = 0
    if missing:
        problems.append(f"missing cameras (running without them): {', '.join(missing)}")
    if new_malformed:
        problems.append(f"{new_malformed} malformed message(s) skipped since the last report")
    level = ERROR if present < limits.min_cameras else (WARN if problems else OK)
    message = "; ".join(problems) or f"all {len(stats.names)} cameras"
    return DiagnosticStatus(level=level, name=f"{prefix}: inputs", message=message, values=values)


def _sync(sync: ApproximateTimeSync[object], prefix: str) -> DiagnosticStatus:
    values = [_kv("success_rate", sync.success_rate()), _kv("sets_emitted", sync.sets_emitted)]
    for name in sync.names:
        s = sync.stats(name)
        values.append(_kv(name, f"received={s.received} matched={s.matched} duplicates={s.duplicates} "
                                f"late={s.late} overflow={s.overflow} unmatched={s.unmatched}"))
    return DiagnosticStatus(level=OK, name=f"{prefix}: sync", message=f"{sync.sets_emitted} sets", values=values)


def _inference(stats: NodeStats, prefix: str) -> DiagnosticStatus:
    lat = np.asarray(stats.latency_ms, dtype=np.float64)
    p50, p95 = (float(np.percentile(lat, 50)), float(np.percentile(lat, 95))) if lat.size else (0.0, 0.0)
    values = [
        _kv("sets_inferred", stats.sets_inferred), _kv("sets_dropped_newest_wins", stats.sets_dropped),
        _kv("sets_skipped_too_few_cameras", stats.sets_skipped), _kv("errors", stats.inference_errors),
        _kv("latency_p50_ms", p50), _kv("latency_p95_ms", p95),
    ]
    values += [_kv("note", n) for n in stats.notes]
    if stats.inference_errors:
        return DiagnosticStatus(level=ERROR, name=f"{prefix}: inference", values=values,
                                message=f"{stats.inference_errors} inference error(s), last: {stats.last_error}")
    level = WARN if stats.notes else OK
    message = "; ".join(stats.notes) or f"{stats.sets_inferred} sets, p50 {p50:.0f} ms"
    return DiagnosticStatus(level=level, name=f"{prefix}: inference", message=message, values=values)


def _calibration(stats: NodeStats, limits: Thresholds, prefix: str) -> DiagnosticStatus:
    values, over = [], []
    for n, deg, m in zip(stats.names, stats.rotation_deg, stats.translation_m):
        values.append(_kv(n, f"rotation={deg:.3f} deg translation={m:.3f} m"))
        if deg > limits.calibration_deg or m > limits.calibration_m:
            over.append(f"{n} ({deg:.2f} deg, {m:.3f} m)")
    if over:
        return DiagnosticStatus(level=WARN, name=f"{prefix}: calibration", values=values,
                                message=f"learnt offsets above {limits.calibration_deg} deg / "
                                        f"{limits.calibration_m} m: {', '.join(over)}")
    return DiagnosticStatus(level=OK, name=f"{prefix}: calibration", message="offsets within limits",
                            values=values)
