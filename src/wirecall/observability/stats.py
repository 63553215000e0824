"""Per-method call statistics kept in plain Python, on the server's event loop.

:class:`CallStats` is a server :class:`~wirecall.interceptors.CallObserver`: for each
``(method, wire)`` it counts calls by status, sums durations into fixed histogram buckets,
tracks calls and streams in flight and keeps the slowest recent calls: a successful call costs
a few integer additions and one bisect. Windowed figures (calls/s, error rate, percentiles over
the last seconds) are computed when read, from the difference between now and a copy of the
counts kept at an earlier read, percentiles interpolated within histogram buckets (as
Prometheus' ``histogram_quantile`` does). It needs no third-party package: the Prometheus exporter
(:mod:`wirecall.observability.metrics`) and the dashboard (:mod:`wirecall.observability.admin`)
both read it. Every update happens on the loop thread (``on_done`` runs there on every
wire), so no lock is taken on the call path.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..context import CURRENT, Context
from ..errors import RpcError
from ..interceptors import OnDone

__all__ = [
    "BUCKETS",
    "CallStats",
    "MethodStats",
    "SlowCall",
    "bucket_quantile",
    "percentile",
    "split_method",
    "status_of",
    "wire_of",
]

#: latency histogram bounds in seconds (Prometheus ``le``), from 1 µs (an inline handler on
#: the fast lane) to 10 s
BUCKETS: tuple[float, ...] = (
    0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
#: on the native fast lane one call in this many is timed (a power of two)
TIME_EVERY = 8
#: how many earlier copies of the counts are kept for windowed figures (one per read, at
#: most two a second)
HISTORY = 256
#: how many of the slowest recent calls are kept
SLOWEST = 10
#: how long a call stays among the "slowest recent" (seconds)
SLOW_WINDOW = 60.0

_perf = time.perf_counter
_bisect = bisect.bisect_left


def split_method(name: str) -> tuple[str, str]:
    """``"Calculator.Add"`` -> ``("Calculator", "Add")``; a bare function has service ``""``."""
    svc, _, meth = name.rpartition(".")
    return svc, meth


def wire_of(ctx: Context) -> str:
    """The wire a call came in on: ``ctx.transport``, with ``unix`` told apart from ``tcp``
    (the native protocol serves both; the peer of a Unix socket is ``unix:...``)."""
    wire = ctx.transport or "?"
    if wire == "tcp" and ctx.peer.startswith("unix"):
        return "unix"
    return wire


def status_of(err: BaseException) -> str:
    """The status name a caller receives for ``err`` (INTERNAL for a non-RpcError, as the
    server maps it; CANCELLED for a cancellation)."""
    if isinstance(err, RpcError):
        return err.status.name
    if isinstance(err, asyncio.CancelledError):
        return "CANCELLED"
    return "INTERNAL"


def bucket_quantile(buckets: list[int], q: float) -> float:
    """The ``q`` quantile (0..1) of durations counted in ``buckets`` (one count per bound of
    :data:`BUCKETS`, then the overflow), interpolated linearly inside its bucket; 0.0 when
    empty, the top bound when it falls in the overflow."""
    n = sum(buckets)
    if n == 0:
        return 0.0
    rank = q * n
    below = 0
    for i, c in enumerate(buckets):
        if c and below + c >= rank:
            if i >= len(BUCKETS):
                return BUCKETS[-1]
            lo = BUCKETS[i - 1] if i else 0.0
            return lo + (BUCKETS[i] - lo) * max(0.0, rank - below) / c
        below += c
    return BUCKETS[-1]


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values, nearest rank (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, max(0, int(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[i]


@dataclass(slots=True)
class SlowCall:
    """One of the slowest recent calls."""

    method: str
    wire: str
    peer: str
    status: str
    duration: float
    at: float  # wall clock (time.time())


@dataclass(slots=True)
class MethodStats:
    """What is known about one method on one wire (and one kind: ``call`` or ``stream``)."""

    method: str
    wire: str
    kind: str
    #: failed calls by status (``OK`` is :attr:`ok`; see :meth:`all_statuses`)
    failures: dict[str, int] = field(default_factory=dict)
    count: int = 0
    #: calls whose duration is in the histogram (every call, except on the fast lane)
    timed: int = 0
    errors: int = 0
    total_seconds: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    inflight: int = 0

    def record(self, status: str, seconds: float) -> None:
        """One call ended; ``seconds < 0``: counted, not timed."""
        self.count += 1
        if status != "OK":
            self.errors += 1
            self.failures[status] = self.failures.get(status, 0) + 1
        if seconds >= 0:
            self.timed += 1
            self.total_seconds += seconds
            self.buckets[_bisect(BUCKETS, seconds)] += 1

    def all_statuses(self) -> dict[str, int]:
        ok = self.count - self.errors
        out = {"OK": ok} if ok else {}
        out.update(self.failures)
        return out


class CallStats:
    """The observer: ``server.add_observer(CallStats())``; read with :meth:`methods`,
    :meth:`snapshot` and :meth:`slowest`. Keeps the native fast lane (``fast_handler``)."""

    def __init__(self) -> None:
        self._by: dict[tuple[str, str, str], MethodStats] = {}
        self._slow: list[SlowCall] = []
        self._slow_floor = 0.0
        self.started = time.time()
        #: (perf_counter, {key: (count, errors, buckets)}) copies of the counts, oldest first
        self._history: deque[tuple[float, dict[Any, tuple[int, int, list[int]]]]] = deque(
            [(_perf(), {})], maxlen=HISTORY)

    def _stats(self, method: str, wire: str, kind: str) -> MethodStats:
        key = (method, wire, kind)
        st = self._by.get(key)
        if st is None:
            st = self._by[key] = MethodStats(method, wire, kind)
        return st

    def call_started(self, method: str, ctx: Context, on_done: OnDone) -> OnDone:
        return self._watch(method, ctx, on_done, "call")

    def stream_started(self, method: str, ctx: Context, on_done: OnDone) -> OnDone:
        return self._watch(method, ctx, on_done, "stream")

    def fast_handler(self, method: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        """The native fast lane's inline handler, counted. Every call is counted (by status);
        one call in :data:`TIME_EVERY` per wire is timed into the histogram (the handler
        only: an inline handler runs in a microsecond or two, and timing it costs about as
        much again), so the duration histogram's count is a sample of the calls."""
        by_wire: dict[str, MethodStats] = {}
        get_ctx = CURRENT.get
        perf = _perf
        bounds = BUCKETS
        every = TIME_EVERY - 1

        def counted(*args: Any) -> Any:
            ctx = get_ctx()
            if ctx is None:
                return handler(*args)
            wire = ctx.transport
            if wire == "tcp" and ctx.peer[:1] == "u":  # a Unix socket's peer is "unix:..."
                wire = "unix"
            st = by_wire.get(wire)
            if st is None:
                st = by_wire[wire] = self._stats(method, wire, "call")
            n = st.count + 1
            if n & every:  # not timed: count it (an exception counts as its status)
                try:
                    result = handler(*args)
                except BaseException as exc:
                    self._finish(st, ctx, status_of(exc), -1.0)
                    raise
                st.count = n
                return result
            t0 = perf()
            try:
                result = handler(*args)
            except BaseException as exc:
                self._finish(st, ctx, status_of(exc), perf() - t0)
                raise
            d = perf() - t0
            st.count = n
            st.timed += 1
            st.total_seconds += d
            st.buckets[_bisect(bounds, d)] += 1
            if d > self._slow_floor:
                self._note_slow(st, ctx, "OK", d)
            return result

        return counted

    def _watch(self, method: str, ctx: Context, on_done: OnDone, kind: str) -> OnDone:
        st = self._stats(method, wire_of(ctx), kind)
        st.inflight += 1
        t0 = _perf()

        def done(result: Any, err: BaseException | None) -> None:
            try:
                st.inflight -= 1
                self._finish(st, ctx, "OK" if err is None else status_of(err), _perf() - t0)
            finally:  # the caller gets its answer whatever happens here
                on_done(result, err)

        return done

    def _finish(self, st: MethodStats, ctx: Context, status: str, seconds: float) -> None:
        st.record(status, seconds)
        if seconds > self._slow_floor and seconds >= 0:
            self._note_slow(st, ctx, status, seconds)

    def _note_slow(self, st: MethodStats, ctx: Context, status: str, seconds: float) -> None:
        wall = time.time()
        slow = [s for s in self._slow if wall - s.at < SLOW_WINDOW]
        slow.append(SlowCall(st.method, st.wire, ctx.peer, status, seconds, wall))
        slow.sort(key=lambda s: s.duration, reverse=True)
        del slow[SLOWEST:]
        self._slow = slow
        self._slow_floor = slow[-1].duration if len(slow) >= SLOWEST else 0.0

    # -- reading ------------------------------------------------------------------------

    def methods(self) -> Iterator[MethodStats]:
        return iter(list(self._by.values()))

    def slowest(self) -> list[SlowCall]:
        """The slowest calls of the last minute, slowest first. (Reading also forgets the
        older ones, so a burst of slow calls does not keep newer ones out for long.)"""
        wall = time.time()
        fresh = [s for s in self._slow if wall - s.at < SLOW_WINDOW]
        if len(fresh) != len(self._slow):
            self._slow = fresh
            self._slow_floor = fresh[-1].duration if len(fresh) >= SLOWEST else 0.0
        return list(fresh)

    def _base(self, now: float, window: float) -> tuple[float, dict[Any, Any]]:
        """The copy of the counts closest to ``window`` seconds ago (the oldest if none is
        that old), and when it was taken."""
        base = self._history[0]
        for t, counts in self._history:
            if now - t < window:
                break
            base = (t, counts)
        return base

    def snapshot(self, window: float = 10.0) -> list[dict[str, Any]]:
        """One row per method and wire: totals, and over about the last ``window`` seconds
        (since the copy of the counts kept closest to then) the rate (calls/s), error rate
        and latency percentiles (milliseconds, interpolated within histogram buckets)."""
        now = _perf()
        t_base, base = self._base(now, window)
        span = max(now - t_base, 1e-3)
        rows: list[dict[str, Any]] = []
        current: dict[Any, tuple[int, int, list[int]]] = {}
        for key, st in list(self._by.items()):
            current[key] = (st.count, st.errors, list(st.buckets))
            c0, e0, b0 = base.get(key, (0, 0, None))
            calls = st.count - c0
            buckets = st.buckets if b0 is None else [
                a - b for a, b in zip(st.buckets, b0, strict=True)]
            row: dict[str, Any] = {
                "method": st.method,
                "wire": st.wire,
                "kind": st.kind,
                "count": st.count,
                "errors": st.errors,
                "statuses": st.all_statuses(),
                "inflight": st.inflight,
                "rate": calls / span,
                "error_rate": (st.errors - e0) / calls if calls else 0.0,
                "p50_ms": bucket_quantile(buckets, 0.50) * 1e3,
                "p90_ms": bucket_quantile(buckets, 0.90) * 1e3,
                "p99_ms": bucket_quantile(buckets, 0.99) * 1e3,
                "mean_ms": (st.total_seconds / st.timed * 1e3) if st.timed else 0.0,
            }
            rows.append(row)
        if now - self._history[-1][0] >= 0.5:
            self._history.append((now, current))
        rows.sort(key=lambda r: (-float(r["rate"]), str(r["method"]), str(r["wire"])))
        return rows
