"""Balancers: which endpoint a call goes to.

Each balancer's ``pick(candidates, key)`` gets the usable endpoints (never empty) and the
call's hash key (only consistent hashing reads it) and returns one. ``make_balancer(name)``
builds one by name: ``round_robin``, ``weighted_round_robin`` (nginx's smooth WRR),
``least_pending``, ``p2c`` (power of two choices on PeakEWMA cost: the default), ``ring_hash``
(consistent hashing with bounded loads), ``random``.

When to use which: ``p2c`` by default (adapts to slow or busy endpoints, needs no tuning);
``weighted_round_robin`` when capacities differ and are known (weights in the entries);
``round_robin`` for equal, predictable endpoints; ``least_pending`` when calls vary a lot in
cost and the client sends most of the traffic; ``ring_hash`` when the same key should reach
the same endpoint (caches, sessions), with loads bounded to ``balance_factor`` x the mean;
``random`` for many clients and tests.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
import time
from collections.abc import Callable, Sequence

from .endpoint import EndpointState

__all__ = [
    "BALANCERS",
    "Balancer",
    "LeastPending",
    "P2CPeakEwma",
    "Random",
    "RingHash",
    "RoundRobin",
    "SmoothWeightedRoundRobin",
    "hash_key",
    "make_balancer",
]


def hash_key(key: str | bytes) -> int:
    data = key.encode() if isinstance(key, str) else key
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class Balancer:
    name = "base"

    def pick(self, candidates: Sequence[EndpointState], key: int | None) -> EndpointState:
        raise NotImplementedError

    def update(self, endpoints: Sequence[EndpointState]) -> None:
        """The endpoint set changed (ring hash rebuilds its ring)."""


class RoundRobin(Balancer):
    name = "round_robin"

    def __init__(self) -> None:
        self._n = random.randrange(1 << 16)

    def pick(self, candidates: Sequence[EndpointState], key: int | None) -> EndpointState:
        self._n += 1
        return candidates[self._n % len(candidates)]


class SmoothWeightedRoundRobin(Balancer):
    """nginx's smooth weighted round robin: weights 5,1,1 give a,a,b,a,c,a,a (no bursts)."""

    name = "weighted_round_robin"

    def __init__(self) -> None:
        self._current: dict[str, int] = {}

    def pick(self, candidates: Sequence[EndpointState], key: int | None) -> EndpointState:
        total = 0
        best: EndpointState | None = None
        cur = self._current
        for ep in candidates:
            w = max(0, ep.weight)
            c = cur.get(ep.id, 0) + w
            cur[ep.id] = c
            total += w
            if best is None or c > cur[best.id]:
                best = ep
        assert best is not None
        cur[best.id] -= total
        return best

    def update(self, endpoints: Sequence[EndpointState]) -> None:
        live = {ep.id for ep in endpoints}
        self._current = {k: v for k, v in self._current.items() if k in live}


class LeastPending(Balancer):
    name = "least_pending"

    def pick(self, candidates: Sequence[EndpointState], key: int | None) -> EndpointState:
        least = min(ep.pending for ep in candidates)
        ties = [ep for ep in candidates if ep.pending == least]
        return ties[0] if len(ties) == 1 else random.choice(ties)


class P2CPeakEwma(Balancer):
    """Two distinct random candidates, the lower PeakEWMA cost wins; a candidate not picked
    for ``force_pick`` seconds is taken (so a recovered endpoint is measured again)."""

    name = "p2c"

    def __init__(self, force_pick: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 rand: random.Random | None = None) -> None:
        self.force_pick = force_pick
        self._clock = clock
        self._rand = rand or random.Random()
        self._random = self._rand.random

    def pick(self, candidates: Sequence[EndpointState], key: int | None) -> EndpointState:
        n = len(candidates)
        if n == 1:
            return candidates[0]
        r = self._random
        i = int(r() * n)
        j = int(r() * (n - 1))
        if j >= i:
            j += 1
        a, b = candidates[i], candidates[j]
        now = self._clock()
        ca, cb = a.cost(now), b.cost(now)
        if ca > cb:
            a, b = b, a
        if now - b.last_pick > self.force_pick:
            a = b
        a.last_pick = now
        return a


class Random(Balancer):
    name = "random"

    def pick(self, candidates: Sequence[EndpointState], key: int | None) -> EndpointState:
        return random.choice(candidates)


class RingHash(Balancer):
    """Consistent hashing on a ring of ``vnodes`` points per endpoint (scaled by weight /
    100), with bounded loads (Mirrokni et al.): an endpoint takes a key only while its calls
    in flight are below ``ceil(balance_factor * (total + 1) / n)``; otherwise the walk goes
    on clockwise. Calls without a key fall back to P2C."""

    name = "ring_hash"

    def __init__(self, vnodes: int = 160, balance_factor: float = 1.25) -> None:
        if balance_factor < 1:
            raise ValueError(f"balance_factor must be >= 1, got {balance_factor}")
        self.vnodes = vnodes
        self.balance_factor = balance_factor
        self._points: list[int] = []
        self._owners: list[str] = []
        self._fallback = P2CPeakEwma()

    def update(self, endpoints: Sequence[EndpointState]) -> None:
        ring: list[tuple[int, str]] = []
        for ep in endpoints:
            count = max(1, round(self.vnodes * max(ep.weight, 1) / 100))
            ring.extend((hash_key(f"{ep.id}#{i}"), ep.id) for i in range(count))
        ring.sort()
        self._points = [p for p, _ in ring]
        self._owners = [o for _, o in ring]

    def owner(self, key: int, loads: dict[str, int] | None = None,
              capacity: int | None = None) -> str:
        """The endpoint id for ``key``; with ``loads``/``capacity``, the first one below it."""
        if not self._points:
            raise LookupError("empty ring")
        n = len(self._points)
        start = bisect.bisect_left(self._points, key) % n
        for step in range(n):
            owner = self._owners[(start + step) % n]
            if loads is None or capacity is None or loads.get(owner, 0) < capacity:
                return owner
        return self._owners[start]

    def pick(self, candidates: Sequence[EndpointState], key: int | None) -> EndpointState:
        if key is None:
            return self._fallback.pick(candidates, None)
        by_id = {ep.id: ep for ep in candidates}
        total = sum(ep.pending for ep in candidates)
        capacity = math.ceil(self.balance_factor * (total + 1) / len(candidates))
        loads = {ep.id: ep.pending for ep in candidates}
        # endpoints on the ring but not candidates (ejected, open) are skipped like full ones
        for owner_id in self._owners:
            if owner_id not in by_id:
                loads[owner_id] = capacity
        owner = self.owner(key, loads, capacity)
        return by_id.get(owner) or self._fallback.pick(candidates, None)


BALANCERS: dict[str, Callable[[], Balancer]] = {
    "round_robin": RoundRobin,
    "weighted_round_robin": SmoothWeightedRoundRobin,
    "least_pending": LeastPending,
    "p2c": P2CPeakEwma,
    "ring_hash": RingHash,
    "random": Random,
}


def make_balancer(spec: str | Balancer) -> Balancer:
    if isinstance(spec, Balancer):
        return spec
    try:
        return BALANCERS[spec]()
    except KeyError:
        raise ValueError(
            f"unknown balancer {spec!r}; choose one of {', '.join(sorted(BALANCERS))}"
        ) from None
