"""Server-side limits per method: concurrency and rate (token bucket), answering
``RESOURCE_EXHAUSTED`` with a pushback the cluster client obeys.

::

    from wirecall.cluster.limits import MethodLimit, method_limits

    server = wirecall.Server(interceptors=[method_limits({
        "Catalog.Search": MethodLimit(max_concurrent=32, rate=500, burst=100),
        "Catalog.*": MethodLimit(max_concurrent=256),
    })])

A refused call gets ``RESOURCE_EXHAUSTED`` naming the method and the limit, with details
``{"wirecall-pushback-ms": N}``: for a rate limit N is the time until a token is free, for a
concurrency limit ``pushback_ms`` (default 50). ``MethodLimit(adaptive=AdaptiveConcurrency())``
makes the concurrency limit find itself from the handler's latency. Limits are an
interceptor: they see every call on every wire (and, like any interceptor, take calls off the
native fast lane).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ResourceExhausted
from ..interceptors import ServerCall
from .policy import PUSHBACK_KEY, check_names, matching

__all__ = ["AdaptiveConcurrency", "MethodLimit", "method_limits"]


@dataclass
class AdaptiveConcurrency:
    """A concurrency limit that finds itself (AIMD on latency, after Netflix's
    concurrency-limits "Vegas"/"gradient" family): every ``window`` completed calls it compares
    their mean latency with the lowest latency seen (allowed to rise by at most 1.5x every
``relearn`` windows, or at once to a lower one): within
    ``tolerance`` x that, the limit grows by ``sqrt(limit)``; above it, it shrinks by
    ``backoff``. Queueing in the server shows up as latency, so the limit settles near what the
    server completes without queueing."""

    initial: int = 20
    min_limit: int = 2
    max_limit: int = 1000
    tolerance: float = 2.0
    backoff: float = 0.9
    window: int = 50
    relearn: int = 100
    limit: float = 0.0
    best: float = math.inf
    _sum: float = field(default=0.0, repr=False)
    _n: int = field(default=0, repr=False)
    _windows: int = field(default=0, repr=False)
    _low: float = field(default=math.inf, repr=False)
    _peak: int = field(default=-1, repr=False)  # most calls in flight this window (-1: unknown)

    def __post_init__(self) -> None:
        if not 1 <= self.min_limit <= self.initial <= self.max_limit:
            raise ValueError("need 1 <= min_limit <= initial <= max_limit")
        if self.tolerance <= 1 or not 0 < self.backoff < 1:
            raise ValueError("tolerance must be > 1 and backoff in (0, 1)")
        self.limit = float(self.initial)

    def sample(self, seconds: float, inflight: int | None = None) -> None:
        """One completed call's latency; ``inflight``: the calls in flight when it ended
        (with it). The limit grows only in a window whose peak used at least half of it: a
        limit nobody reaches says nothing (a client starved of CPU sends little, and its calls
        look fast), and growing it would let the next burst through unchecked."""
        self._sum += seconds
        self._n += 1
        self._low = min(self._low, seconds)
        if inflight is not None and inflight > self._peak:
            self._peak = inflight
        if self._n < self.window:
            return
        mean = self._sum / self._n
        low, self._low = self._low, math.inf
        used = self._peak * 2 >= self.limit or self._peak < 0
        self._peak = -1
        self._sum, self._n = 0.0, 0
        self._windows += 1
        if self._windows % self.relearn == 0:
            # conditions change: let the floor rise, but by steps, so that one window in which
            # every call queued cannot make queueing the new normal (a ratchet upwards)
            self.best = min(low, self.best * 1.5)
        self.best = min(self.best, low)  # the latency of a call that did not queue
        if mean <= self.tolerance * self.best:
            if used:
                self.limit = min(self.max_limit, self.limit + math.sqrt(self.limit))
        else:
            self.limit = max(self.min_limit, self.limit * self.backoff)


@dataclass
class MethodLimit:
    max_concurrent: int | None = None
    rate: float | None = None  # calls per second
    burst: float | None = None  # bucket size (default: max(1, rate))
    pushback_ms: int = 50
    adaptive: AdaptiveConcurrency | None = None  # a concurrency limit that moves
    refused: int = 0
    _inflight: int = field(default=0, repr=False)
    _tokens: float = field(default=-1.0, repr=False)
    _at: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        if self.max_concurrent is None and self.rate is None and self.adaptive is None:
            raise ValueError("a MethodLimit needs max_concurrent, rate or adaptive")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {self.max_concurrent}")
        if self.rate is not None and self.rate <= 0:
            raise ValueError(f"rate must be > 0, got {self.rate}")
        if self.burst is None and self.rate is not None:
            self.burst = max(1.0, self.rate)

    def _take_token(self, now: float) -> float:
        """0 if a token was taken, else the seconds until one is free."""
        assert self.rate is not None and self.burst is not None
        if self._tokens < 0:
            self._tokens, self._at = self.burst, now
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate


def method_limits(
    rules: Mapping[str, MethodLimit],
) -> Callable[[ServerCall, Callable[[ServerCall], Awaitable[Any]]], Awaitable[Any]]:
    """A server interceptor enforcing ``rules`` (``"Svc.Method"``, ``"Svc.*"``, ``"*"``).
    Each rule object is shared by the methods it matches."""
    check_names(rules)
    table: dict[str, MethodLimit] = dict(rules)

    async def limit(call: ServerCall, proceed: Callable[[ServerCall], Awaitable[Any]]) -> Any:
        rule = matching(table, call.method)  # type: ignore[arg-type]
        if rule is None:
            return await proceed(call)
        assert isinstance(rule, MethodLimit)
        cap = rule.max_concurrent
        if rule.adaptive is not None:
            cap = min(cap or 1 << 30, int(rule.adaptive.limit))
        if cap is not None and rule._inflight >= cap:
            rule.refused += 1
            raise ResourceExhausted(
                message=f"{call.method}: over its concurrency limit ({cap})",
                details={PUSHBACK_KEY: rule.pushback_ms})
        if rule.rate is not None:
            wait = rule._take_token(time.monotonic())
            if wait:
                rule.refused += 1
                raise ResourceExhausted(
                    message=f"{call.method}: over its rate limit ({rule.rate:g}/s)",
                    details={PUSHBACK_KEY: max(1, round(wait * 1000))})
        rule._inflight += 1
        t0 = time.monotonic()
        try:
            return await proceed(call)
        finally:
            rule._inflight -= 1
            if rule.adaptive is not None:
                rule.adaptive.sample(time.monotonic() - t0, rule._inflight + 1)

    return limit
