"""Per-method policies: idempotency, retries, hedging, hash keys, balancer overrides.

::

    from wirecall.cluster import policy, RetryPolicy, HedgePolicy

    class CatalogAPI:
        @policy(idempotent=True, retry=RetryPolicy(max_attempts=3))
        async def Get(self, sku: str) -> Item: ...

        @policy(idempotent=True, hedge=HedgePolicy(delay=None))   # delay: observed p95
        async def Search(self, q: str) -> list[Item]: ...

    catalog = client.stub(CatalogAPI)          # the stub's calls use the policies
    client.set_policy("Catalog.Get", MethodPolicy(idempotent=True))   # or by name ("Svc.*")

Only methods marked ``idempotent`` are retried after the request may have reached a server,
or hedged. Any method is re-sent to another endpoint when the request surely never left
(the connection could not be made, the breaker refused it, the server was shutting down).

**Retry budget** (gRPC ``retryThrottling``): a bucket of ``max_tokens`` (100) tokens; each
failed attempt takes 1, each success gives back ``token_ratio`` (0.1); retries and hedges are
sent only while more than half the tokens remain. So when every call fails, the fleet sees at
most ``max_tokens / 2`` extra attempts in all, and with a healthy fleet at most about one
retry per ``1 / token_ratio`` successes.

**Pushback**: a server may put ``{"wirecall-pushback-ms": N}`` in an error's details: the
next attempt waits N ms instead of the backoff; N < 0 means "do not retry".
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import ConnectError, RpcError
from ..status import Status

__all__ = [
    "PUSHBACK_KEY",
    "HedgePolicy",
    "LatencyTracker",
    "MethodPolicy",
    "RetryBudget",
    "RetryPolicy",
    "never_sent",
    "policy",
    "pushback_ms",
]

F = TypeVar("F", bound=Callable[..., Any])

PUSHBACK_KEY = "wirecall-pushback-ms"
#: the message a closing server refuses new calls with: the call never ran
SHUTTING_DOWN = "server is shutting down"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    statuses: frozenset[Status] = frozenset({Status.UNAVAILABLE, Status.RESOURCE_EXHAUSTED})
    initial_backoff: float = 0.02
    max_backoff: float = 1.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= 5:
            raise ValueError(f"max_attempts must be 1..5 (gRPC's cap), got {self.max_attempts}")
        if self.initial_backoff < 0 or self.max_backoff < self.initial_backoff:
            raise ValueError("backoff must satisfy 0 <= initial_backoff <= max_backoff")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier}")

    def backoff(self, attempt: int) -> float:
        """Full jitter (gRPC A6): random(0, min(initial * multiplier^(n-1), max))."""
        cap = min(self.initial_backoff * self.multiplier ** max(0, attempt - 1), self.max_backoff)
        return random.uniform(0, cap)


@dataclass(frozen=True)
class HedgePolicy:
    """Send another attempt to another endpoint after ``delay`` seconds (None: the method's
    observed p95, ``fallback_delay`` until 20 samples exist); the first answer wins and the
    others are cancelled (the servers see the cancellation)."""

    max_attempts: int = 2
    delay: float | None = None
    fallback_delay: float = 0.05
    statuses: frozenset[Status] = frozenset({Status.UNAVAILABLE, Status.RESOURCE_EXHAUSTED})

    def __post_init__(self) -> None:
        if not 2 <= self.max_attempts <= 5:
            raise ValueError(f"hedging max_attempts must be 2..5, got {self.max_attempts}")
        if self.delay is not None and self.delay < 0:
            raise ValueError("hedging delay must be >= 0")


@dataclass(frozen=True)
class MethodPolicy:
    idempotent: bool = False
    retry: RetryPolicy | None = None
    hedge: HedgePolicy | None = None
    balancer: str | None = None  # override the client's balancer for this method
    hash_key: Callable[[Any], str | bytes] | None = None  # params -> key (ring_hash)

    def __post_init__(self) -> None:
        if (self.retry or self.hedge) and not self.idempotent:
            raise ValueError("retries and hedging need idempotent=True")
        if self.retry and self.hedge:
            raise ValueError("a method has a retry policy or a hedging policy, not both")


DEFAULT_POLICY = MethodPolicy()


def policy(
    *,
    idempotent: bool = False,
    retry: RetryPolicy | None = None,
    hedge: HedgePolicy | None = None,
    balancer: str | None = None,
    hash_key: Callable[[Any], str | bytes] | None = None,
) -> Callable[[F], F]:
    """Mark a stub method (or any function) with its cluster policy. ``idempotent=True``
    alone means retries with the default :class:`RetryPolicy`."""
    if idempotent and retry is None and hedge is None:
        retry = RetryPolicy()
    pol = MethodPolicy(idempotent=idempotent, retry=retry, hedge=hedge, balancer=balancer,
                       hash_key=hash_key)

    def mark(fn: F) -> F:
        fn.__wirecall_policy__ = pol  # type: ignore[attr-defined]
        return fn
    return mark


def policy_of(fn: Any) -> MethodPolicy | None:
    pol = getattr(fn, "__wirecall_policy__", None)
    return pol if isinstance(pol, MethodPolicy) else None


class RetryBudget:
    """gRPC retryThrottling: retries allowed while tokens > max_tokens / 2."""

    __slots__ = ("max_tokens", "token_ratio", "tokens")

    def __init__(self, max_tokens: float = 100.0, token_ratio: float = 0.1) -> None:
        if max_tokens <= 0 or token_ratio <= 0:
            raise ValueError("max_tokens and token_ratio must be > 0")
        self.max_tokens = max_tokens
        self.token_ratio = token_ratio
        self.tokens = max_tokens

    def on_success(self) -> None:
        self.tokens = min(self.max_tokens, self.tokens + self.token_ratio)

    def on_failure(self) -> None:
        self.tokens = max(0.0, self.tokens - 1)

    def can_retry(self) -> bool:
        return self.tokens > self.max_tokens / 2


class LatencyTracker:
    """The last ``size`` latencies of one method; ``p95()`` for hedging delays."""

    def __init__(self, size: int = 256) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        self._sorted: list[float] | None = None

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)
        self._sorted = None

    def quantile(self, q: float, min_samples: int = 20) -> float | None:
        if len(self._samples) < min_samples:
            return None
        if self._sorted is None:
            self._sorted = sorted(self._samples)
        s = self._sorted
        return s[min(len(s) - 1, int(q * len(s)))]

    def p95(self) -> float | None:
        return self.quantile(0.95)


def pushback_ms(exc: RpcError) -> float | None:
    """The pushback a server attached to an error (ms; negative: do not retry), or None."""
    details = exc.details
    if isinstance(details, dict) and PUSHBACK_KEY in details:
        try:
            return float(details[PUSHBACK_KEY])
        except (TypeError, ValueError):
            return None
    return None


def never_sent(exc: BaseException) -> bool:
    """The request surely did not run on a server: safe to re-send for any method."""
    if isinstance(exc, ConnectError):
        return True
    return (isinstance(exc, RpcError) and exc.status == Status.UNAVAILABLE
            and exc.message == SHUTTING_DOWN)


def matching(policies: dict[str, MethodPolicy], method: str) -> MethodPolicy | None:
    """The policy for ``method``: exact name first, then ``Service.*``, then ``*``."""
    pol = policies.get(method)
    if pol is None:
        service = method.rpartition(".")[0]
        pol = policies.get(f"{service}.*") if service else None
    return pol or policies.get("*")


def check_names(names: Iterable[str]) -> None:
    for n in names:
        if not n or n.count("*") > 1 or ("*" in n and not (n == "*" or n.endswith(".*"))):
            raise ValueError(f"bad policy name {n!r}: use 'Svc.Method', 'Svc.*' or '*'")

