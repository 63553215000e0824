"""Metrics, tracing and the access log of one :class:`~.install.Observability` as one observer.

Installed one by one, each of :class:`~.stats.CallStats`, :class:`~.tracing.ServerTracing`
and :class:`~.accesslog.AccessLog` wraps the native fast lane's handler in its own function,
and each wrapper reads the call's Context, the clock (twice) and the sampling decision for
itself. :class:`Fused` installs them as one observer whose fast-lane wrapper does that once:
a call tracing does not sample (no ``traceparent`` in its metadata, and the head sampler said
no) is counted, timed and queued for the log in one function; a call that is traced, or whose
metadata carries a ``traceparent``, runs through the three wrappers as before (so its span is
the one :class:`~.tracing.ServerTracing` makes). On every other path (the general path of every
wire, streams) the three observers run as they would installed one by one.
"""

from __future__ import annotations

import random
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from ..context import CURRENT, Context
from ..interceptors import OnDone
from .accesslog import FLUSH_LINES, AccessLog
from .stats import BUCKETS, TIME_EVERY, CallStats, MethodStats, status_of
from .tracing import ServerTracing

__all__ = ["Fused"]

_random = random.random
_perf = time.perf_counter


def _nothing(*args: Any) -> None:
    pass


class Fused:
    """A call observer made of (any of) call statistics, server tracing and an access log, in
    that order (the order :class:`~.install.Observability` used to install them)."""

    def __init__(self, stats: CallStats | None, tracing: ServerTracing | None,
                 log: AccessLog | None) -> None:
        self.stats = stats
        self.tracing = tracing
        self.log = log
        self.parts: list[Any] = [p for p in (stats, tracing, log) if p is not None]

    def call_started(self, method: str, ctx: Context, on_done: OnDone) -> OnDone:
        for part in self.parts:
            on_done = part.call_started(method, ctx, on_done)
        return on_done

    def stream_started(self, method: str, ctx: Context, on_done: OnDone) -> OnDone:
        for part in self.parts:
            on_done = part.stream_started(method, ctx, on_done)
        return on_done

    def fast_handler(self, method: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        """One wrapper for the three (see the module's doc)."""
        tracing, stats, log = self.tracing, self.stats, self.log
        sample = 0.0 if tracing is None else tracing.sample
        fuse = sample < 1.0 and (stats is not None or log is not None)
        slow = handler
        for part in reversed(self.parts):
            if fuse and tracing is not None and part is tracing and sample > 0.0:
                # a call without metadata reaches it only when sampled by ``fused``: no
                # second draw
                slow = tracing.fast_handler(method, slow, sample=1.0)
            else:
                slow = part.fast_handler(method, slow)
        if not fuse:
            return slow  # every call traced, or tracing alone: nothing to share
        traced = tracing is not None
        get_ctx, perf, rand = CURRENT.get, _perf, _random
        by_wire: dict[str, MethodStats] = {}
        every = TIME_EVERY - 1
        bounds = BUCKETS
        pending, queued, write = (log._pending, log._queued, log.write) if log is not None \
            else ([], _nothing, _nothing)

        def stats_of(ctx: Context) -> MethodStats:
            assert stats is not None
            wire = ctx.transport
            if wire == "tcp" and ctx.peer[:1] == "u":  # a Unix socket's peer is "unix:..."
                wire = "unix"
            st = by_wire.get(wire)
            if st is None:
                st = by_wire[wire] = stats._stats(method, wire, "call")
            return st

        def fused(*args: Any) -> Any:
            ctx = get_ctx()
            if ctx is None or (traced and (ctx.metadata or rand() < sample)):
                return slow(*args)
            t0 = perf()
            try:
                result = handler(*args)
            except BaseException as exc:
                d = perf() - t0
                if stats is not None:  # timed one call in TIME_EVERY, as CallStats does
                    st = stats_of(ctx)
                    stats._finish(st, ctx, status_of(exc), -1.0 if (st.count + 1) & every else d)
                if log is not None:
                    write(method, ctx, "call", exc, d)
                raise
            t1 = perf()
            if stats is not None:
                wire = ctx.transport
                if wire == "tcp" and ctx.peer[:1] == "u":
                    wire = "unix"
                st = by_wire.get(wire) or stats_of(ctx)
                n = st.count + 1
                st.count = n
                if not n & every:  # one call in TIME_EVERY is timed (as CallStats does)
                    d = t1 - t0
                    st.timed += 1
                    st.total_seconds += d
                    st.buckets[bisect_left(bounds, d)] += 1
                    if d > stats._slow_floor:
                        stats._note_slow(st, ctx, "OK", d)
            if log is not None:
                pending.append((method, ctx, "call", None, t1 - t0, t1))
                n = len(pending)
                if n == 1 or n == FLUSH_LINES:
                    queued(n)
            return result

        return fused
