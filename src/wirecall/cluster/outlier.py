"""Outlier ejection (after Envoy's outlier detection): an endpoint that fails
``consecutive_failures`` times in a row, or whose latency EWMA is above ``latency_factor``
times the median of its peers (and above ``min_latency``), is taken out of the balancer for
``base_ejection x times ejected`` seconds (capped at ``max_ejection``), never more than
``max_ejected_share`` of the fleet at once (at least one endpoint may always be ejected when
there are two or more). The count of ejections decays by one for each ``max_ejection``
seconds an endpoint stays in.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from .endpoint import EndpointState
from .events import Events

__all__ = ["OutlierDetector", "OutlierPolicy"]


@dataclass(frozen=True)
class OutlierPolicy:
    consecutive_failures: int = 5
    base_ejection: float = 2.0
    max_ejection: float = 30.0
    max_ejected_share: float = 0.5
    latency_factor: float | None = 10.0
    min_latency: float = 0.02
    min_peers: int = 3

    def __post_init__(self) -> None:
        if self.consecutive_failures < 1 or self.base_ejection <= 0:
            raise ValueError("consecutive_failures must be >= 1 and base_ejection > 0")
        if not 0 < self.max_ejected_share <= 1:
            raise ValueError("max_ejected_share must be in (0, 1]")


class OutlierDetector:
    def __init__(self, policy: OutlierPolicy, events: Events) -> None:
        self.policy = policy
        self.events = events
        self._good_since: dict[str, float] = {}

    def _may_eject(self, fleet: Sequence[EndpointState], now: float) -> bool:
        live = [ep for ep in fleet if not ep.removed]
        if len(live) < 2:
            return False
        ejected = sum(1 for ep in live if ep.ejected(now))
        allowed = max(1, int(self.policy.max_ejected_share * len(live)))
        return ejected < allowed

    def eject(self, ep: EndpointState, fleet: Sequence[EndpointState], now: float,
              why: str) -> bool:
        if ep.ejected(now) or not self._may_eject(fleet, now):
            return False
        ep.stats.ejections += 1
        period = min(self.policy.base_ejection * ep.stats.ejections, self.policy.max_ejection)
        ep.ejected_until = now + period
        ep.consecutive_failures = 0
        self._good_since.pop(ep.id, None)
        self.events.emit("ejected", ep.url, f"{why}; for {period:.1f}s")
        return True

    def on_result(self, ep: EndpointState, ok: bool, fleet: Sequence[EndpointState],
                  now: float) -> None:
        if ok:
            ep.consecutive_failures = 0
            return
        ep.consecutive_failures += 1
        if ep.consecutive_failures >= self.policy.consecutive_failures:
            self.eject(ep, fleet, now, f"{ep.consecutive_failures} consecutive failures")

    def sweep(self, fleet: Sequence[EndpointState], now: float) -> None:
        """Latency outliers, and the decay of ejection counts (call it periodically)."""
        pol = self.policy
        for ep in fleet:
            if ep.ejected_until and not ep.ejected(now) and ep.id not in self._good_since:
                self._good_since[ep.id] = now
                self.events.emit("uneject", ep.url, "")
            since = self._good_since.get(ep.id)
            if since is not None and now - since >= pol.max_ejection and ep.stats.ejections:
                ep.stats.ejections -= 1
                self._good_since[ep.id] = now
        if pol.latency_factor is None:
            return
        live = [ep for ep in fleet if not ep.removed and not ep.ejected(now) and ep.ewma > 0]
        if len(live) < pol.min_peers:
            return
        for ep in live:
            peers = [p.ewma for p in live if p is not ep]
            median = statistics.median(peers)
            if ep.ewma > pol.min_latency and ep.ewma > pol.latency_factor * median:
                self.eject(ep, fleet, now, f"latency {ep.ewma * 1000:.1f}ms vs peers' median "
                                           f"{median * 1000:.1f}ms")
