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
concurrency limit ``pushback_ms`` (default 50). Limits are an interceptor: they see every call
on every wire (and, like any interceptor, take calls off the native fast lane).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ResourceExhausted
from ..interceptors import ServerCall
from .policy import PUSHBACK_KEY, check_names, matching

__all__ = ["MethodLimit", "method_limits"]


@dataclass
class MethodLimit:
    max_concurrent: int | None = None
    rate: float | None = None  # calls per second
    burst: float | None = None  # bucket size (default: max(1, rate))
    pushback_ms: int = 50
    refused: int = 0
    _inflight: int = field(default=0, repr=False)
    _tokens: float = field(default=-1.0, repr=False)
    _at: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        if self.max_concurrent is None and self.rate is None:
            raise ValueError("a MethodLimit needs max_concurrent or rate")
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
        if rule.max_concurrent is not None and rule._inflight >= rule.max_concurrent:
            rule.refused += 1
            raise ResourceExhausted(
                message=f"{call.method}: over its concurrency limit ({rule.max_concurrent})",
                details={PUSHBACK_KEY: rule.pushback_ms})
        if rule.rate is not None:
            wait = rule._take_token(time.monotonic())
            if wait:
                rule.refused += 1
                raise ResourceExhausted(
                    message=f"{call.method}: over its rate limit ({rule.rate:g}/s)",
                    details={PUSHBACK_KEY: max(1, round(wait * 1000))})
        rule._inflight += 1
        try:
            return await proceed(call)
        finally:
            rule._inflight -= 1

    return limit
