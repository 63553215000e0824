"""The snowflake core: layouts, monotonic unique IDs, clock steps, sequence exhaustion, floor,
fence and reserved horizon, driven by a clock the test moves."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from support.idgen import ManualClock
from wirecall.idgen.snowflake import PRESETS, IssueRefused, Layout, Snowflake


def make(clock: ManualClock, **kw: object) -> Snowflake:
    return Snowflake(7, Layout(), clock=clock, sleep=clock.sleep, **kw)  # type: ignore[arg-type]


def test_twitter_layout_is_the_default_and_decodes() -> None:
    lay = Layout()
    assert (lay.time_bits, lay.worker_bits, lay.sequence_bits, lay.unit_ms) == (41, 10, 12, 1)
    assert lay.epoch_ms == 1288834974657
    i = lay.compose(123456, 1023, 4095)
    d = lay.decode(i)
    assert (d.time_ms, d.worker, d.sequence) == (lay.epoch_ms + 123456, 1023, 4095)
    assert i < 2**63


def test_layouts_are_configurable_and_checked() -> None:
    lay = Layout.parse("time=39,worker=16,seq=8,unit=10ms,epoch=0")
    assert lay == Layout(39, 16, 8, 10, 0)
    assert Layout.parse("baidu").unit_ms == 1000 and PRESETS["sonyflake"].worker_bits == 16
    assert Layout.parse("unit=1s").unit_ms == 1000
    with pytest.raises(ValueError, match="> 63"):
        Layout(time_bits=45, worker_bits=10, sequence_bits=12)
    with pytest.raises(ValueError, match="unknown field 'bogus=1'"):
        Layout.parse("bogus=1")
    with pytest.raises(ValueError, match="worker_bits"):
        Layout(worker_bits=0)
    with pytest.raises(ValueError, match="outside"):
        Layout().decode(-1)
    with pytest.raises(ValueError, match="worker id 1024"):
        Snowflake(1024)


def test_ids_increase_and_decode_to_the_clock() -> None:
    clock = ManualClock()
    g = make(clock)
    ids = []
    for _ in range(50):
        ids.append(g.next())
        ids.append(g.next())
        clock.advance_ms(1)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    d = g.layout.decode(ids[-1])
    assert d.time_ms == clock.ns // 1_000_000 - 1 and d.worker == 7 and d.sequence == 1


def test_exhausting_the_sequence_waits_for_the_next_unit_never_wraps() -> None:
    clock = ManualClock()
    g = make(clock)
    t0 = clock.ns // 1_000_000
    first = [g.next() for _ in range(4096)]  # the whole unit, clock frozen
    assert clock.sleeps == []
    assert [g.layout.decode(i).sequence for i in first] == list(range(4096))
    nxt = g.next()  # must wait (the injected sleep advances the clock)
    assert clock.sleeps and 0 < clock.sleeps[0] <= 0.0011
    d = g.layout.decode(nxt)
    assert d.time_ms == t0 + 1 and d.sequence == 0 and nxt > first[-1]
    # the non-blocking form hands the wait back instead
    clock2 = ManualClock()
    g2 = make(clock2)
    runs, wait = g2.take(5000)
    assert sum(len(r) for r in runs) == 4096 and wait == 0
    runs, wait = g2.take(10)
    assert runs == [] and 0 < wait <= 0.0011


def test_batch_spans_units_in_order() -> None:
    clock = ManualClock()
    g = make(clock)
    ids = g.batch(10_000)
    assert len(ids) == 10_000 == len(set(ids)) and ids == sorted(ids)
    assert len(clock.sleeps) == 2  # 4096 per unit: three units, two waits


def test_a_small_clock_step_back_is_waited_out() -> None:
    clock = ManualClock()
    g = make(clock, max_backward_ms=5)
    a = g.next()
    clock.advance_ms(-3)
    b = g.next()  # waits until the clock is past the last unit again
    assert b > a
    assert clock.sleeps and 0.003 <= sum(clock.sleeps) <= 0.0045


def test_a_large_clock_step_back_refuses_until_caught_up() -> None:
    clock = ManualClock()
    g = make(clock, max_backward_ms=5)
    a = g.next()
    clock.advance_ms(-10_000)
    with pytest.raises(IssueRefused, match="10000 ms behind"):
        g.next()
    with pytest.raises(IssueRefused):
        g.take(10)
    clock.advance_ms(10_001)
    assert g.next() > a


def test_floor_holds_back_a_restart_with_the_clock_set_back() -> None:
    clock = ManualClock()
    before = make(clock)
    ids = [before.next() for _ in range(100)]
    # "restart" with the clock 10 s back; the persisted floor is the last possible time
    clock.advance_ms(-10_000)
    after = make(clock, floor_ms=before.last_ms)
    with pytest.raises(IssueRefused, match="behind"):
        after.next()
    clock.advance_ms(10_000)  # back at the floor's unit: waits for the next one
    nxt = after.next()
    assert nxt > max(ids)


def test_fence_stops_issuing_at_the_next_unit() -> None:
    clock = ManualClock()
    now = [100.0]
    g = Snowflake(1, clock=clock, sleep=clock.sleep, monotonic=lambda: now[0])
    g.set_fence(lambda: 105.0)
    g.next()
    now[0] = 105.0
    clock.advance_ms(1)
    with pytest.raises(IssueRefused, match="fence"):
        g.next()
    g.set_fence(200.0)
    assert g.next()


def test_reserved_horizon_bounds_the_time_issued_in() -> None:
    clock = ManualClock()
    g = make(clock)
    g.reserve_until(clock.ns // 1_000_000 + 2)
    g.next()
    clock.advance_ms(1)
    g.next()
    clock.advance_ms(1)
    with pytest.raises(IssueRefused, match="horizon"):
        g.next()
    g.reserve_until(None)
    assert g.next()


def test_clock_offset_moves_the_time_field() -> None:
    g = Snowflake(1, clock_offset_ms=-10_000)
    d = g.layout.decode(g.next())
    assert abs(d.time_ms - (time.time_ns() // 1_000_000 - 10_000)) < 1000


def test_threads_get_unique_increasing_ids() -> None:
    g = Snowflake(3)
    out: list[list[int]] = [[] for _ in range(4)]

    def work(i: int) -> None:
        nxt = g.next
        out[i] = [nxt() for _ in range(30_000)]

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    every = [i for part in out for i in part]
    assert len(set(every)) == len(every) == 120_000
    for part in out:
        assert part == sorted(part)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["next", "take", "move", "nudge", "tick", "floor"]),
                          st.integers(min_value=-20_000, max_value=3), st.integers(1, 6000)),
                max_size=60),
       st.integers(min_value=2, max_value=12), st.sampled_from([1, 10]))
# a unit passes between two calls (exactly, or by 1.9 units), a step back within the unit
@example([("next", 0, 1), ("tick", 0, 10), ("next", 0, 1)], 12, 1)
@example([("next", 0, 1), ("tick", 0, 19), ("next", 0, 1), ("take", 0, 5)], 12, 10)
@example([("next", 0, 1), ("nudge", 0, 2900), ("next", 0, 1), ("tick", 0, 10),
          ("next", 0, 1)], 4, 1)
def test_any_clock_walk_never_repeats_or_goes_down(ops: list[tuple[str, int, int]],
                                                   seq_bits: int, unit_ms: int) -> None:
    """Whatever the clock does (small and large steps back, freezes, jumps, moves within a
    unit) and whenever the floor is raised, the IDs issued are strictly increasing and in
    the clock's current unit; a refusal happens only when the clock is behind by more than
    max_backward_ms, and every wait is for the next unit. (``next`` decides "same unit as
    the last" by comparing the clock with that unit's bounds: sub-unit moves exercise it.)"""
    clock = ManualClock()
    lay = Layout(sequence_bits=seq_bits, unit_ms=unit_ms)
    g = Snowflake(3, lay, clock=clock, sleep=clock.sleep, max_backward_ms=5)
    issued: list[int] = []
    for op, delta_ms, n in ops:
        if op == "move":
            clock.advance_ms(delta_ms)
            continue
        if op == "nudge":  # within a few units, either way, in microseconds
            clock.advance_ms((n - 3000) / 1000)
            continue
        if op == "tick":  # forward by 0 to 1.9 units
            clock.advance_ms(n % 20 / 10 * unit_ms)
            continue
        if op == "floor":
            g.raise_floor(clock.ns // 1_000_000 + delta_ms % 7)
            continue
        try:
            if op == "next":
                got = [g.next()]
            else:
                runs, wait = g.take(n)
                got = [i for r in runs for i in r]
                assert wait >= 0
            # issued in the clock's current unit, never a stale one (the fence and the
            # horizon are checked when a unit starts)
            now_unit_ms = lay.ms_of(lay.unit_of(clock.ns // 1_000_000))
            assert all(lay.decode(i).time_ms == now_unit_ms for i in got)
            issued += got
        except IssueRefused:
            # (counted in whole units, as the generator does: with 10 ms units one unit
            # back is 10 ms behind)
            behind = g.last_ms - lay.ms_of(lay.unit_of(clock.ns // 1_000_000))
            assert behind > 5
    assert issued == sorted(issued) and len(set(issued)) == len(issued)
    for i in issued:
        assert lay.decode(i).worker == 3
