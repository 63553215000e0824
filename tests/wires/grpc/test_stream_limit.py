"""The wirecall gRPC client honours the server's SETTINGS_MAX_CONCURRENT_STREAMS: calls over
the limit wait in a FIFO queue for a free stream (as grpc-go and grpcio do) instead of losing
the connection; a queued call keeps its deadline and can be cancelled without sending anything.
Servers: grpcio (``grpc.max_concurrent_streams``) and wirecall (``max_concurrent_streams``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import msgspec
import pytest

from wirecall import Cancelled, DeadlineExceeded, Server
from wirecall.transport import grpc as tg
from wirecall.transport.base import parse_url

pytestmark = pytest.mark.timeout(30)

LIMIT = 4
SLEEP = 0.05
_enc = msgspec.msgpack.encode
_dec = msgspec.msgpack.decode


class Gauge:
    """How many handlers run at once (and the most ever), and which requests arrived."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.seen: list[int] = []

    def enter(self, n: int) -> None:
        self.seen.append(n)
        self.now += 1
        self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        self.now -= 1


# -- the same two methods on grpcio and on wirecall ---------------------------------------------


async def start_grpcio(g: Gauge) -> tuple[Any, str]:
    async def slow(req: list[int], ctx: Any) -> int:
        n = req[0]
        g.enter(n)
        try:
            await asyncio.sleep(SLEEP)
        finally:
            g.leave()
        return n

    async def ticks(req: list[int], ctx: Any) -> AsyncIterator[int]:
        n = req[0]
        g.enter(n)
        try:
            for i in range(3):
                await asyncio.sleep(SLEEP / 3)
                yield n * 10 + i
        finally:
            g.leave()

    kw = {"request_deserializer": _dec, "response_serializer": _enc}
    handlers = {
        "Slow": grpc.unary_unary_rpc_method_handler(slow, **kw),
        "Ticks": grpc.unary_stream_rpc_method_handler(ticks, **kw),
    }
    server = grpc.aio.server(options=[("grpc.max_concurrent_streams", LIMIT)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("Lim", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"grpc://127.0.0.1:{port}"


class Lim:
    def __init__(self, g: Gauge) -> None:
        self.g = g

    async def Slow(self, n: int) -> int:
        self.g.enter(n)
        try:
            await asyncio.sleep(SLEEP)
        finally:
            self.g.leave()
        return n

    async def Ticks(self, n: int) -> AsyncIterator[int]:
        self.g.enter(n)
        try:
            for i in range(3):
                await asyncio.sleep(SLEEP / 3)
                yield n * 10 + i
        finally:
            self.g.leave()


@pytest.fixture(params=["grpcio", "wirecall"])
async def target(request: Any) -> AsyncIterator[tuple[Gauge, tg.GrpcClientConnection]]:
    g = Gauge()
    stop: Callable[[], Awaitable[Any]]
    if request.param == "grpcio":
        gserver, url = await start_grpcio(g)
        stop = lambda: gserver.stop(0)  # noqa: E731
    else:
        server = Server()
        server.register(Lim(g), name="Lim")
        [url] = await server.start("grpc://127.0.0.1:0", max_concurrent_streams=LIMIT)
        stop = lambda: server.close(drain_timeout=1)  # noqa: E731
    conn = await tg.connect(parse_url(url))
    try:
        yield g, conn
    finally:
        await conn.aclose()
        await stop()


# -- tests ----------------------------------------------------------------------------------------


async def test_unary_calls_wait_for_a_free_stream(
    target: tuple[Gauge, tg.GrpcClientConnection],
) -> None:
    g, conn = target
    calls = [conn.call("Lim.Slow", [i], 10, None, int) for i in range(40)]
    assert await asyncio.wait_for(asyncio.gather(*calls), 20) == list(range(40))
    assert sorted(g.seen) == list(range(40))
    assert 1 <= g.peak <= LIMIT
    assert conn.pending == 0 and not conn.closed
    assert await conn.call("Lim.Slow", [99], 5, None, int) == 99  # the connection is still fine


async def test_pending_counts_queued_calls(
    target: tuple[Gauge, tg.GrpcClientConnection],
) -> None:
    g, conn = target
    await conn.call("Lim.Slow", [0], 5, None, int)  # the server's SETTINGS are in
    tasks = [asyncio.ensure_future(conn.call("Lim.Slow", [i], 10, None, int))
             for i in range(12)]
    await asyncio.sleep(0)  # every call has either opened its stream or queued
    assert conn.pending == 12
    assert await asyncio.wait_for(asyncio.gather(*tasks), 20) == list(range(12))
    assert conn.pending == 0 and g.peak <= LIMIT


async def test_server_streams_wait_for_a_free_stream(
    target: tuple[Gauge, tg.GrpcClientConnection],
) -> None:
    g, conn = target

    async def collect(n: int) -> list[int]:
        return [x async for x in conn.open_stream("Lim.Ticks", [n], 10, None, int)]

    got = await asyncio.wait_for(asyncio.gather(*(collect(i) for i in range(20))), 20)
    assert got == [[10 * i, 10 * i + 1, 10 * i + 2] for i in range(20)]
    assert 1 <= g.peak <= LIMIT
    assert sorted(g.seen) == list(range(20))
    assert conn.pending == 0


async def test_queued_call_deadline(target: tuple[Gauge, tg.GrpcClientConnection]) -> None:
    g, conn = target
    slow = [asyncio.ensure_future(conn.call("Lim.Slow", [i], 10, None, int))
            for i in range(3 * LIMIT)]
    await asyncio.sleep(0)
    # queued behind 3 rounds of 50 ms: its 20 ms deadline passes before a stream frees up
    with pytest.raises(DeadlineExceeded) as info:
        await conn.call("Lim.Slow", [1000], 0.02, None, int)
    assert "Lim.Slow" in info.value.message
    # a queued stream honours its deadline too
    st = conn.open_stream("Lim.Ticks", [2000], 0.02, None, int)
    with pytest.raises(DeadlineExceeded) as sinfo:
        await st.recv()
    assert "Lim.Ticks" in sinfo.value.message
    assert await asyncio.wait_for(asyncio.gather(*slow), 20) == list(range(3 * LIMIT))
    assert 1000 not in g.seen and 2000 not in g.seen  # their HEADERS were never sent
    assert g.peak <= LIMIT and conn.pending == 0
    assert await conn.call("Lim.Slow", [7], 5, None, int) == 7


async def test_cancelling_a_queued_call(target: tuple[Gauge, tg.GrpcClientConnection]) -> None:
    g, conn = target
    slow = [asyncio.ensure_future(conn.call("Lim.Slow", [i], 10, None, int))
            for i in range(2 * LIMIT)]
    doomed = asyncio.ensure_future(conn.call("Lim.Slow", [1000], 10, None, int))
    after = asyncio.ensure_future(conn.call("Lim.Slow", [2000], 10, None, int))
    await asyncio.sleep(0)  # the calls above are in line (a stream opens at once)
    st = conn.open_stream("Lim.Ticks", [3000], 10, None, int)
    await asyncio.sleep(0.01)
    assert conn.pending == 2 * LIMIT + 3
    doomed.cancel()
    st.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    with pytest.raises(Cancelled):
        await st.recv()
    assert conn.pending == 2 * LIMIT + 1
    assert await asyncio.wait_for(asyncio.gather(*slow), 20) == list(range(2 * LIMIT))
    assert await asyncio.wait_for(after, 20) == 2000
    assert 1000 not in g.seen and 3000 not in g.seen
    assert g.peak <= LIMIT and conn.pending == 0


async def test_closing_fails_queued_calls_at_once(
    target: tuple[Gauge, tg.GrpcClientConnection],
) -> None:
    _, conn = target
    await conn.call("Lim.Slow", [0], 5, None, int)
    tasks = [asyncio.ensure_future(conn.call("Lim.Slow", [i], 10, None, int))
             for i in range(3 * LIMIT)]
    await asyncio.sleep(0)
    st = conn.open_stream("Lim.Ticks", [3000], 10, None, int)
    await asyncio.sleep(0.01)
    assert conn.pending == 3 * LIMIT + 1  # LIMIT calls run, the others wait for a stream
    await conn.aclose()
    done, _ = await asyncio.wait(tasks, timeout=1)
    assert len(done) == len(tasks)  # every call ended at once, none waits for a stream
    codes = {t.exception().status.name for t in tasks}  # type: ignore[union-attr]
    assert codes == {"UNAVAILABLE"}
    with pytest.raises(Exception) as info:
        await asyncio.wait_for(st.recv(), 1)
    assert getattr(info.value, "status", None) is not None
    assert info.value.status.name == "UNAVAILABLE"  # type: ignore[attr-defined]
    assert conn.pending == 0
