"""Circuit breaker per endpoint and the client-side adaptive throttle (Google SRE).

**CircuitBreaker** (closed / open / half-open, like gobreaker and Hystrix): while closed it
counts outcomes; it opens after ``consecutive_failures`` failures in a row, or when at least
``min_requests`` calls in the rolling ``window`` (10 buckets, monotonic clock: not
hystrix-go's wall-clock buckets) failed at ``failure_ratio`` or more. Open, it refuses calls
for ``open_for`` seconds, then lets ``half_open_probes`` calls through (half-open): that many
successes close it, any failure opens it again. ``allow()`` returns a generation number that
``record()`` takes back, so a late result from before a transition is ignored (gobreaker).

**AdaptiveThrottle** (SRE book, "Handling Overload"): over a rolling window the client counts
``requests`` and ``accepts`` (calls the backend did not refuse for overload or unavailability)
and rejects locally with probability ``max(0, (requests - K * accepts) / (requests + 1))``.
With K = 2 the backends see at most about twice what they accept.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

__all__ = ["AdaptiveThrottle", "BreakerState", "CircuitBreaker", "RollingCounter"]

Clock = Callable[[], float]


class BreakerState:
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class RollingCounter:
    """Two counts (total, bad) over ``window`` seconds in ``buckets`` slices."""

    __slots__ = ("_bad", "_clock", "_idx", "_slice", "_start", "_total", "buckets")

    def __init__(self, window: float, buckets: int = 10, clock: Clock = time.monotonic) -> None:
        if window <= 0 or buckets < 1:
            raise ValueError("window must be > 0 and buckets >= 1")
        self.buckets = buckets
        self._slice = window / buckets
        self._clock = clock
        self._total = [0] * buckets
        self._bad = [0] * buckets
        self._start = math.floor(clock() / self._slice)  # index of the newest slice
        self._idx = 0

    def _advance(self) -> None:
        now_slice = math.floor(self._clock() / self._slice)
        steps = now_slice - self._start
        if steps <= 0:
            return
        for _ in range(min(steps, self.buckets)):
            self._idx = (self._idx + 1) % self.buckets
            self._total[self._idx] = 0
            self._bad[self._idx] = 0
        self._start = now_slice

    def add(self, bad: bool) -> None:
        self._advance()
        self._total[self._idx] += 1
        if bad:
            self._bad[self._idx] += 1

    def counts(self) -> tuple[int, int]:
        self._advance()
        return sum(self._total), sum(self._bad)

    def reset(self) -> None:
        self._total = [0] * self.buckets
        self._bad = [0] * self.buckets


class CircuitBreaker:
    def __init__(
        self,
        *,
        consecutive_failures: int | None = 5,
        failure_ratio: float | None = 0.5,
        min_requests: int = 20,
        window: float = 10.0,
        open_for: float = 5.0,
        half_open_probes: int = 1,
        clock: Clock = time.monotonic,
        on_change: Callable[[str, str], None] | None = None,
    ) -> None:
        if consecutive_failures is None and failure_ratio is None:
            raise ValueError("a breaker needs consecutive_failures or failure_ratio")
        if failure_ratio is not None and not 0 < failure_ratio <= 1:
            raise ValueError(f"failure_ratio must be in (0, 1], got {failure_ratio}")
        if open_for <= 0 or half_open_probes < 1:
            raise ValueError("open_for must be > 0 and half_open_probes >= 1")
        self.consecutive_failures = consecutive_failures
        self.failure_ratio = failure_ratio
        self.min_requests = min_requests
        self.open_for = open_for
        self.half_open_probes = half_open_probes
        self._clock = clock
        self._on_change = on_change
        self.window = RollingCounter(window, 10, clock)
        self.state = BreakerState.CLOSED
        self.generation = 0
        self.opened_at = 0.0
        self._streak = 0
        self._probes_out = 0
        self._probe_ok = 0
        self.opens = 0

    def _set(self, state: str) -> None:
        old, self.state = self.state, state
        self.generation += 1
        self._streak = 0
        self._probes_out = 0
        self._probe_ok = 0
        if state == BreakerState.OPEN:
            self.opened_at = self._clock()
            self.opens += 1
        if state == BreakerState.CLOSED:
            self.window.reset()
        if self._on_change is not None and old != state:
            self._on_change(old, state)

    def available(self) -> bool:
        """Would a call be let through now (without taking a half-open probe slot)?"""
        if self.state == BreakerState.CLOSED:
            return True
        if self.state == BreakerState.OPEN:
            return self._clock() - self.opened_at >= self.open_for
        return self._probes_out < self.half_open_probes

    def allow(self) -> int | None:
        """A generation to pass to :meth:`record`, or None: refused (open)."""
        st = self.state
        if st == BreakerState.CLOSED:
            return self.generation
        if st == BreakerState.OPEN:
            if self._clock() - self.opened_at < self.open_for:
                return None
            self._set(BreakerState.HALF_OPEN)
        if self._probes_out >= self.half_open_probes:
            return None
        self._probes_out += 1
        return self.generation

    def record(self, generation: int, ok: bool) -> None:
        if generation != self.generation:
            return  # a result from before the last transition
        st = self.state
        if st == BreakerState.HALF_OPEN:
            if not ok:
                self._set(BreakerState.OPEN)
                return
            self._probe_ok += 1
            if self._probe_ok >= self.half_open_probes:
                self._set(BreakerState.CLOSED)
            return
        if st != BreakerState.CLOSED:
            return
        self.window.add(not ok)
        if ok:
            self._streak = 0
            return
        self._streak += 1
        if self.consecutive_failures is not None and self._streak >= self.consecutive_failures:
            self._set(BreakerState.OPEN)
            return
        if self.failure_ratio is not None:
            total, bad = self.window.counts()
            if total >= self.min_requests and bad >= self.failure_ratio * total:
                self._set(BreakerState.OPEN)


class AdaptiveThrottle:
    """Client-side throttling: ``allow()`` before a call, ``record(accepted)`` after."""

    def __init__(
        self,
        k: float = 2.0,
        *,
        window: float = 10.0,
        min_requests: int = 10,
        clock: Clock = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if k < 1:
            raise ValueError(f"K must be >= 1, got {k}")
        self.k = k
        self.min_requests = min_requests
        self._counter = RollingCounter(window, 10, clock)  # (requests, rejected-by-backend)
        self._rand = rand
        self.rejected = 0

    def reject_probability(self) -> float:
        requests, refused = self._counter.counts()
        if requests < self.min_requests:
            return 0.0
        accepts = requests - refused
        return max(0.0, (requests - self.k * accepts) / (requests + 1))

    def allow(self) -> bool:
        p = self.reject_probability()
        if p > 0 and self._rand() < p:
            self.rejected += 1
            self._counter.add(True)  # a local rejection is a request not accepted (SRE)
            return False
        return True

    def record(self, accepted: bool) -> None:
        self._counter.add(not accepted)
