"""Bookkeeping behind ``/diagnostics``: rates, drops, malformed messages, latency, calibration.

:class:`NodeStats` is updated from the node's callbacks and its worker thread and does all
of its own locking; :func:`diagnostic_statuses` turns one :class:`StatsReport` (a consistent
copy) into ``DiagnosticStatus`` messages.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from scaocc_ros.sync import ApproximateTimeSync

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


@dataclass(frozen=True)
class StatsReport:
    """A consistent copy of :class:`NodeStats` at one instant (what one diagnostics report shows)."""

    names: list[str]
    rate_hz: dict[str, float]  # camera -> images per second over the window
    last_receive_ns: int | None  # newest image of any camera
    malformed: dict[str, dict[str, int]]  # camera -> kind -> count
    new_malformed: int  # malformed messages since the previous report
    new_dropped: dict[str, dict[str, int]]  # camera -> kind (+ no_extrinsics) -> count since the previous report
    no_camera_info: dict[str, int]
    no_extrinsics: dict[str, int]
    sets_inferred: int
    sets_dropped: int
    sets_skipped: int
    inference_errors: int
    last_error: str
    latency_ms: np.ndarray
    rotation_deg: np.ndarray
    translation_m: np.ndarray
    notes: list[str]

    @property
    def malformed_total(self) -> int:
        """Malformed messages of every camera and kind."""
        return sum(sum(kinds.values()) for kinds in self.malformed.values())


class NodeStats:
    """Counters of one node run (times in nanoseconds of the node clock).

    Updated from the executor's callbacks and the worker thread; every method takes the
    lock itself, so callers never do.
    """

    def __init__(self, camera_names: list[str], window_s: float = 5.0, latency_samples: int = 200) -> None:
        self.names = list(camera_names)
        self.window_ns = int(window_s * 1e9)
        self._lock = threading.Lock()
        self._receive_ns: dict[str, deque[int]] = {n: deque() for n in self.names}
        self._malformed: dict[str, Counter[str]] = {n: Counter() for n in self.names}
        self._malformed_reported = 0
        self._dropped_reported: dict[str, Counter[str]] = {n: Counter() for n in self.names}
        self._no_camera_info: Counter[str] = Counter()
        self._no_extrinsics: Counter[str] = Counter()
        self._sets = Counter[str]()  # inferred, dropped, skipped
        self._errors = 0
        self._last_error = ""
        self._latency_ms: deque[float] = deque(maxlen=latency_samples)
        self._rotation_deg = np.zeros(len(self.names))
        self._translation_m = np.zeros(len(self.names))
        self._notes: list[str] = []

    def received(self, camera: str, now_ns: int) -> None:
        """Count one image of ``camera`` (for the input rate)."""
        with self._lock:
            q = self._receive_ns[camera]
            q.append(now_ns)
            while q and now_ns - q[0] > self.window_ns:
                q.popleft()

    def malformed_message(self, camera: str, kind: str) -> None:
        """Count one skipped message of ``camera``; ``kind`` is image, camera_info, stamp, decode..."""
        with self._lock:
            self._malformed[camera][kind] += 1

    def malformed_count(self, camera: str, kind: str) -> int:
        """Skipped messages of one camera and kind so far."""
        with self._lock:
            return self._malformed[camera][kind]

    def no_camera_info(self, camera: str) -> None:
        """Count one image given up while waiting for a first valid CameraInfo."""
        with self._lock:
            self._no_camera_info[camera] += 1

    def no_extrinsics(self, camera: str) -> None:
        """Count one image dropped for lack of extrinsics."""
        with self._lock:
            self._no_extrinsics[camera] += 1

    def set_dropped(self) -> None:
        """Count one set replaced by a newer one before the worker took it."""
        with self._lock:
            self._sets["dropped"] += 1

    def set_skipped(self) -> None:
        """Count one set with fewer usable cameras than ``min_cameras``."""
        with self._lock:
            self._sets["skipped"] += 1

    def inference_failed(self, error: str) -> None:
        """Count one failed inference and keep its description."""
        with self._lock:
            self._errors += 1
            self._last_error = error

    def inferred(self, latency_ms: float, rotation_deg: np.ndarray, translation_m: np.ndarray) -> None:
        """Record one published prediction."""
        with self._lock:
            self._sets["inferred"] += 1
            self._latency_ms.append(latency_ms)
            self._rotation_deg, self._translation_m = rotation_deg, translation_m

    def add_notes(self, notes: list[str]) -> None:
        """Notes shown in the inference status (e.g. random weights)."""
        with self._lock:
            self._notes += notes

    def report(self, now_ns: int) -> StatsReport:
        """A copy of every counter; malformed messages count as reported from now on."""
        with self._lock:
            malformed = {n: dict(c) for n, c in self._malformed.items()}
            total = sum(sum(c.values()) for c in malformed.values())
            new, self._malformed_reported = total - self._malformed_reported, total
            new_dropped: dict[str, dict[str, int]] = {}
            for n in self.names:
                now = self._malformed[n] + Counter(no_extrinsics=self._no_extrinsics[n])
                new_dropped[n] = {k: v for k, v in (now - self._dropped_reported[n]).items() if v}
                self._dropped_reported[n] = now
            last = max((q[-1] for q in self._receive_ns.values() if q), default=None)
            rates = {n: sum(1 for t in q if now_ns - t <= self.window_ns) / (self.window_ns / 1e9)
                     for n, q in self._receive_ns.items()}
            return StatsReport(
                list(self.names), rates, last, malformed, new, new_dropped, dict(self._no_camera_info),
                dict(self._no_extrinsics),
                self._sets["inferred"], self._sets["dropped"], self._sets["skipped"], self._errors, self._last_error,
                np.asarray(self._latency_ms, dtype=np.float64), self._rotation_deg.copy(),
                self._translation_m.copy(), list(self._notes))


@dataclass(frozen=True)
class Thresholds:
    """Limits that turn a status into WARN."""

    calibration_deg: float
    calibration_m: float
    min_cameras: int
    camera_timeout_s: float
    late_duplicate: int = 0  # late or duplicate images of one camera per report above which inputs warns
    dropped: int = 0  # other dropped messages of one camera per report above which inputs warns


def _kv(key: str, value: object) -> KeyValue:
    return KeyValue(key=key, value=f"{value:.3f}" if isinstance(value, float) else str(value))


def diagnostic_statuses(stats: NodeStats, sync: ApproximateTimeSync[object], now_ns: int,
                        limits: Thresholds, prefix: str) -> list[DiagnosticStatus]:
    """The four statuses: inputs, synchronisation, inference and calibration, named
    ``<prefix>: <status>`` (the node passes its own name, so two instances never collide)."""
    report = stats.report(now_ns)
    return [_inputs(report, sync, now_ns, limits, prefix), _sync(sync, prefix), _inference(report, prefix),
            _calibration(report, limits, prefix)]


def _inputs(r: StatsReport, sync: ApproximateTimeSync[object], now_ns: int, limits: Thresholds,
            prefix: str) -> DiagnosticStatus:
    missing = [n for n, a in zip(r.names, sync.active()) if not a]
    values = [_kv("missing_cameras", ",".join(missing) or "none"), _kv("malformed_total", r.malformed_total)]
    for n in r.names:
        values.append(_kv(f"{n}.rate_hz", r.rate_hz[n]))
        kinds = r.malformed[n]
        values.append(_kv(f"{n}.malformed", ", ".join(f"{k}={v}" for k, v in sorted(kinds.items())) or "0"))
        info, extrinsics = r.no_camera_info.get(n, 0), r.no_extrinsics.get(n, 0)
        if info or extrinsics:
            values.append(_kv(f"{n}.waiting", f"camera_info={info} extrinsics={extrinsics}"))
    present = len(r.names) - len(missing)
    problems = []
    last = r.last_receive_ns
    if last is None or now_ns - last > limits.camera_timeout_s * 1e9:
        problems.append("no camera images" + ("" if last is None else f" for {(now_ns - last) / 1e9:.1f} s"))
        present = 0
    if missing:
        problems.append(f"missing cameras (running without them): {', '.join(missing)}")
    for n in r.names:
        new = r.new_dropped.get(n, {})
        late = new.get("late", 0) + new.get("duplicate", 0)
        other = sum(new.values()) - late
        if late > limits.late_duplicate or other > limits.dropped:
            listed = ", ".join(f"{v} {k}" for k, v in sorted(new.items()))
            problems.append(f"{n}: {listed} since the last report")
    level = ERROR if present < limits.min_cameras else (WARN if problems else OK)
    message = "; ".join(problems) or f"all {len(r.names)} cameras"
    return DiagnosticStatus(level=level, name=f"{prefix}: inputs", message=message, values=values)


def _sync(sync: ApproximateTimeSync[object], prefix: str) -> DiagnosticStatus:
    values = [_kv("success_rate", sync.success_rate()), _kv("sets_emitted", sync.sets_emitted)]
    for name in sync.names:
        s = sync.stats(name)
        values.append(_kv(name, f"received={s.received} matched={s.matched} duplicates={s.duplicates} "
                                f"late={s.late} overflow={s.overflow} unmatched={s.unmatched}"))
    return DiagnosticStatus(level=OK, name=f"{prefix}: sync", message=f"{sync.sets_emitted} sets", values=values)


def _inference(r: StatsReport, prefix: str) -> DiagnosticStatus:
    lat = r.latency_ms
    p50, p95 = (float(np.percentile(lat, 50)), float(np.percentile(lat, 95))) if lat.size else (0.0, 0.0)
    values = [
        _kv("sets_inferred", r.sets_inferred), _kv("sets_dropped_newest_wins", r.sets_dropped),
        _kv("sets_skipped_too_few_cameras", r.sets_skipped), _kv("errors", r.inference_errors),
        _kv("latency_p50_ms", p50), _kv("latency_p95_ms", p95),
    ]
    values += [_kv("note", n) for n in r.notes]
    if r.inference_errors:
        return DiagnosticStatus(level=ERROR, name=f"{prefix}: inference", values=values,
                                message=f"{r.inference_errors} inference error(s), last: {r.last_error}")
    level = WARN if r.notes else OK
    message = "; ".join(r.notes) or f"{r.sets_inferred} sets, p50 {p50:.0f} ms"
    return DiagnosticStatus(level=level, name=f"{prefix}: inference", message=message, values=values)


def _calibration(r: StatsReport, limits: Thresholds, prefix: str) -> DiagnosticStatus:
    values, over = [], []
    for n, deg, m in zip(r.names, r.rotation_deg, r.translation_m):
        values.append(_kv(n, f"rotation={deg:.3f} deg translation={m:.3f} m"))
        if deg > limits.calibration_deg or m > limits.calibration_m:
            over.append(f"{n} ({deg:.2f} deg, {m:.3f} m)")
    if over:
        return DiagnosticStatus(level=WARN, name=f"{prefix}: calibration", values=values,
                                message=f"learnt offsets above {limits.calibration_deg} deg / "
                                        f"{limits.calibration_m} m: {', '.join(over)}")
    return DiagnosticStatus(level=OK, name=f"{prefix}: calibration", message="offsets within limits",
                            values=values)
