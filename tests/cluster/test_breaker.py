"""Circuit breaker and adaptive throttling on a fake clock: every transition, generations,
the failure-ratio window, and the SRE formula's bound on what backends see."""

from __future__ import annotations

import random

import pytest

from wirecall.cluster.breaker import AdaptiveThrottle, BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_consecutive_failures_open_then_half_open_probe_closes() -> None:
    clock = Clock()
    changes: list[tuple[str, str]] = []
    b = CircuitBreaker(consecutive_failures=3, failure_ratio=None, open_for=5.0, clock=clock,
                       on_change=lambda a, c: changes.append((a, c)))
    for _ in range(2):
        b.record(b.allow(), False)  # type: ignore[arg-type]
    g = b.allow()
    assert g is not None
    b.record(g, True)  # a success resets the streak
    for _ in range(3):
        b.record(b.allow(), False)  # type: ignore[arg-type]
    assert b.state == BreakerState.OPEN and b.allow() is None
    clock.t += 4.9
    assert b.allow() is None
    clock.t += 0.2
    probe = b.allow()
    assert probe is not None and b.state == BreakerState.HALF_OPEN
    assert b.allow() is None  # exactly one probe
    b.record(probe, True)
    assert b.state == BreakerState.CLOSED
    assert changes == [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]


def test_half_open_failure_reopens_and_late_results_are_ignored() -> None:
    clock = Clock()
    b = CircuitBreaker(consecutive_failures=1, failure_ratio=None, open_for=1.0, clock=clock)
    old = b.allow()
    b.record(b.allow(), False)  # type: ignore[arg-type]
    assert b.state == BreakerState.OPEN
    clock.t += 1.0
    probe = b.allow()
    assert probe is not None
    assert old is not None
    b.record(old, True)  # from before the transition: ignored
    assert b.state == BreakerState.HALF_OPEN
    b.record(probe, False)
    assert b.state == BreakerState.OPEN and b.opens == 2


def test_failure_ratio_needs_volume() -> None:
    clock = Clock()
    b = CircuitBreaker(consecutive_failures=None, failure_ratio=0.5, min_requests=20,
                       window=10.0, clock=clock)
    for i in range(19):
        b.record(b.allow(), i % 2 == 0)  # type: ignore[arg-type]
    assert b.state == BreakerState.CLOSED  # 19 < 20 requests
    b.record(b.allow(), False)  # type: ignore[arg-type]
    assert b.state == BreakerState.OPEN   # 20 requests, 10 failures


def test_failure_ratio_window_forgets() -> None:
    clock = Clock()
    b = CircuitBreaker(consecutive_failures=None, failure_ratio=0.5, min_requests=4,
                       window=10.0, clock=clock)
    for _ in range(3):
        b.record(b.allow(), False)  # type: ignore[arg-type]
    clock.t += 11  # the window has moved on
    for _ in range(3):
        b.record(b.allow(), True)  # type: ignore[arg-type]
    b.record(b.allow(), False)  # type: ignore[arg-type]
    assert b.state == BreakerState.CLOSED  # 1 failure in 4


def test_breaker_rejects_bad_options() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(consecutive_failures=None, failure_ratio=None)
    with pytest.raises(TypeError):
        CircuitBreaker(bogus=1)  # type: ignore[call-arg]


def test_sre_throttle_bounds_backend_attempts() -> None:
    """Backend capacity 50% of offered load: attempts reaching it <= K * accepts + a few."""
    clock = Clock()
    th = AdaptiveThrottle(k=2.0, window=10.0, clock=clock, rand=random.Random(5).random)
    rnd = random.Random(9)
    sent = accepted = 0
    for _ in range(5000):
        clock.t += 0.001
        if not th.allow():
            continue
        sent += 1
        ok = rnd.random() < 0.5 if sent > 0 else True
        accepted += ok
        th.record(ok)
    print(f"sent {sent} accepted {accepted} rejected locally {th.rejected}")
    assert th.rejected > 0
    assert sent <= 2.0 * accepted + 20


def test_throttle_is_quiet_when_healthy() -> None:
    th = AdaptiveThrottle()
    for _ in range(1000):
        assert th.allow()
        th.record(True)
    assert th.reject_probability() == 0.0
