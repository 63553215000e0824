"""Method policies, retry backoff, the retry budget's bound, pushback, server-side limits
(in process), targets' parsing and their errors."""

from __future__ import annotations

import asyncio
import statistics

import pytest

import wirecall
from wirecall.cluster.limits import MethodLimit, method_limits
from wirecall.cluster.policy import (
    HedgePolicy,
    MethodPolicy,
    RetryBudget,
    RetryPolicy,
    matching,
    policy,
    policy_of,
    pushback_ms,
)
from wirecall.cluster.resolver import is_cluster_target, parse_target


def test_retry_policy_backoff_is_full_jitter_and_capped() -> None:
    p = RetryPolicy(initial_backoff=0.1, max_backoff=0.3, multiplier=2)
    for attempt, cap in ((1, 0.1), (2, 0.2), (3, 0.3), (5, 0.3)):
        samples = [p.backoff(attempt) for _ in range(200)]
        assert all(0 <= s <= cap for s in samples)
        assert max(samples) > cap * 0.7
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=9)


def test_budget_bounds_retries_in_a_total_outage() -> None:
    b = RetryBudget(max_tokens=100, token_ratio=0.1)
    retries = 0
    for _ in range(10_000):  # every first attempt fails
        b.on_failure()
        if b.can_retry():
            retries += 1
            b.on_failure()
    assert retries <= 50  # at most max_tokens/2 extra attempts over any number of calls


def test_policies_need_idempotency_and_match_by_name() -> None:
    with pytest.raises(ValueError, match="idempotent"):
        MethodPolicy(retry=RetryPolicy())
    with pytest.raises(ValueError, match="not both"):
        MethodPolicy(idempotent=True, retry=RetryPolicy(), hedge=HedgePolicy())

    @policy(idempotent=True)
    async def Get() -> None: ...

    pol = policy_of(Get)
    assert pol is not None and pol.retry == RetryPolicy()
    table = {"A.Get": MethodPolicy(idempotent=True), "A.*": MethodPolicy(balancer="random"),
             "*": MethodPolicy()}
    assert matching(table, "A.Get") is table["A.Get"]
    assert matching(table, "A.Put") is table["A.*"]
    assert matching(table, "B.Put") is table["*"]


def test_pushback_is_read_from_details() -> None:
    err = wirecall.RpcError(wirecall.Status.RESOURCE_EXHAUSTED, "x",
                            {"wirecall-pushback-ms": 40})
    assert pushback_ms(err) == 40
    assert pushback_ms(wirecall.RpcError(wirecall.Status.UNAVAILABLE, "x")) is None


def test_targets_parse_and_reject_unknown_options() -> None:
    t = parse_target("etcd://127.0.0.1:2379/calc?wire=grpc&zone=a")
    assert (t.scheme, t.body, t.service, t.wire, t.zone) == ("etcd", "127.0.0.1:2379", "calc",
                                                             "grpc", "a")
    assert parse_target("static://a:1,b:2").body == "a:1,b:2"
    assert is_cluster_target("zk://h:1/s") and not is_cluster_target("tcp://h:1")
    for bad, why in (("etcd://h:1", "name the service"), ("static://a:1?colour=red", "colour"),
                     ("static://a:1?interval=3", "interval"), ("static://", "no address")):
        with pytest.raises(ValueError, match=why):
            parse_target(bad)


class Slow:
    @wirecall.method
    async def Wait(self, ms: float) -> str:
        await asyncio.sleep(ms / 1000)
        return "ok"


async def test_server_limits_answer_resource_exhausted_with_pushback() -> None:
    conc = MethodLimit(max_concurrent=2, pushback_ms=30)
    rate = MethodLimit(rate=5, burst=2)
    server = wirecall.Server(interceptors=[method_limits({"Slow.Wait": conc, "Rate.*": rate})])
    server.register(Slow(), name="Slow")
    server.register(Slow(), name="Rate")
    (url,) = await server.start("tcp://127.0.0.1:0")
    client = await wirecall.connect(url)
    try:
        results = await asyncio.gather(*(client.call("Slow.Wait", 100) for _ in range(5)),
                                       return_exceptions=True)
        refused = [r for r in results if isinstance(r, wirecall.ResourceExhausted)]
        assert results.count("ok") == 2 and len(refused) == 3
        assert "concurrency limit (2)" in refused[0].message
        assert pushback_ms(refused[0]) == 30
        assert conc.refused == 3
        out = [await client.call("Rate.Wait", 0) for _ in range(2)]
        with pytest.raises(wirecall.ResourceExhausted, match="rate limit") as info:
            await client.call("Rate.Wait", 0)
        assert out == ["ok", "ok"]
        ms = pushback_ms(info.value)
        assert ms is not None and 1 <= ms <= 200
    finally:
        await client.close()
        await server.close()
    with pytest.raises(ValueError, match="max_concurrent, rate or adaptive"):
        MethodLimit()


class Saturating:
    """A backend that completes ``capacity`` calls at a time: latency grows with queueing."""

    def __init__(self, capacity: int) -> None:
        self.gate = asyncio.Semaphore(capacity)

    @wirecall.method
    async def Work(self) -> str:
        async with self.gate:
            await asyncio.sleep(0.005)
        return "ok"


async def test_adaptive_concurrency_limit_settles_near_capacity() -> None:
    from wirecall.cluster.limits import AdaptiveConcurrency

    adaptive = AdaptiveConcurrency(initial=20, window=20)
    rule = MethodLimit(adaptive=adaptive, pushback_ms=1)
    server = wirecall.Server(interceptors=[method_limits({"Sat.Work": rule})])
    server.register(Saturating(4), name="Sat")
    (url,) = await server.start("tcp://127.0.0.1:0")
    client = await wirecall.connect(url)
    limits: list[float] = []
    try:
        async def worker() -> None:
            for _ in range(60):
                try:
                    await client.call("Sat.Work")
                except wirecall.ResourceExhausted:
                    await asyncio.sleep(0.002)
                limits.append(adaptive.limit)
        await asyncio.gather(*(worker() for _ in range(48)))
        late = statistics.median(limits[-500:])
        print(f"adaptive limit: start 20, settled ~{late:.1f} (capacity 4, 48 callers), "
              f"refused {rule.refused}")
        assert rule.refused > 0
        assert 2 <= late <= 24   # well below the 48 offered (capacity 4; the machine is shared)
    finally:
        await client.close()
        await server.close()
    with pytest.raises(ValueError, match="tolerance"):
        AdaptiveConcurrency(tolerance=1.0)


def test_adaptive_limit_grows_only_when_used() -> None:
    """Fast calls grow the limit only in windows whose peak in flight reached half of it (a
    client starved of CPU once let it run to ~100 with 4 of capacity)."""
    from wirecall.cluster.limits import AdaptiveConcurrency

    idle = AdaptiveConcurrency(initial=20, window=10)
    busy = AdaptiveConcurrency(initial=20, window=10)
    for _ in range(100):
        idle.sample(0.005, inflight=3)
        busy.sample(0.005, inflight=int(busy.limit))
    assert idle.limit == 20
    assert busy.limit > 40
    for _ in range(30):  # slow calls still shrink a limit nobody reaches
        idle.sample(0.05, inflight=3)
    assert idle.limit < 20


class Pushy:
    def __init__(self) -> None:
        self.calls = 0

    @wirecall.method
    async def Stop(self) -> str:
        self.calls += 1
        raise wirecall.ResourceExhausted(message="go away", details={"wirecall-pushback-ms": -1})


async def test_client_obeys_pushback() -> None:
    from wirecall.cluster.client import ClusterClient

    rule = MethodLimit(rate=20, burst=1)
    server = wirecall.Server(interceptors=[method_limits({"Slow.Wait": rule})])
    server.register(Slow(), name="Slow")
    pushy = Pushy()
    server.register(pushy, name="Pushy")
    (url,) = await server.start("tcp://127.0.0.1:0")
    idem = MethodPolicy(idempotent=True, retry=RetryPolicy(max_attempts=5))
    client = ClusterClient(f"static://{url}", policies={"*": idem}, throttle=False)
    try:
        await client.connect()
        t0 = asyncio.get_running_loop().time()
        got = [await client.call("Slow.Wait", 0) for _ in range(4)]
        took = asyncio.get_running_loop().time() - t0
        assert got == ["ok"] * 4  # refused at first, retried after the server's pushback
        assert rule.refused >= 1 and client.events.counters["pushback"] >= 1
        assert took >= 0.1  # 4 calls at 20/s with a burst of 1 take >= 3 token periods
        with pytest.raises(wirecall.ResourceExhausted, match="go away"):
            await client.call("Pushy.Stop")
        assert pushy.calls == 1  # pushback < 0: not retried
    finally:
        await client.close()
        await server.close()


def test_adaptive_floor_rises_by_steps_when_relearnt() -> None:
    """A relearn window in which every call queued must not make queueing the new floor (the
    limit would then ratchet up towards the offered load)."""
    from wirecall.cluster.limits import AdaptiveConcurrency

    a = AdaptiveConcurrency(initial=20, window=10, relearn=2)
    for _ in range(10):
        a.sample(0.005)  # window 1: calls that did not queue, 5 ms
    grown = a.limit
    for _ in range(10):
        a.sample(0.050)  # window 2 (a relearn): every call queued behind others
    assert a.best <= 0.005 * 1.5 + 1e-12
    assert a.limit < grown  # 50 ms is over tolerance x floor: the limit shrank


@pytest.mark.parametrize("scheme", ["gob", "jsonrpc"])
async def test_go_wires_carry_no_pushback_the_breaker_takes_over(scheme: str) -> None:
    """Go's gob and JSON-RPC 1.0 wires carry an error text only: a server's refusal arrives
    as UNKNOWN without pushback, and the endpoint's breaker (5 failures in a row) takes it
    out of rotation instead (docs/cluster.md, Pushback)."""
    from support.cluster_nodes import Node, static_target
    from wirecall.cluster.client import ClusterClient

    servers, urls = [], []
    for i, limits in enumerate(({"Node.Who": MethodLimit(rate=0.01, burst=1)}, {})):
        s = wirecall.Server(interceptors=[method_limits(limits)] if limits else [])
        s.register(Node(f"n{i}"), name="Node")
        urls += await s.start(f"{scheme}://127.0.0.1:0")
        servers.append(s)
    client = ClusterClient(static_target(urls), balancer="round_robin", outlier=None,
                           throttle=False)
    try:
        await client.connect()
        answers: list[str] = []
        errors: list[wirecall.RpcError] = []
        for _ in range(24):
            try:
                answers.append(await client.call("Node.Who"))
            except wirecall.RpcError as exc:
                errors.append(exc)
        assert len(errors) == 5  # then n0's breaker is open
        assert all(e.status == wirecall.Status.UNKNOWN and "rate limit" in e.message
                   and pushback_ms(e) is None for e in errors)
        assert [(e.endpoint, e.detail) for e in client.events.recent(kind="breaker")] == [
            (urls[0], "closed->open")]
        assert client.events.counters["pushback"] == 0
        assert answers[-8:] == ["n1"] * 8
    finally:
        await client.close()
        for s in servers:
            await s.close()
