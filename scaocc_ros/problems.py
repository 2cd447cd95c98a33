"""Rate-limited warnings, one stream per (camera, kind of problem) (no ROS import).

One camera's problem never hides another's, and one kind never hides another: each
(camera, kind) pair gets at most one line per period, and that line says how many problems
of the pair happened since its previous line.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class ProblemLog:
    """Passes at most one line per (camera, kind) per ``period_s`` seconds to ``warn``."""

    def __init__(self, warn: Callable[[str], object], period_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._warn, self.period_s, self._clock = warn, period_s, clock
        self._lock = threading.Lock()  # the worker (decode) and the executor both report
        self._last: dict[tuple[str, str], float] = {}
        self._count: dict[tuple[str, str], int] = {}

    def report(self, camera: str, kind: str, text: str) -> bool:
        """Count one problem; log ``"<camera>: <kind> (n since the last line): <text>"`` unless
        the pair was logged within the period. Returns whether a line went out."""
        key = (camera, kind)
        now = self._clock()
        with self._lock:
            self._count[key] = n = self._count.get(key, 0) + 1
            if now - self._last.get(key, -math.inf) < self.period_s:
                return False
            self._last[key], self._count[key] = now, 0
        self._warn(f"{camera}: {kind} ({n} since the last line): {text}")
        return True
