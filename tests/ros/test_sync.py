"""ApproximateTimeSync, tested the way message_filters tests its ApproximateTimeSynchronizer."""

from __future__ import annotations

import random

import pytest

from scaocc_ros.sync import ApproximateTimeSync, SyncedSet

MS = 1_000_000


def feed(sync: ApproximateTimeSync[str], msgs: list[tuple[str, int]], now: int = 0) -> list[SyncedSet[str]]:
    out: list[SyncedSet[str]] = []
    for name, stamp in msgs:
        out += sync.add(name, stamp, f"{name}@{stamp}", now)
    return out


def test_exact_stamps_emit_in_order() -> None:
    sync: ApproximateTimeSync[str] = ApproximateTimeSync(["a", "b", "c"], slop_ns=0, queue_size=5)
    out = feed(sync, [("a", 1), ("b", 1), ("a", 2), ("c", 1), ("b", 2), ("c", 2)])
    assert [s.items for s in out] == [["a@1", "b@1", "c@1"], ["a@2", "b@2", "c@2"]]
    assert out[0].stamp_ns == 1 and out[1].present == [True, True, True]


def test_slop_bounds_the_spread() -> None:
    sync: ApproximateTimeSync[str] = ApproximateTimeSync(["a", "b"], slop_ns=10 * MS, queue_size=5)
    assert feed(sync, [("a", 100 * MS), ("b", 111 * MS)]) == []  # 11 ms apart: too far
    out = feed(sync, [("a", 120 * MS)])  # b@111 and a@120: 9 ms apart
    assert [s.items for s in out] == [[f"a@{120 * MS}", f"b@{111 * MS}"]]
    assert sync.stats("a").unmatched == 1  # a@100 can never match any more


def test_out_of_order_arrival_is_sorted() -> None:
    sync: ApproximateTimeSync[str] = ApproximateTimeSync(["a", "b"], slop_ns=1, queue_size=5)
    out = feed(sync, [("a", 30), ("a", 10), ("a", 20), ("b", 10), ("b", 20), ("b", 30)])
    assert [s.stamps_ns for s in out] == [[10, 10], [20, 20], [30, 30]]


def test_oldest_valid_set_comes_first_when_several_complete_at_once() -> None:
    sync: ApproximateTimeSync[str] = ApproximateTimeSync(["a", "b"], slop_ns=2, queue_size=5)
    out = feed(sync, [("a", 10), ("a", 20), ("b", 21), ("b", 11)])
    assert [s.stamps_ns for s in out] == [[20, 21]]  # b@21 completed it first
    assert sync.stats("b").late == 1  # b@11 arrived after b@21 was emitted


def test_duplicates_dropped_and_counted() -> None:
    sync: ApproximateTimeSync[str] = ApproximateTimeSync(["a", "b"], slop_ns=0, queue_size=5)
    feed(sync, [("a", 5), ("a", 5)])  # duplicate while queued
    out = feed(sync, [("b", 5), ("b", 5), ("a", 5)])  # duplicates of emitted stamps
    assert len(out) == 1
    assert sync.stats("a").duplicates == 2 and sync.stats("b").duplicates == 1


def test_late_messages_dropped() -> None:
    sync: ApproximateTimeSync[str] = ApproximateTimeSync(["a", "b"], slop_ns=0, queue_size=5)
    assert len(feed(sync, [("a", 50), ("b", 50)])) == 1
    assert feed(sync, [("a", 40), ("b", 40)]) == []
    assert sync.stats("a").late == 1 and sync.stats("b").late == 1


def test_bounded_queue_drops_oldest() -> None:
    sync: ApproximateTimeSync[str] = ApproximateTimeSync(["a", "b"], slop_ns=0, queue_size=3)
    feed(sync, [("a", t) for t in range(1, 8)])
    assert sync.stats("a").overflow == 4
    assert feed(sync, [("b", 2)]) == []  # a@2 was dropped
    assert [s.stamps_ns for s in feed(sync, [("b", 6)])] == [[6, 6]]


def test_missing_camera_times_out_and_recovers() -> None:
    sync: ApproximateTimeSync[str] = ApproximateTimeSync(["a", "b", "c"], slop_ns=0, queue_size=5,
                                                         timeout_ns=100 * MS)
    assert feed(sync, [("a", 10), ("b", 10)], now=10 * MS) == []  # c never heard of: wait
    assert feed(sync, [("a", 20), ("b", 20)], now=90 * MS) == []  # 80 ms: still waiting
    out = feed(sync, [("a", 30)], now=120 * MS)  # 110 ms after the first message: c times out
    assert sync.active() == [True, True, False]
    assert [s.items for s in out] == [["a@10", "b@10", None], ["a@20", "b@20", None]]
    assert [s.present for s in out] == [[True, True, False]] * 2 and out[1].stamp_ns == 20
    out = feed(sync, [("c", 40)], now=170 * MS)  # c is back: sets wait for it again
    assert sync.active() == [True, True, True]
    assert [s.stamps_ns for s in out] == []  # b has nothing near a@30 / c@40 yet
    out = feed(sync, [("a", 40), ("b", 40)], now=180 * MS)
    assert [s.stamps_ns for s in out] == [[40, 40, 40]]
    assert sync.stats("a").unmatched == 1  # a@30 was overtaken


def test_silence_of_every_camera_drops_nobody() -> None:
    """Timeouts are relative to the other cameras' traffic: a global pause or clock jump is harmless."""
    sync: ApproximateTimeSync[str] = ApproximateTimeSync(["a", "b"], slop_ns=0, queue_size=5, timeout_ns=5)
    feed(sync, [("a", 1), ("b", 1)], now=1)
    assert [s.present for s in feed(sync, [("a", 2), ("b", 2)], now=10**12)] == [[True, True]]
    assert sync.active() == [True, True]


def test_timeout_completes_a_waiting_set() -> None:
    sync: ApproximateTimeSync[str] = ApproximateTimeSync(["a", "b"], slop_ns=0, queue_size=5, timeout_ns=5)
    feed(sync, [("a", 1), ("b", 1)], now=1)
    assert feed(sync, [("a", 2)], now=5) == []  # b silent for 4 <= 5
    out = feed(sync, [("a", 2)], now=8)  # a duplicate, but it shows b silent for 7 > 5
    assert [s.items for s in out] == [["a@2", None]] and sync.stats("a").duplicates == 1


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="unique"):
        ApproximateTimeSync(["a", "a"], slop_ns=0, queue_size=1)
    with pytest.raises(ValueError, match="at least one"):
        ApproximateTimeSync([], slop_ns=0, queue_size=1)
    sync: ApproximateTimeSync[str] = ApproximateTimeSync(["a"], slop_ns=0, queue_size=1)
    with pytest.raises(KeyError, match="unknown camera"):
        sync.add("z", 0, "x", 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_jittered_streams(seed: int) -> None:
    """Jittered 12 Hz streams, shuffled arrival, dropped frames: invariants of every emitted set."""
    rng = random.Random(seed)
    names = [f"cam{i}" for i in range(6)]
    slop = 20 * MS
    sync: ApproximateTimeSync[str] = ApproximateTimeSync(names, slop_ns=slop, queue_size=8)
    msgs = []
    for k in range(60):
        base = k * 83 * MS
        for n in names:
            if rng.random() < 0.05:
                continue  # dropped frame
            msgs.append((n, base + rng.randint(-8, 8) * MS))
    # Arrival order: by stamp plus transport delay (local reordering).
    msgs.sort(key=lambda m: m[1] + rng.randint(0, 30) * MS)
    out = feed(sync, msgs)
    assert len(out) >= 35
    last = dict.fromkeys(names, -(10**12))
    for s in out:
        stamps = [t for t in s.stamps_ns if t is not None]
        assert len(stamps) == 6 and max(stamps) - min(stamps) <= slop
        for n, t in zip(names, s.stamps_ns):
            assert t is not None and t > last[n]  # strictly increasing per camera
            last[n] = t
    total = sum(sync.stats(n).received for n in names)
    assert total == len(msgs)
    assert sync.success_rate() == pytest.approx(6 * len(out) / total)
