"""Streams on a cluster are retried as gRPC's A6 design says (``wirecall.cluster.streams``):
while not committed (no response message yet, the requests still buffered) a failed attempt
is replaced on another endpoint, replaying the requests; once committed, errors reach the
caller. Real servers (in process, tcp:// and grpc://); the first endpoint fails or closes its
connection before answering."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any

import pytest

import wirecall
import wirecall.sync
from support.cluster_nodes import static_target
from support.faultproxy import FaultProxy
from wirecall import method
from wirecall.cluster.client import ClusterClient
from wirecall.cluster.policy import HedgePolicy, MethodPolicy, RetryPolicy

RETRY = MethodPolicy(idempotent=True, retry=RetryPolicy(max_attempts=3))


class Plan:
    """Shared by every server of a test: the next ``fail`` stream calls (on whichever node
    they land) fail with UNAVAILABLE (``how="fail"``), after their first reply
    (``"after_first"``) or by resetting the connection (``"reset"``: the node behind a proxy
    in ``proxies``)."""

    def __init__(self, fail: int = 1, how: str = "fail") -> None:
        self.fail, self.how = fail, how
        self.opened: list[str] = []
        self.cancelled = 0
        self.proxies: dict[str, FaultProxy] = {}

    def misbehave(self, node: str, stage: str) -> None:
        if self.fail <= 0 or stage != ("after_first" if self.how == "after_first" else "before"):
            return
        if self.how == "reset" and node not in self.proxies:
            return  # only the node behind the proxy can reset its connection
        self.fail -= 1
        if self.how == "reset":
            proxy = self.proxies[node]
            proxy.mode = "reset"
            proxy.reset_all()
            return
        raise wirecall.RpcError(wirecall.Status.UNAVAILABLE, f"{node} is failing")


class Streams:
    def __init__(self, name: str, plan: Plan) -> None:
        self.name, self.plan = name, plan

    @method
    async def Count(self, n: int) -> AsyncIterator[str]:  # server stream
        self.plan.opened.append(self.name)
        self.plan.misbehave(self.name, "before")
        for i in range(n):
            yield f"{self.name}:{i}"
            self.plan.misbehave(self.name, "after_first")

    @method
    async def Sum(self, nums: AsyncIterator[int]) -> str:  # client stream
        self.plan.opened.append(self.name)
        total = 0
        try:
            async for x in nums:
                total += x
        except asyncio.CancelledError:
            self.plan.cancelled += 1
            raise
        self.plan.misbehave(self.name, "before")  # every request read, no answer yet
        return f"{self.name}:{total}"

    @method
    async def Echo(self, nums: AsyncIterator[int]) -> AsyncIterator[str]:  # bidi
        self.plan.opened.append(self.name)
        seen = []
        async for x in nums:
            seen.append(x)
            if len(seen) == 3:
                self.plan.misbehave(self.name, "before")
                for y in seen:
                    yield f"{self.name}:{y}"
                    self.plan.misbehave(self.name, "after_first")
            elif len(seen) > 3:
                yield f"{self.name}:{x}"


async def cluster(plan: Plan, scheme: str = "tcp", proxy_first: bool = False,
                  **options: Any) -> tuple[list[wirecall.Server], ClusterClient]:
    servers, urls = [], []
    for i in range(2):
        s = wirecall.Server()
        s.register(Streams(f"n{i}", plan), name="S")
        url = (await s.start(f"{scheme}://127.0.0.1:0"))[0]
        if proxy_first and i == 0:
            proxy = await FaultProxy.start("127.0.0.1", int(url.rsplit(":", 1)[1]))
            plan.proxies["n0"] = proxy
            url = f"{scheme}://{proxy.addr}"
        urls.append(url)
        servers.append(s)
    options.setdefault("policies", {"S.*": RETRY})
    client = ClusterClient(static_target(urls), balancer="round_robin", outlier=None,
                           **options)
    await client.connect()
    return servers, client


async def shutdown(servers: list[wirecall.Server], client: ClusterClient, plan: Plan) -> None:
    await client.close()
    for s in servers:
        await s.close()
    for p in plan.proxies.values():
        await p.close()


def names(items: list[str]) -> set[str]:
    return {x.split(":")[0] for x in items}


@pytest.mark.parametrize("scheme", ["tcp", "grpc"])
async def test_server_stream_is_retried_before_its_first_message(scheme: str) -> None:
    plan = Plan(fail=1)
    servers, client = await cluster(plan, scheme)
    try:
        got = [x async for x in client.stream("S.Count", [4])]
        assert len(plan.opened) == 2 and plan.opened[0] != plan.opened[1]
        assert got == [f"{plan.opened[1]}:{i}" for i in range(4)]
        assert client.events.counters["retry"] == 1
        plan.fail = 1  # the blocking facade runs the same stream
        def sync_count() -> list[str]:
            with wirecall.sync.connect(client.target, balancer="round_robin", outlier=None,
                                       policies={"S.*": RETRY}) as c:
                return list(c.stream("S.Count", [3]))
        got = await asyncio.to_thread(sync_count)
        assert len(got) == 3 and len(names(got)) == 1 and len(plan.opened) == 4
        # not idempotent: the failure is the caller's
        plan.fail = 1
        client.set_policy("S.*", MethodPolicy())
        with pytest.raises(wirecall.RpcError) as err:
            _ = [x async for x in client.stream("S.Count", [4])]
        assert err.value.status == wirecall.Status.UNAVAILABLE and len(plan.opened) == 5
    finally:
        await shutdown(servers, client, plan)


async def test_committed_stream_errors_go_to_the_caller() -> None:
    plan = Plan(fail=1, how="after_first")
    servers, client = await cluster(plan)
    try:
        got = []
        with pytest.raises(wirecall.RpcError) as err:
            async for x in client.stream("S.Count", [4]):
                got.append(x)
        assert err.value.status == wirecall.Status.UNAVAILABLE
        assert got == [f"{plan.opened[0]}:0"] and len(plan.opened) == 1  # no second attempt
        assert client.events.counters["retry"] == 0
    finally:
        await shutdown(servers, client, plan)


async def test_client_stream_replays_its_requests_on_another_endpoint() -> None:
    plan = Plan(fail=1)
    servers, client = await cluster(plan)
    try:
        st = client.stream("S.Sum")
        for x in range(10):
            await st.send(x)
        await st.done_writing()
        assert await st.result() == f"{plan.opened[1]}:45"  # every request, then the end
        assert len(plan.opened) == 2 and plan.opened[0] != plan.opened[1]
        plan.fail = 1  # requests from an iterator (sent in the background)
        res = await client.stream("S.Sum", iter(range(5))).result()
        assert res == f"{plan.opened[3]}:10" and plan.opened[2] != plan.opened[3]
        plan.fail = 2  # a hedging policy replaces a failed attempt at once, up to its max
        client.set_policy("S.*", MethodPolicy(idempotent=True, hedge=HedgePolicy(max_attempts=2)))
        with pytest.raises(wirecall.RpcError):
            await client.stream("S.Sum", iter(range(5))).result()
        assert len(plan.opened) == 6 and client.events.counters["retry"] == 3
    finally:
        await shutdown(servers, client, plan)


async def test_client_stream_past_the_buffer_commits() -> None:
    plan = Plan(fail=1)
    servers, client = await cluster(plan, stream_buffer=4)
    try:
        st = client.stream("S.Sum")
        for x in range(10):  # the 5th request cannot be kept: the call commits
            await st.send(x)
        await st.done_writing()
        with pytest.raises(wirecall.RpcError) as err:
            await st.result()
        assert err.value.status == wirecall.Status.UNAVAILABLE and len(plan.opened) == 1
        # within the bound it is retried
        assert await client.stream("S.Sum", iter(range(4))).result() in ("n0:6", "n1:6")
    finally:
        await shutdown(servers, client, plan)


@pytest.mark.parametrize("scheme", ["tcp", "grpc"])
async def test_bidi_stream_survives_an_endpoint_closing_before_it_answers(scheme: str) -> None:
    plan = Plan(fail=1, how="reset")
    servers, client = await cluster(plan, scheme, proxy_first=True)
    try:
        for _ in range(8):  # round robin: until a call starts on n0 (behind the proxy)
            st = client.stream("S.Echo")
            for x in (1, 2, 3):
                await st.send(x)
            first = await st.recv()  # n0 resets its connection when it has read 3
            await st.send(4)
            await st.done_writing()
            rest = [x async for x in st]
            assert [first, *rest] == [f"n1:{x}" for x in (1, 2, 3, 4)]
            if plan.fail == 0:
                break
        assert plan.fail == 0 and plan.opened.count("n0") == 1
        assert client.events.counters["retry"] == 1
        plan.proxies["n0"].mode = "pass"
        # an error after the first answer: committed, the caller sees it
        plan.fail, plan.how = 1, "after_first"
        got: list[str] = []
        with pytest.raises(wirecall.RpcError) as err:
            async for x in client.stream("S.Echo", iter([1, 2, 3])):
                got.append(x)
        assert err.value.status == wirecall.Status.UNAVAILABLE and len(got) == 1
        assert client.events.counters["retry"] == 1
    finally:
        await shutdown(servers, client, plan)


async def test_a_dropped_stream_is_cancelled_while_its_sender_waits() -> None:
    plan = Plan(fail=0)
    servers, client = await cluster(plan)
    stall = asyncio.Event()

    async def requests() -> AsyncIterator[int]:
        yield 1
        await stall.wait()  # never set: the sender waits here for ever
        yield 2

    try:
        st = client.stream("S.Sum", requests())
        await st  # opened
        writer = st._writer
        assert writer is not None
        while len(plan.opened) < 1:
            await asyncio.sleep(0.01)
        del st  # dropped unfinished: collected, the call cancelled on the wire
        gc.collect()
        for _ in range(500):
            if plan.cancelled and writer.done():
                break
            await asyncio.sleep(0.01)
        assert plan.cancelled == 1 and writer.cancelled()
    finally:
        stall.set()
        await shutdown(servers, client, plan)


async def test_a_stream_that_answers_then_breaks_counts_against_the_breaker() -> None:
    plan = Plan(fail=100, how="after_first")
    servers, client = await cluster(plan, breaker={"open_for": 0.3})
    try:
        for _ in range(10):  # round robin: 5 on each endpoint, each one reply then UNAVAILABLE
            got = []
            with pytest.raises(wirecall.RpcError):
                async for x in client.stream("S.Count", [3]):
                    got.append(x)
            assert len(got) == 1
        assert [row["state"] for row in client.endpoints()] == ["breaker-open"] * 2
        assert client.events.counters["breaker"] == 2
        await asyncio.sleep(0.35)
        plan.fail = 0
        st = client.stream("S.Count", [3])
        first = await st.recv()  # a half-open probe: its first answer closes the breaker
        states = {row["url"]: row["state"] for row in client.endpoints()}
        assert states[st.endpoint] == "ok"
        assert [first, *[x async for x in st]] == [f"{first[:2]}:{i}" for i in range(3)]
    finally:
        await shutdown(servers, client, plan)
