"""Per-method call statistics kept in plain Python, on the server's event loop.

:class:`CallStats` is a server :class:`~wirecall.interceptors.CallObserver`: for each
``(method, wire)`` it counts calls by status, sums durations into fixed histogram buckets,
tracks calls and streams in flight, keeps the last durations (for percentiles) and the
slowest recent calls. It needs no third-party package: the Prometheus exporter
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
    "percentile",
    "split_method",
    "status_of",
    "wire_of",
]

#: latency histogram bounds in seconds (Prometheus ``le``), from 50 µs to 10 s
BUCKETS: tuple[float, ...] = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
#: how many recent durations per method the percentiles are computed from
RECENT = 2048
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
    ok: int = 0
    errors: int = 0
    total_seconds: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    inflight: int = 0
    #: (perf_counter at the end, seconds, ok) of the last calls
    recent: deque[tuple[float, float, bool]] = field(default_factory=lambda: deque(maxlen=RECENT))

    def record(self, status: str, seconds: float, now: float) -> None:
        self.count += 1
        if status == "OK":
            self.ok += 1
        else:
            self.errors += 1
            self.failures[status] = self.failures.get(status, 0) + 1
        self.total_seconds += seconds
        self.buckets[_bisect(BUCKETS, seconds)] += 1
        self.recent.append((now, seconds, status == "OK"))

    def all_statuses(self) -> dict[str, int]:
        out = {"OK": self.ok} if self.ok else {}
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
        """The native fast lane's inline handler, timed (the handler only: decoding and
        encoding are the transport's, a few microseconds). The hot path of metrics: what
        ``MethodStats.record`` does for a success, inline, with the method's stats per wire
        cached in the wrapper."""
        by_wire: dict[str, MethodStats] = {}
        get_ctx = CURRENT.get
        perf = _perf
        bounds = BUCKETS

        def timed(*args: Any) -> Any:
            t0 = perf()
            try:
                result = handler(*args)
            except BaseException as exc:
                ctx = get_ctx()
                if ctx is not None:
                    self._finish(self._stats(method, wire_of(ctx), "call"), ctx,
                                 status_of(exc), perf() - t0)
                raise
            t1 = perf()
            ctx = get_ctx()
            if ctx is None:
                return result
            wire = ctx.transport
            if wire == "tcp" and ctx.peer[:1] == "u":  # a Unix socket's peer is "unix:..."
                wire = "unix"
            st = by_wire.get(wire)
            if st is None:
                st = by_wire[wire] = self._stats(method, wire, "call")
            d = t1 - t0
            st.count += 1
            st.ok += 1
            st.total_seconds += d
            st.buckets[_bisect(bounds, d)] += 1
            st.recent.append((t1, d, True))
            if d > self._slow_floor:
                self._note_slow(st, ctx, "OK", d)
            return result

        return timed

    def _watch(self, method: str, ctx: Context, on_done: OnDone, kind: str) -> OnDone:
        st = self._stats(method, wire_of(ctx), kind)
        st.inflight += 1
        t0 = _perf()

        def done(result: Any, err: BaseException | None) -> None:
            st.inflight -= 1
            self._finish(st, ctx, "OK" if err is None else status_of(err), _perf() - t0)
            on_done(result, err)

        return done

    def _finish(self, st: MethodStats, ctx: Context, status: str, seconds: float) -> None:
        st.record(status, seconds, _perf())
        if seconds > self._slow_floor:
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

    def snapshot(self, window: float = 10.0) -> list[dict[str, Any]]:
        """One row per method and wire: totals, and over the last ``window`` seconds the
        rate (calls/s), error rate and latency percentiles (milliseconds)."""
        now = _perf()
        rows: list[dict[str, Any]] = []
        for st in self.methods():
            window_calls = [(d, ok) for t, d, ok in list(st.recent) if now - t <= window]
            durations = sorted(d for d, _ in window_calls)
            recent_n = len(durations)
            failed = sum(1 for _, ok in window_calls if not ok)
            row: dict[str, Any] = {
                "method": st.method,
                "wire": st.wire,
                "kind": st.kind,
                "count": st.count,
                "errors": st.errors,
                "statuses": st.all_statuses(),
                "inflight": st.inflight,
                # the ring holds at most RECENT calls: under heavy load the rate is taken from
                # the span they cover, not from the whole window
                "rate": _rate(st, now, window, recent_n),
                "error_rate": failed / recent_n if recent_n else 0.0,
                "p50_ms": percentile(durations, 0.50) * 1e3,
                "p90_ms": percentile(durations, 0.90) * 1e3,
                "p99_ms": percentile(durations, 0.99) * 1e3,
                "mean_ms": (st.total_seconds / st.count * 1e3) if st.count else 0.0,
            }
            rows.append(row)
        rows.sort(key=lambda r: (-float(r["rate"]), str(r["method"]), str(r["wire"])))
        return rows


def _rate(st: MethodStats, now: float, window: float, recent_n: int) -> float:
    if recent_n == 0:
        return 0.0
    recent = st.recent
    if recent_n == len(recent) and len(recent) == recent.maxlen:
        span = max(now - recent[0][0], 1e-3)
        return recent_n / span
    return recent_n / window
