"""CallStats without a network: recording, percentiles, window rates, error rates, slowest
calls and their expiry; the access log keeps a hostile method name on one line."""

from __future__ import annotations

import io
import json
from typing import Any

from wirecall import Context, NotFound
from wirecall.observability import stats as stats_mod
from wirecall.observability.accesslog import AccessLog
from wirecall.observability.stats import CallStats, percentile, status_of


def run(cs: CallStats, method: str, ctx: Context, err: BaseException | None = None) -> None:
    done: list[Any] = []
    cs.call_started(method, ctx, lambda r, e: done.append((r, e)))(None if err else 1, err)
    assert len(done) == 1


def test_percentile_nearest_rank() -> None:
    xs = [float(i) for i in range(1, 101)]
    assert percentile(xs, 0.5) == 50.0
    assert percentile(xs, 0.99) == 99.0
    assert percentile(xs, 1.0) == 100.0
    assert percentile([], 0.5) == 0.0
    assert percentile([7.0], 0.01) == 7.0


def test_counts_errors_and_in_flight() -> None:
    cs = CallStats()
    ctx = Context("A.B", peer="127.0.0.1:1", transport="grpc")
    seen: list[Any] = []
    done = cs.call_started("A.B", ctx, lambda r, e: seen.append(e))
    [row] = cs.snapshot()
    assert row["inflight"] == 1 and row["count"] == 0
    done(1, None)
    for _ in range(3):
        run(cs, "A.B", ctx, NotFound(message="x"))
    [row] = cs.snapshot()
    assert (row["count"], row["errors"], row["inflight"]) == (4, 3, 0)
    assert row["statuses"] == {"OK": 1, "NOT_FOUND": 3}
    assert row["error_rate"] == 0.75
    assert row["wire"] == "grpc"


def test_window_figures_from_an_earlier_copy(monkeypatch: Any) -> None:
    clock = [1000.0]
    monkeypatch.setattr(stats_mod, "_perf", lambda: clock[0])
    cs = CallStats()
    ctx = Context("A.B", transport="tcp")
    for _ in range(50):  # before the first read
        run(cs, "A.B", ctx)
    clock[0] += 20.0
    [row] = cs.snapshot(window=10.0)  # no earlier copy: since the start, 20 s
    assert row["rate"] == 2.5 and row["count"] == 50
    clock[0] += 10.0
    for _ in range(30):
        run(cs, "A.B", ctx, NotFound(message="x") if _ % 3 == 0 else None)
    [row] = cs.snapshot(window=10.0)  # since the copy of 10 s ago
    assert row["rate"] == 3.0
    assert row["error_rate"] == 10 / 30
    assert row["count"] == 80 and row["errors"] == 10


def test_bucket_quantiles() -> None:
    from wirecall.observability.stats import BUCKETS, bucket_quantile

    b = [0] * (len(BUCKETS) + 1)
    i = BUCKETS.index(0.001)  # 100 calls between 0.5 ms and 1 ms
    b[i] = 100
    assert bucket_quantile(b, 0.5) == 0.0005 + 0.0005 * 0.5
    assert bucket_quantile(b, 0.99) == 0.0005 + 0.0005 * 0.99
    b[-1] = 1000  # most calls over the top bound: reported as the top bound
    assert bucket_quantile(b, 0.99) == BUCKETS[-1]
    assert bucket_quantile([0] * (len(BUCKETS) + 1), 0.5) == 0.0


def test_percentiles_from_real_durations() -> None:
    cs = CallStats()
    st = cs._stats("A.B", "tcp", "call")
    ctx = Context("A.B", transport="tcp")
    for ms in (1, 2, 3, 4, 30):  # 30 ms is the slow one
        for _ in range(20):
            cs._finish(st, ctx, "OK", ms / 1000)
    [row] = cs.snapshot()
    assert 1.0 <= row["p50_ms"] <= 5.0  # the bucket (2.5 ms, 5 ms]
    assert 25.0 <= row["p99_ms"] <= 50.0  # the bucket (25 ms, 50 ms]


def test_slowest_keeps_the_ten_slowest_and_forgets_old_ones(monkeypatch: Any) -> None:
    cs = CallStats()
    wall = [5000.0]
    monkeypatch.setattr(stats_mod.time, "time", lambda: wall[0])
    ctx = Context("A.B", peer="p", transport="tcp")
    st = cs._stats("A.B", "tcp", "call")
    for ms in range(1, 31):
        cs._finish(st, ctx, "OK", ms / 1000)
    assert [round(s.duration * 1000) for s in cs.slowest()] == list(range(30, 20, -1))
    wall[0] += 61.0  # a minute later: the old ones are gone, new fast calls get in
    assert cs.slowest() == []
    cs._finish(st, ctx, "OK", 0.0005)
    assert [s.duration for s in cs.slowest()] == [0.0005]


def test_status_of() -> None:
    import asyncio

    assert status_of(NotFound(message="x")) == "NOT_FOUND"
    assert status_of(ValueError("x")) == "INTERNAL"
    assert status_of(asyncio.CancelledError()) == "CANCELLED"


def test_access_log_keeps_a_hostile_name_on_one_line() -> None:
    for fmt in ("text", "json"):
        out = io.StringIO()
        log = AccessLog(fmt=fmt, stream=out)
        evil = 'X.Y\n2026-01-01T00:00:00.000Z tcp 1.2.3.4:5 Admin.Drop call OK 0.001ms "'
        log.write(evil, Context(evil, peer="127.0.0.1:9", transport="tcp"), "call",
                  NotFound(message="no"), 0.001)
        lines = out.getvalue().splitlines()
        assert len(lines) == 1, lines
        if fmt == "json":
            assert json.loads(lines[0])["method"] == evil
        else:
            assert json.dumps(evil) in lines[0]
