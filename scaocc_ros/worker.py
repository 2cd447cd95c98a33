"""A worker thread fed through a one-slot queue: the newest item wins (no ROS import).

The node's executor hands every synchronised camera set to :meth:`LatestWorker.submit`, which
never blocks; if the worker is still busy with an earlier set, the waiting one is replaced
and counted as dropped. This bounds latency to one inference plus the one in progress.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class LatestWorker(Generic[T]):
    """Runs ``process(item)`` on a daemon thread for the newest submitted item."""

    def __init__(self, process: Callable[[T], None], on_error: Callable[[BaseException], None],
                 name: str = "occ-inference") -> None:
        self._process = process
        self._on_error = on_error
        self._cond = threading.Condition()
        self._slot: T | None = None
        self._busy = False
        self._stop = False
        self.dropped = 0
        self.processed = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> bool:
        """Queue ``item`` (replacing a waiting one); returns ``False`` if one was dropped."""
        with self._cond:
            replaced = self._slot is not None
            if replaced:
                self.dropped += 1
            self._slot = item
            self._cond.notify()
            return not replaced

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is queued or running (tests and shutdown); ``False`` on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._slot is None and not self._busy, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the item in progress, drop a waiting one, and join the thread."""
        with self._cond:
            self._stop = True
            self._slot = None
            self._cond.notify_all()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._slot is not None or self._stop)
                if self._stop:
                    return
                item, self._slot = self._slot, None
                self._busy = True
            try:
                self._process(item)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - reported, the worker keeps running
                self._on_error(exc)
            finally:
                with self._cond:
                    self._busy = False
                    self.processed += 1
                    self._cond.notify_all()
