"""Circuit breaker per endpoint and the client-side adaptive throttle (Google SRE).

**CircuitBreaker** (closed / open / half-open, like gobreaker and Hystrix): while closed it
counts outcomes; it opens after ``consecutive_failures`` failures in a row (default 5, as
gobreaker), or, when ``failure_ratio`` is set (Hystrix: 0.5), when at least
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
    """Two counts (total, bad) over ``window`` seconds in ``buckets`` slices, with running
    sums so that ``add`` and ``counts`` cost O(1) until a slice boundary passes."""

    __slots__ = ("_bad", "_bad_sum", "_clock", "_edge", "_idx", "_slice", "_total",
                 "_total_sum", "buckets")

    def __init__(self, window: float, buckets: int = 10, clock: Clock = time.monotonic) -> None:
        if window <= 0 or buckets < 1:
            raise ValueError("window must be > 0 and buckets >= 1")
        self.buckets = buckets
        self._slice = window / buckets
        self._clock = clock
        self._total = [0] * buckets
        self._bad = [0] * buckets
        self._total_sum = 0
        self._bad_sum = 0
        self._idx = 0
        self._edge = (math.floor(clock() / self._slice) + 1) * self._slice  # newest slice ends

    def _advance(self, now: float) -> None:
        steps = math.floor((now - self._edge) / self._slice) + 1
        for _ in range(min(steps, self.buckets)):
            self._idx = (self._idx + 1) % self.buckets
            self._total_sum -= self._total[self._idx]
            self._bad_sum -= self._bad[self._idx]
            self._total[self._idx] = 0
            self._bad[self._idx] = 0
        self._edge += steps * self._slice

    def add(self, bad: bool, now: float | None = None) -> None:
        if now is None:
            now = self._clock()
        if now >= self._edge:
            self._advance(now)
        self._total[self._idx] += 1
        self._total_sum += 1
        if bad:
            self._bad[self._idx] += 1
            self._bad_sum += 1

    def counts(self, now: float | None = None) -> tuple[int, int]:
        if now is None:
            now = self._clock()
        if now >= self._edge:
            self._advance(now)
        return self._total_sum, self._bad_sum

    def reset(self) -> None:
        self._total = [0] * self.buckets
        self._bad = [0] * self.buckets
        self._total_sum = self._bad_sum = 0


class CircuitBreaker:
    __slots__ = ("_clock", "_on_change", "_probe_ok", "_probes_out", "consecutive_failures",
                 "failure_ratio", "generation", "half_open_probes", "min_requests", "open_for",
                 "opened_at", "opens", "state", "streak", "window")

    def __init__(
        self,
        *,
        consecutive_failures: int | None = 5,
        failure_ratio: float | None = None,
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
        self.streak = 0
        self._probes_out = 0
        self._probe_ok = 0
        self.opens = 0

    def _set(self, state: str) -> None:
        old, self.state = self.state, state
        self.generation += 1
        self.streak = 0
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

    def record(self, generation: int, ok: bool, now: float | None = None) -> None:
        if generation != self.generation:
            return  # a result from before the last transition
        st = self.state
        if ok and st == BreakerState.CLOSED:  # the common case, kept short
            self.streak = 0
            if self.failure_ratio is not None:
                self.window.add(False, now)
            return
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
            self.streak = 0
            return
        self.streak += 1
        if self.consecutive_failures is not None and self.streak >= self.consecutive_failures:
            self._set(BreakerState.OPEN)
            return
        if self.failure_ratio is not None:
            total, bad = self.window.counts()
            if total >= self.min_requests and bad >= self.failure_ratio * total:
                self._set(BreakerState.OPEN)


class AdaptiveThrottle:
    """Client-side throttling: ``allow()`` before a call, ``record(accepted)`` after.

    The hot path of a client only does ``throttle.requests += 1`` for an accepted call (and
    asks ``allow`` only while ``refusing``); the window is kept as snapshots of the running
    totals at each slice boundary, taken lazily, so calls made between two looks are counted
    in the newer slice."""

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
        if window <= 0:
            raise ValueError("window must be > 0")
        self.k = k
        self.min_requests = min_requests
        self._clock = clock
        self._rand = rand
        self._slice = window / 10
        self.requests = 0  # running totals
        self.refused = 0
        self._snaps: list[tuple[int, int]] = [(0, 0)] * 10  # totals at the last 10 boundaries
        self._edge = (math.floor(clock() / self._slice) + 1) * self._slice
        self.rejected = 0
        #: the backends refused calls lately (while False, ``allow`` need not be asked)
        self.refusing = False

    def _window(self, now: float) -> tuple[int, int]:
        if now >= self._edge:
            steps = min(10, math.floor((now - self._edge) / self._slice) + 1)
            snap = (self.requests, self.refused)
            self._snaps = self._snaps[steps:] + [snap] * steps
            self._edge += (math.floor((now - self._edge) / self._slice) + 1) * self._slice
        r0, f0 = self._snaps[0]
        return self.requests - r0, self.refused - f0

    def reject_probability(self, now: float | None = None) -> float:
        requests, refused = self._window(self._clock() if now is None else now)
        if not refused:
            self.refusing = False
            return 0.0
        if requests < self.min_requests:
            return 0.0
        accepts = requests - refused
        return max(0.0, (requests - self.k * accepts) / (requests + 1))

    def allow(self, now: float | None = None) -> bool:
        p = self.reject_probability(now)
        if p > 0 and self._rand() < p:
            self.rejected += 1
            self.requests += 1  # a local rejection is a request not accepted (SRE)
            self.refused += 1
            return False
        return True

    def record(self, accepted: bool, now: float | None = None) -> None:
        self.requests += 1
        if not accepted:
            self.refused += 1
            self.refusing = True
