"""Approximate-time synchronisation of N camera streams (pure Python, no ROS import).

Like message_filters' ``ApproximateTimeSynchronizer``: every camera has a bounded queue of
messages sorted by stamp; as soon as one message per *active* camera can be chosen whose
stamps lie within ``slop`` of each other, that set is emitted (the oldest such set first) and
every queued message older than the emitted one of its camera is dropped as unmatched.

Robustness rules:

- a message whose stamp equals one already queued or already emitted for its camera is a
  **duplicate** (dropped, counted);
- a message older than the last emitted message of its camera is **late** (dropped, counted);
- a full queue drops its oldest message (**overflow**, counted);
- a camera that sent nothing for ``timeout_ns`` (receive time) while others did becomes
  **inactive**: sets are then emitted without it (its slot is ``None``) until its next message
  makes it active again. A camera never heard of counts from the first message of any camera.
  Timeouts are relative to the other cameras' traffic, so a clock jump (simulated time
  starting, a bag looping) or a pause of every camera never drops cameras by itself.

Stamps and receive times are integer nanoseconds passed in by the caller, which keeps this
module deterministic and testable.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class CameraSyncStats:
    """Counters of one camera's queue."""

    received: int = 0
    matched: int = 0
    duplicates: int = 0
    late: int = 0
    overflow: int = 0
    unmatched: int = 0


@dataclass
class SyncedSet(Generic[T]):
    """One emitted set: ``items[i]`` is camera i's payload, ``None`` for an inactive camera."""

    stamps_ns: list[int | None]
    items: list[T | None]

    @property
    def stamp_ns(self) -> int:
        """Stamp of the set: the newest stamp among its messages."""
        return max(s for s in self.stamps_ns if s is not None)

    @property
    def present(self) -> list[bool]:
        """Which cameras have a message in this set."""
        return [s is not None for s in self.stamps_ns]


@dataclass
class _Queue(Generic[T]):
    stamps: list[int] = field(default_factory=list)  # sorted ascending
    items: list[T] = field(default_factory=list)
    last_emitted_ns: int | None = None
    last_receive_ns: int | None = None
    active: bool = True
    stats: CameraSyncStats = field(default_factory=CameraSyncStats)


class ApproximateTimeSync(Generic[T]):
    """Approximate-time synchroniser over ``names`` (see the module docstring)."""

    def __init__(self, names: list[str], slop_ns: int, queue_size: int, timeout_ns: int | None = None) -> None:
        if not names:
            raise ValueError("ApproximateTimeSync needs at least one camera")
        if len(set(names)) != len(names):
            raise ValueError(f"camera names must be unique, got {names}")
        if slop_ns < 0 or queue_size < 1:
            raise ValueError(f"slop must be >= 0 and queue_size >= 1, got {slop_ns}, {queue_size}")
        self.names = list(names)
        self.slop_ns = int(slop_ns)
        self.queue_size = int(queue_size)
        self.timeout_ns = timeout_ns
        self._queues: dict[str, _Queue[T]] = {n: _Queue() for n in names}
        self.sets_emitted = 0
        self._first_receive_ns: int | None = None
        self._latest_receive_ns: int | None = None

    def stats(self, name: str) -> CameraSyncStats:
        """Counters of camera ``name``."""
        return self._queues[name].stats

    def active(self) -> list[bool]:
        """Per camera (in ``names`` order): is it currently waited for?"""
        return [self._queues[n].active for n in self.names]

    def success_rate(self) -> float:
        """Fraction of received messages that ended up in an emitted set (1.0 before any)."""
        received = sum(q.stats.received for q in self._queues.values())
        matched = sum(q.stats.matched for q in self._queues.values())
        return matched / received if received else 1.0

    def add(self, name: str, stamp_ns: int, item: T, now_ns: int) -> list[SyncedSet[T]]:
        """Queue one message (received at ``now_ns``); return the sets it completes, oldest first."""
        if name not in self._queues:
            raise KeyError(f"unknown camera {name!r}; expected one of {self.names}")
        q = self._queues[name]
        latest = self._latest_receive_ns
        if self.timeout_ns is not None and latest is not None and now_ns - latest > self.timeout_ns:
            for other in self._queues.values():  # every camera paused: restart every timeout
                other.last_receive_ns = now_ns
        q.stats.received += 1
        q.last_receive_ns = now_ns
        q.active = True
        if self._first_receive_ns is None:
            self._first_receive_ns = now_ns
        self._latest_receive_ns = max(now_ns, self._latest_receive_ns or now_ns)
        self._expire()
        if q.last_emitted_ns is not None and stamp_ns <= q.last_emitted_ns:
            if stamp_ns == q.last_emitted_ns:
                q.stats.duplicates += 1
            else:
                q.stats.late += 1
            return self._emit_all()  # the timeouts above may have completed a set
        pos = bisect.bisect_left(q.stamps, stamp_ns)
        if pos < len(q.stamps) and q.stamps[pos] == stamp_ns:
            q.stats.duplicates += 1
            return self._emit_all()
        q.stamps.insert(pos, stamp_ns)
        q.items.insert(pos, item)
        if len(q.stamps) > self.queue_size:
            del q.stamps[0], q.items[0]
            q.stats.overflow += 1
        return self._emit_all()

    def _expire(self) -> None:
        """Deactivate cameras silent for more than the timeout before the latest message."""
        if self.timeout_ns is None or self._latest_receive_ns is None:
            return
        for q in self._queues.values():
            last = q.last_receive_ns if q.last_receive_ns is not None else self._first_receive_ns
            if q.active and last is not None and self._latest_receive_ns - last > self.timeout_ns:
                q.active = False
                q.stats.unmatched += len(q.stamps)  # stale: a silent camera's queue is dropped
                q.stamps.clear()
                q.items.clear()

    def _emit_all(self) -> list[SyncedSet[T]]:
        out: list[SyncedSet[T]] = []
        while (found := self._best_set()) is not None:
            out.append(self._pop(found))
        return out

    def _best_set(self) -> dict[str, int] | None:
        """Indices of the oldest set within slop (one message per active camera), if any."""
        active = [n for n in self.names if self._queues[n].active]
        if not active or any(not self._queues[n].stamps for n in active):
            return None
        best: dict[str, int] | None = None
        best_key: tuple[int, int] | None = None
        for pivot_name in active:
            for pivot in self._queues[pivot_name].stamps:
                choice = {n: _closest(self._queues[n].stamps, pivot) for n in active}
                stamps = [self._queues[n].stamps[i] for n, i in choice.items()]
                spread = max(stamps) - min(stamps)
                if spread > self.slop_ns:
                    continue
                key = (max(stamps), spread)
                if best_key is None or key < best_key:
                    best, best_key = choice, key
        return best

    def _pop(self, choice: dict[str, int]) -> SyncedSet[T]:
        stamps: list[int | None] = []
        items: list[T | None] = []
        for name in self.names:
            q = self._queues[name]
            if name not in choice:
                stamps.append(None)
                items.append(None)
                continue
            i = choice[name]
            stamps.append(q.stamps[i])
            items.append(q.items[i])
            q.last_emitted_ns = q.stamps[i]
            q.stats.matched += 1
            q.stats.unmatched += i  # older messages of this camera can never match any more
            del q.stamps[: i + 1], q.items[: i + 1]
        self.sets_emitted += 1
        return SyncedSet(stamps, items)


def _closest(stamps: list[int], t: int) -> int:
    """Index of the stamp closest to ``t`` in a sorted, non-empty list (earlier on ties)."""
    pos = bisect.bisect_left(stamps, t)
    if pos == 0:
        return 0
    if pos == len(stamps):
        return len(stamps) - 1
    return pos - 1 if t - stamps[pos - 1] <= stamps[pos] - t else pos
