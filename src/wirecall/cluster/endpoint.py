"""One endpoint as a cluster client sees it: its entry, its client, its load and health.

The numbers every balancer and policy reads live here: ``pending`` (calls in flight from this
client), a peak-sensitive EWMA of latency (Finagle/linkerd "PeakEWMA": a slower sample is
taken at once, faster ones pull it down with weight ``exp(-dt / tau)``, and an idle
endpoint's cost decays toward zero so it is tried again), the circuit breaker, the outlier
state (ejected until when, how many times), and counters.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from .breaker import BreakerState, CircuitBreaker
from .entry import Entry

__all__ = ["MIN_LATENCY", "EndpointState", "EndpointStats"]

#: the latency floor of the P2C cost (an endpoint with no data is not free)
MIN_LATENCY = 1e-4


@dataclass(slots=True)
class EndpointStats:
    calls: int = 0
    failures: int = 0
    retries_from: int = 0
    hedges: int = 0
    ejections: int = 0


@dataclass(eq=False, slots=True)
class EndpointState:
    entry: Entry
    url: str
    client: Any  # a wirecall.Client for ``url``
    breaker: CircuitBreaker
    tau: float = 2.0
    pending: int = 0
    ewma: float = 0.0  # seconds
    ewma_at: float = field(default_factory=time.monotonic)
    last_pick: float = 0.0
    consecutive_failures: int = 0
    ejected_until: float = 0.0
    removed: bool = False
    ready: bool = False  # dialled once (new endpoints get calls only when none is ready)
    stats: EndpointStats = field(default_factory=EndpointStats)
    started_sum: float = 0.0  # sum of the start times of the calls in flight

    @property
    def id(self) -> str:
        return self.entry.id

    @property
    def weight(self) -> int:
        return self.entry.weight

    @property
    def zone(self) -> str:
        return self.entry.zone

    def ejected(self, now: float) -> bool:
        return now < self.ejected_until

    def usable(self, now: float) -> bool:
        return not self.removed and now >= self.ejected_until and self.breaker.available()

    def state(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        if self.removed:
            return "draining"
        if self.ejected(now):
            return "ejected"
        if self.breaker.state != BreakerState.CLOSED:
            return f"breaker-{self.breaker.state}"
        return "ok"

    def cost(self, now: float) -> float:
        """PeakEWMA cost: latency x (pending + 1), where latency is the decayed EWMA, or the
        mean age of the calls in flight when that is larger (calls stuck on an endpoint count
        before they complete, like Kratos' "predict"), and at least ``MIN_LATENCY``."""
        lat = self.ewma * math.exp(-max(0.0, now - self.ewma_at) / self.tau)
        if self.pending:
            lat = max(lat, now - self.started_sum / self.pending)
        return max(lat, MIN_LATENCY) * (self.pending + 1)

    def observe(self, rtt: float, now: float) -> None:
        if rtt > self.ewma:
            self.ewma = rtt  # peak: jump up at once
        else:
            w = math.exp(-max(0.0, now - self.ewma_at) / self.tau)
            self.ewma = self.ewma * w + rtt * (1 - w)
        self.ewma_at = now

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        now = time.monotonic() if now is None else now
        return {
            "id": self.id, "url": self.url, "state": self.state(now), "zone": self.zone,
            "weight": self.weight, "version": self.entry.version, "ready": self.ready,
            "pending": self.pending,
            "ewma_ms": round(self.ewma * 1000, 3), "breaker": self.breaker.state,
            "calls": self.stats.calls, "failures": self.stats.failures,
            "ejections": self.stats.ejections,
            "ejected_for_s": round(max(0.0, self.ejected_until - now), 3),
        }
