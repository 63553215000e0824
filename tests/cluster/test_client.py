"""The cluster client on real loopback servers (in process): every wire, the sync client,
retries for idempotent methods only, a total outage (budget, breaker open -> half-open ->
closed), hedging, zone locality, outlier ejection, stub policies, pushback, CLI listing."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections import Counter
from typing import Any

import pytest

import wirecall
import wirecall.sync
from support.cluster_nodes import Node, all_ready, start_nodes, static_target
from support.faultproxy import FaultProxy
from wirecall.cluster.client import ClusterClient
from wirecall.cluster.entry import Entry
from wirecall.cluster.outlier import OutlierPolicy
from wirecall.cluster.policy import HedgePolicy, MethodPolicy, RetryPolicy, policy

IDEMPOTENT = MethodPolicy(idempotent=True, retry=RetryPolicy(max_attempts=3))


async def close_all(servers: list[wirecall.Server], *clients: Any) -> None:
    for c in clients:
        await c.close()
    for s in servers:
        await s.close()


@pytest.mark.parametrize("scheme", ["tcp", "unix", "gob", "jsonrpc", "http", "ws", "grpc"])
async def test_every_wire_spreads_over_the_endpoints(scheme: str) -> None:
    servers, _, urls = [], [], []
    for i in range(3):
        s = wirecall.Server()
        s.register(Node(f"n{i}"), name="Node")
        addr = (f"unix://{tempfile.mktemp(prefix='wc-')}" if scheme == "unix"
                else f"{scheme}://127.0.0.1:0" + ("/rpc" if scheme == "http" else ""))
        urls += await s.start(addr)
        servers.append(s)
    client = await wirecall.connect(static_target(urls))
    try:
        assert isinstance(client, ClusterClient)
        await all_ready(client)
        got = Counter(await asyncio.gather(*(client.call("Node.Work", 1.0, timeout=20)
                                             for _ in range(60))))
        assert set(got) == {"n0", "n1", "n2"}
        assert {row["state"] for row in client.endpoints()} == {"ok"}
    finally:
        await close_all(servers, client)


async def test_sync_client_takes_a_cluster_target() -> None:
    servers, _, urls = await start_nodes(2)
    target = static_target(urls)

    def calls() -> Counter[str]:
        with wirecall.sync.connect(target, balancer="round_robin") as c:
            return Counter(c.call("Node.Who") for _ in range(10))
    try:
        got = await asyncio.to_thread(calls)
        assert set(got) == {"n0", "n1"} and sum(got.values()) == 10
    finally:
        await close_all(servers)


async def test_retries_only_for_idempotent_methods() -> None:
    servers, nodes, urls = await start_nodes(3)
    nodes[1].failing = "UNAVAILABLE"
    client = ClusterClient(static_target(urls), balancer="round_robin", outlier=None,
                           policies={"Node.Work": IDEMPOTENT})
    plain = ClusterClient(static_target(urls), balancer="round_robin", outlier=None)
    try:
        await client.connect()
        await plain.connect()
        ok = await asyncio.gather(*(client.call("Node.Work", 0.0) for _ in range(60)))
        assert "n1" not in ok and len(ok) == 60
        assert client.events.counters["retry"] >= 1
        res = await asyncio.gather(*(plain.call("Node.Work", 0.0) for _ in range(30)),
                                   return_exceptions=True)
        failed = [r for r in res if isinstance(r, wirecall.Unavailable)]
        assert failed and "n1 is failing" in failed[0].message  # not retried
        assert plain.events.counters["retry"] == 0
    finally:
        await close_all(servers, client, plain)


async def outage_run(client: ClusterClient, nodes: list[Node], calls: int = 600) -> float:
    await client.connect()
    for _ in range(calls // 20):
        await asyncio.gather(*(client.call("Node.Work", 0.0) for _ in range(20)),
                             return_exceptions=True)
    attempts = sum(n.calls for n in nodes)
    print(f"total outage: {calls} calls -> {attempts} server attempts "
          f"({attempts / calls:.3f}x); events {dict(client.events.counters)}")
    return attempts / calls


@pytest.mark.parametrize("guard", ["budget", "budget+breaker", "budget+breaker+throttle"])
async def test_total_outage_amplification(guard: str) -> None:
    """Every server answers UNAVAILABLE; idempotent calls with 3 attempts each: the retry
    budget alone holds the load at <= 1.1x, breakers and throttling cut it further."""
    servers, nodes, urls = await start_nodes(3)
    for n in nodes:
        n.failing = "UNAVAILABLE"
    client = ClusterClient(
        static_target(urls), policies={"Node.Work": IDEMPOTENT}, outlier=None,
        breaker={"consecutive_failures": 5 if "breaker" in guard else 10**9,
                 "failure_ratio": None},
        throttle="throttle" in guard)
    try:
        amplification = await outage_run(client, nodes)
        assert amplification <= 1.1
        if guard == "budget":
            assert client.events.counters["retry_throttled"] > 0
        if "breaker" in guard:
            assert client.events.counters["breaker"] == 3  # each endpoint opened
            assert amplification < 0.5
        if "throttle" in guard:
            assert client.events.counters["throttled"] > 0
    finally:
        await close_all(servers, client)


async def test_breaker_opens_half_opens_and_closes() -> None:
    servers, nodes, urls = await start_nodes(3)
    for n in nodes:
        n.failing = "UNAVAILABLE"
    client = ClusterClient(static_target(urls), policies={"Node.Work": IDEMPOTENT},
                           breaker={"consecutive_failures": 5, "open_for": 0.3},
                           outlier=None, throttle=False, balancer="round_robin")
    try:
        await outage_run(client, nodes, 100)
        assert [e.detail for e in client.events.recent(kind="breaker")] == ["closed->open"] * 3
        with pytest.raises(wirecall.Unavailable, match="no usable endpoint"):
            await client.call("Node.Work", 0.0)  # all open: refused locally, at once
        for n in nodes:
            n.failing = None
        await asyncio.sleep(0.35)
        assert [await client.call("Node.Work", 0.0) for _ in range(10)]
        transitions = [e.detail for e in client.events.recent(kind="breaker")]
        assert transitions.count("open->half-open") == 3
        assert transitions.count("half-open->closed") == 3
        assert {row["breaker"] for row in client.endpoints()} == {"closed"}
    finally:
        await close_all(servers, client)


async def test_hedging_cuts_the_tail_of_a_slow_endpoint() -> None:
    """Round robin over three endpoints, one of them 3 s slow. Without hedging its calls wait
    for it (it answers its share); with a 10 ms hedge every call it was given is answered by
    a fast endpoint first and its attempt is cancelled on the server. Counts, not latencies:
    the slow node is far slower than any stall of a loaded machine."""
    servers, nodes, urls = await start_nodes(3)
    nodes[2].delay = 3.0
    target = static_target(urls)
    plain = ClusterClient(target, balancer="round_robin", outlier=None)
    hedged = ClusterClient(target, balancer="round_robin", outlier=None, policies={
        "Node.Work": MethodPolicy(idempotent=True, hedge=HedgePolicy(delay=0.01))})
    try:
        await plain.connect()
        await all_ready(plain)
        got = Counter(await asyncio.gather(*(plain.call("Node.Work", 1.0, timeout=30)
                                             for _ in range(6))))
        assert got == {"n0": 2, "n1": 2, "n2": 2}  # no hedge: the slow node's calls wait
        await hedged.connect()
        await all_ready(hedged)
        before = nodes[2].calls
        t0 = time.perf_counter()
        answers = Counter([await hedged.call("Node.Work", 1.0, timeout=30) for _ in range(30)])
        took = time.perf_counter() - t0
        tried_slow = nodes[2].calls - before
        print(f"hedging: 30 calls in {took:.2f}s, answered by {dict(answers)}; the slow node "
              f"was tried {tried_slow} times; hedges {hedged.events.counters['hedge']}")
        assert "n2" not in answers, answers  # never waited for the slow node
        assert tried_slow >= 5  # round robin kept giving it calls: the hedges answered them
        assert hedged.events.counters["hedge"] >= tried_slow
        deadline = time.monotonic() + 20  # the losers' cancellations reach the server
        while nodes[2].cancelled < tried_slow:
            assert time.monotonic() < deadline, (nodes[2].cancelled, tried_slow)
            await asyncio.sleep(0.01)
    finally:
        await close_all(servers, plain, hedged)


async def test_zone_locality_with_spill_over() -> None:
    servers, nodes, urls = await start_nodes(3)
    client = ClusterClient("static://x:1", zone="a", outlier=None)
    client.apply([Entry(id=f"e{i}", addrs={"tcp": u}, zone="a" if i == 0 else "b")
                  for i, u in enumerate(urls)])
    try:
        got = Counter(await asyncio.gather(*(client.call("Node.Who") for _ in range(30))))
        assert got == {"n0": 30}
        nodes[0].failing = "UNAVAILABLE"
        await servers[0].close()  # the local zone goes away: spill over to zone b
        res = await asyncio.gather(*(client.call("Node.Who") for _ in range(30)),
                                   return_exceptions=True)
        late = Counter(r for r in res if isinstance(r, str))
        assert set(late) <= {"n1", "n2"} and sum(late.values()) >= 25
    finally:
        await close_all(servers[1:], client)


async def test_consecutive_failures_eject_an_endpoint_and_it_comes_back() -> None:
    servers, nodes, urls = await start_nodes(3)
    nodes[0].failing = "INTERNAL"
    client = ClusterClient(static_target(urls), balancer="round_robin",
                           outlier=OutlierPolicy(consecutive_failures=3, base_ejection=1.0),
                           breaker={"consecutive_failures": 100})
    try:
        await client.connect()
        for _ in range(30):
            with contextlib.suppress(wirecall.RpcError):
                await client.call("Node.Work", 0.0)
        assert client.events.counters["ejected"] == 1
        states = {row["url"]: row["state"] for row in client.endpoints()}
        assert states[urls[0]] == "ejected"
        before = nodes[0].calls
        for _ in range(20):
            await client.call("Node.Who")
        assert nodes[0].calls == before  # no traffic while ejected
        nodes[0].failing = None
        deadline = time.monotonic() + 5
        while client.endpoints()[0]["state"] == "ejected" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        got = Counter([await client.call("Node.Who") for _ in range(30)])
        assert got["n0"] > 0
        while not client.events.counters["uneject"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the periodic sweep reports it
        assert client.events.counters["uneject"] == 1
    finally:
        await close_all(servers, client)


async def test_outlier_never_ejects_more_than_the_share() -> None:
    servers, nodes, urls = await start_nodes(4)
    for n in nodes:
        n.failing = "INTERNAL"
    client = ClusterClient(static_target(urls), outlier=OutlierPolicy(
        consecutive_failures=2, max_ejected_share=0.5), breaker={"consecutive_failures": 1000})
    try:
        await client.connect()
        await asyncio.gather(*(client.call("Node.Work", 0.0) for _ in range(100)),
                             return_exceptions=True)
        ejected = [r for r in client.endpoints() if r["state"] == "ejected"]
        assert len(ejected) == 2
    finally:
        await close_all(servers, client)


class NodeAPI:
    @policy(idempotent=True, retry=RetryPolicy(max_attempts=4))
    async def Work(self, ms: float) -> str: ...


async def test_stub_methods_carry_their_policy() -> None:
    servers, nodes, urls = await start_nodes(2)
    nodes[0].failing = "UNAVAILABLE"
    client = ClusterClient(static_target(urls), outlier=None, balancer="round_robin")
    try:
        await client.connect()
        stub = client.stub(NodeAPI, "Node")
        assert client.policy_for("Node.Work").retry == RetryPolicy(max_attempts=4)
        assert [await stub.Work(0.0) for _ in range(10)] == ["n1"] * 10
    finally:
        await close_all(servers, client)


async def test_connection_resets_are_retried_for_idempotent_calls() -> None:
    servers, _, urls = await start_nodes(2)
    port = int(urls[0].rsplit(":", 1)[1])
    proxy = await FaultProxy.start("127.0.0.1", port)
    target = static_target([f"tcp://{proxy.addr}", urls[1]])
    client = ClusterClient(target, policies={"Node.Work": IDEMPOTENT})
    try:
        await client.connect()
        load = [asyncio.ensure_future(client.call("Node.Work", 20.0)) for _ in range(40)]
        await asyncio.sleep(0.01)
        proxy.mode = "reset"
        proxy.reset_all()
        res = await asyncio.gather(*load, return_exceptions=True)
        assert all(r in ("n0", "n1") for r in res), [r for r in res if not isinstance(r, str)]
    finally:
        await proxy.close()
        await close_all(servers, client)


async def test_cli_lists_endpoints(capsys: pytest.CaptureFixture[str]) -> None:
    from wirecall.cli import main

    servers, _, urls = await start_nodes(2)
    try:
        rc = await asyncio.to_thread(main, ["cluster", "endpoints", static_target(urls),
                                            "--probe", "1"])
        out = capsys.readouterr().out
        assert rc == 0
        assert "URL" in out and urls[0] in out and urls[1] in out and " ok " in out
        rc = await asyncio.to_thread(main, ["cluster", "endpoints", "static://a:1?bogus=1"])
        assert rc != 0 and "bogus" in capsys.readouterr().err
    finally:
        await close_all(servers)


async def test_sync_stub_methods_carry_their_policy() -> None:
    servers, nodes, urls = await start_nodes(2)
    nodes[0].failing = "UNAVAILABLE"

    def calls() -> list[str]:
        with wirecall.sync.connect(static_target(urls), balancer="round_robin",
                                   outlier=None) as c:
            stub = c.stub(NodeAPI, "Node")
            return [stub.Work(0.0) for _ in range(6)]
    try:
        assert await asyncio.to_thread(calls) == ["n1"] * 6  # retried on n1
    finally:
        await close_all(servers)


async def test_streams_go_interceptors_metadata_and_hash_keys() -> None:
    from support.services import Calc

    servers: list[wirecall.Server] = []
    urls: list[str] = []
    for i in range(3):
        s = wirecall.Server()
        s.register(Calc())
        s.register(Node(f"n{i}"), name="Node")
        urls += await s.start("tcp://127.0.0.1:0")
        servers.append(s)
    seen: list[str] = []

    async def icpt(call: Any, proceed: Any) -> Any:
        seen.append(call.method)
        return await proceed(call)

    client = await wirecall.connect(static_target(urls), balancer="ring_hash",
                                    interceptors=[icpt], metadata={"app": "t"})
    try:
        assert [x async for x in client.stream("Calc.Count", [4])] == [0, 1, 2, 3]
        assert await client.go("Calc.Add", 2, 3) == 5
        assert seen == ["Calc.Add"]  # unary calls pass the client's interceptors
        # the same hash key lands on the same endpoint; different keys spread
        by_key = {k: {await client.call("Node.Who", metadata={"wirecall-hash-key": k})
                      for _ in range(5)} for k in ("alice", "bob", "carol", "dave", "erin")}
        assert all(len(v) == 1 for v in by_key.values())
        assert len({next(iter(v)) for v in by_key.values()}) >= 2
    finally:
        await close_all(servers, client)


async def test_a_latency_outlier_is_ejected() -> None:
    servers, nodes, urls = await start_nodes(4)
    nodes[3].delay = 0.06
    client = ClusterClient(static_target(urls), balancer="round_robin",
                           outlier=OutlierPolicy(latency_factor=5.0, min_latency=0.02,
                                                 base_ejection=5.0))
    try:
        await client.connect()
        for _ in range(10):
            await asyncio.gather(*(client.call("Node.Work", 1.0) for _ in range(8)))
        deadline = time.monotonic() + 3
        while not client.events.counters["ejected"] and time.monotonic() < deadline:
            await client.call("Node.Work", 1.0)
        ejected = client.events.recent(kind="ejected")
        assert [e.endpoint for e in ejected] == [urls[3]]
        assert "latency" in ejected[0].detail
        before = nodes[3].calls
        await asyncio.gather(*(client.call("Node.Work", 1.0) for _ in range(30)))
        assert nodes[3].calls == before
    finally:
        await close_all(servers, client)


class Gauge:
    def __init__(self) -> None:
        self.now = self.peak = 0

    @wirecall.method
    async def Hold(self, ms: float) -> int:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(ms / 1000)
        finally:
            self.now -= 1
        return self.peak


async def test_inline_path_keeps_hash_keys_and_the_in_flight_limit() -> None:
    """The inline (fast) call path honours a hash key given in the call's metadata and the
    per-connection ``max_in_flight`` queueing, as the full path does."""
    servers, _, urls = await start_nodes(3)
    gauge = Gauge()
    servers[0].register(gauge, name="Gauge")
    client = await wirecall.connect(static_target(urls), balancer="ring_hash")
    one = await wirecall.connect(static_target(urls[:1]), max_in_flight=2)
    try:
        await all_ready(client)
        by_key = {k: {await client.call("Node.Who", metadata={"wirecall-hash-key": k})
                      for _ in range(6)} for k in ("alice", "bob", "carol", "dave", "erin")}
        assert all(len(v) == 1 for v in by_key.values()), by_key
        assert len({next(iter(v)) for v in by_key.values()}) >= 2
        await asyncio.gather(*(one.call("Gauge.Hold", 30.0) for _ in range(8)))
        assert gauge.peak == 2
    finally:
        await close_all(servers, client, one)
