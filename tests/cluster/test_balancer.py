"""Balancers without a network: round robin, nginx's smooth WRR sequence, least pending,
P2C PeakEWMA (go-zero's entropy test, slow endpoints shed load, forced picks), consistent
hashing (movement on add/remove, bounded loads), zone locality, names."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from wirecall.cluster.balancer import (
    LeastPending,
    P2CPeakEwma,
    RingHash,
    RoundRobin,
    SmoothWeightedRoundRobin,
    hash_key,
    make_balancer,
)
from wirecall.cluster.breaker import CircuitBreaker
from wirecall.cluster.endpoint import EndpointState
from wirecall.cluster.entry import Entry


def ep(name: str, weight: int = 100, zone: str = "") -> EndpointState:
    return EndpointState(entry=Entry(id=name, addrs={"tcp": f"tcp://{name}"}, weight=weight,
                                     zone=zone),
                         url=f"tcp://{name}", client=None, breaker=CircuitBreaker())


def entropy(counts: Counter[str], n: int) -> float:
    total = sum(counts.values())
    h = -sum(c / total * math.log(c / total) for c in counts.values() if c)
    return h / math.log(n)


def test_round_robin_cycles() -> None:
    eps = [ep("a"), ep("b"), ep("c")]
    rr = RoundRobin()
    got = [rr.pick(eps, None).id for _ in range(9)]
    assert Counter(got) == {"a": 3, "b": 3, "c": 3}
    assert all(got[i] != got[i + 1] for i in range(8))


def test_smooth_weighted_round_robin_is_nginx_sequence() -> None:
    eps = [ep("a", 5), ep("b", 1), ep("c", 1)]
    swrr = SmoothWeightedRoundRobin()
    assert [swrr.pick(eps, None).id for _ in range(7)] == ["a", "a", "b", "a", "c", "a", "a"]
    counts = Counter(swrr.pick(eps, None).id for _ in range(700))
    assert counts == {"a": 500, "b": 100, "c": 100}


def test_least_pending() -> None:
    eps = [ep("a"), ep("b"), ep("c")]
    eps[0].pending, eps[1].pending, eps[2].pending = 3, 1, 2
    assert LeastPending().pick(eps, None).id == "b"


def test_p2c_entropy_like_go_zero() -> None:
    """10,000 picks over 100 endpoints, each call finishing at once with a random latency
    and 1% deadline errors (go-zero TestP2cPicker_Pick): normalized entropy > 0.95."""
    rnd = random.Random(7)
    now = [0.0]
    p2c = P2CPeakEwma(clock=lambda: now[0], rand=random.Random(1))
    eps = [ep(f"e{i}") for i in range(100)]
    counts: Counter[str] = Counter()
    for _ in range(10_000):
        now[0] += 0.001
        chosen = p2c.pick(eps, None)
        counts[chosen.id] += 1
        rtt = 1.0 if rnd.random() < 0.01 else rnd.uniform(0.001, 0.003)  # 1% deadline errors
        chosen.observe(rtt, now[0])
    h = entropy(counts, 100)
    print(f"p2c entropy over 100 endpoints: {h:.4f}")
    assert h > 0.95
    two = [ep("x"), ep("y")]
    c2: Counter[str] = Counter()
    for _ in range(10_000):
        now[0] += 0.001
        chosen = p2c.pick(two, None)
        c2[chosen.id] += 1
        chosen.observe(rnd.uniform(0.001, 0.003), now[0])
    assert entropy(c2, 2) > 0.5


def test_p2c_sheds_a_slow_endpoint_and_probes_it() -> None:
    now = [0.0]
    p2c = P2CPeakEwma(clock=lambda: now[0], rand=random.Random(3))
    eps = [ep("fast1"), ep("fast2"), ep("slow")]
    counts: Counter[str] = Counter()
    for _ in range(3000):
        now[0] += 0.002
        chosen = p2c.pick(eps, None)
        counts[chosen.id] += 1
        chosen.observe(0.051 if chosen.id == "slow" else 0.001, now[0])
    share = counts["slow"] / 3000
    print(f"slow share {share:.3%}")
    assert share < 0.05          # shed ...
    assert counts["slow"] >= 3   # ... but still probed (forced pick / decay)


def test_ring_hash_moves_about_a_quarter_on_a_fourth_node() -> None:
    ring = RingHash()
    three = [ep("a"), ep("b"), ep("c")]
    four = [*three, ep("d")]
    keys = [hash_key(f"user-{i}") for i in range(20_000)]
    ring.update(three)
    before = {k: ring.owner(k) for k in keys}
    ring.update(four)
    after = {k: ring.owner(k) for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    share = len(moved) / len(keys)
    print(f"moved {share:.3%} of keys to the 4th node")
    assert all(after[k] == "d" for k in moved)  # only to the new node
    assert 0.18 < share < 0.32                   # about 1/4
    load = Counter(after.values())
    assert max(load.values()) / (len(keys) / 4) < 1.25
    # removing a node moves only its keys
    ring.update(three)
    again = {k: ring.owner(k) for k in keys}
    assert all(again[k] == before[k] for k in keys)


def test_ring_hash_bounded_loads() -> None:
    ring = RingHash(balance_factor=1.25)
    eps = [ep("a"), ep("b"), ep("c"), ep("d")]
    ring.update(eps)
    hot = hash_key("the-hot-key")
    picks = []
    for _ in range(200):  # every call in flight, same key
        chosen = ring.pick(eps, hot)
        chosen.pending += 1
        picks.append(chosen.id)
        total = sum(e.pending for e in eps)
        bound = math.ceil(1.25 * total / len(eps))
        assert max(e.pending for e in eps) <= bound
    assert len(set(picks)) == 4  # the hot key spilled over
    for e in eps:
        e.pending = 0
    assert ring.pick(eps, hot).id == picks[0]  # unloaded: back to its owner


def test_make_balancer_names() -> None:
    for name in ("round_robin", "weighted_round_robin", "least_pending", "p2c", "ring_hash",
                 "random"):
        assert make_balancer(name).name == name
    with pytest.raises(ValueError, match="unknown balancer 'nope'"):
        make_balancer("nope")
