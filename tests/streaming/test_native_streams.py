"""Streaming on wirecall's native protocol (tcp://): the four modes, credit-based flow
control, cancellation and deadlines on both sides, errors mid-stream, and a .proto service
served on tcp:// with the protobuf codec from the same class as on grpc://."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from support.services import Calc, Point
from wirecall import DeadlineExceeded, NotFound, Server
from wirecall.pubsub.service import PublishRequest, PubSub, PubSubStub, SubscribeRequest
from wirecall.streaming import EOF
from wirecall.transport import native as tcp
from wirecall.transport.base import parse_url
from wirecall.transport.native.messages import INITIAL_WINDOW
from wirecall.tutorial.greeter import Greeter, GreeterStub, HelloRequest


@pytest.fixture
async def native() -> AsyncIterator[tuple[Calc, tcp.TcpClientConnection]]:
    calc = Calc()
    server = Server()
    server.register(calc, name="Calc")
    [url] = await server.start("tcp://127.0.0.1:0")
    conn = await tcp.connect(parse_url(url))
    yield calc, conn
    await conn.aclose()
    await server.close(drain_timeout=1)


async def test_unary_still_works(native: tuple[Calc, tcp.TcpClientConnection]) -> None:
    assert await native[1].call("Calc.Add", [2, 3], 5, None, int) == 5


async def test_four_modes(native: tuple[Calc, tcp.TcpClientConnection]) -> None:
    _, conn = native
    assert [i async for i in conn.open_stream("Calc.Count", [40], 5, None, int)] == list(
        range(40))

    async def pts() -> AsyncIterator[Point]:
        for i in range(50):  # more than one window of credit
            yield Point(i, 1)

    assert await conn.open_stream("Calc.Sum", pts(), 5, None, Point).result() == Point(1225, 50)
    bidi = conn.open_stream("Calc.Double", None, 5, None, int)
    for i in range(40):
        await bidi.send(i)
        assert await bidi.recv() == 2 * i
    await bidi.done_writing()
    assert await bidi.recv() is EOF
    assert bidi.error is None


async def test_error_mid_stream(native: tuple[Calc, tcp.TcpClientConnection]) -> None:
    bidi = native[1].open_stream("Calc.Double", None, 5, None, int)
    await bidi.send(3)
    assert await bidi.recv() == 6
    await bidi.send(-3)
    with pytest.raises(NotFound, match="negative -3"):
        await bidi.recv()


async def test_credit_stops_a_fast_producer(
    native: tuple[Calc, tcp.TcpClientConnection],
) -> None:
    calc, conn = native
    st = conn.open_stream("Calc.Firehose", [100], 10, None, bytes)
    assert len(await st.recv()) == 100
    await asyncio.sleep(0.2)
    stalled = calc.produced
    await asyncio.sleep(0.2)
    assert calc.produced == stalled  # stopped by credit, not by a buffer limit
    assert stalled <= INITIAL_WINDOW + 2  # the window plus the one in the generator
    for _ in range(100):
        await st.recv()
    assert calc.produced > stalled + 80
    st.cancel()
    await asyncio.wait_for(calc.cancelled.wait(), 5)


async def test_cancel_and_deadline_end_the_handler(
    native: tuple[Calc, tcp.TcpClientConnection],
) -> None:
    calc, conn = native
    st = conn.open_stream("Calc.Sleepy", [], 10, None, int)
    assert await st.recv() == 1
    st.cancel()
    await asyncio.wait_for(calc.cancelled.wait(), 5)
    calc.cancelled.clear()
    st = conn.open_stream("Calc.Sleepy", [], 0.2, None, int)
    assert await st.recv() == 1
    with pytest.raises(DeadlineExceeded):
        await st.recv()
    await asyncio.wait_for(calc.cancelled.wait(), 5)
    assert await conn.call("Calc.Add", [1, 1], 5, None, int) == 2  # connection still fine


async def test_proto_service_on_tcp_with_protobuf_codec() -> None:
    server = Server()
    server.register(Greeter())
    server.register(PubSub())
    urls = await server.start("tcp://127.0.0.1:0", "grpc://127.0.0.1:0")
    try:
        for url in urls:
            opts = {"codec": "proto"} if url.startswith("tcp") else {}
            u = parse_url(url)
            mod = tcp if u.scheme == "tcp" else __import__(
                "wirecall.transport.grpc", fromlist=["connect"])
            conn = await mod.connect(u, **opts)
            try:
                r = await GreeterStub(conn).SayHello(HelloRequest(name="Ada"), timeout=5)
                assert r.message == "Hello, Ada"
                stub = PubSubStub(conn)
                sub = stub.Subscribe(SubscribeRequest(topic="news"), timeout=5)
                svc = server.registry.methods["PubSub.Publish"].func.__self__
                for _ in range(200):
                    if svc.broker.subscribers("news"):
                        break
                    await asyncio.sleep(0.01)
                for m in ("a", "b"):
                    ok = await stub.Publish(PublishRequest(topic="news", message=m), timeout=5)
                    assert ok.success
                assert [(await sub.recv()).message for _ in range(2)] == ["a", "b"]
                sub.cancel()
            finally:
                await conn.aclose()
    finally:
        await server.close(drain_timeout=1)
