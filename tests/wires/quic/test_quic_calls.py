"""``quic://``: unary calls and the four streaming modes over QUIC (aioquic on both ends, a
real UDP socket on 127.0.0.1, TLS 1.3 with a generated certificate, ALPN ``wirecall``),
deadlines and cancellation by stream reset, keepalive, graceful close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import wirecall
from support.quic import quic_server
from support.services import Calc, Point
from wirecall import Context, DeadlineExceeded, NotFound
from wirecall.errors import ConnectError, Unavailable
from wirecall.streaming import EOF
from wirecall.transport.base import parse_url
from wirecall.transport.quic import connect as quic_connect


class Probe:
    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.started = asyncio.Event()

    def Add(self, a: int, b: int) -> int:
        return a + b

    async def Who(self, ctx: Context) -> list[str]:
        return [ctx.transport, ctx.peer]

    async def Hang(self, ctx: Context) -> str:
        self.started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return "never"

    async def Slow(self, s: float) -> str:
        await asyncio.sleep(s)
        return "slept"

    def Boom(self) -> None:
        raise RuntimeError("secret internal detail")


async def test_unary_calls_tls_alpn_and_context() -> None:
    async with quic_server(Probe()) as qs:
        assert qs.url.startswith("quic://127.0.0.1:")
        async with await wirecall.connect(qs.url, cafile=qs.certfile) as c:
            assert await c.call("Probe.Add", 2, 3) == 5
            transport, peer = await c.call("Probe.Who")
            assert transport == "quic" and peer.startswith("127.0.0.1:")
            got = await asyncio.gather(*[c.call("Probe.Add", i, i) for i in range(300)])
            assert got == [2 * i for i in range(300)]
            with pytest.raises(wirecall.RpcError) as ei:
                await c.call("Probe.Boom")
            assert "secret" not in ei.value.message  # internal text stays on the server
            with pytest.raises(wirecall.Unimplemented, match="Nope"):
                await c.call("Nope.Add", 1, 2)
            assert await c.call("Probe.Add", 1, 1) == 2  # the connection lives on


async def test_untrusted_certificate_is_a_connect_error_and_options_are_checked() -> None:
    async with quic_server(Probe()) as qs:
        with pytest.raises(ConnectError):  # no cafile: the self-signed cert is not trusted
            await quic_connect(parse_url(qs.url), timeout=3)
        with pytest.raises(ValueError, match="unknown quic:// TLS option"):
            await quic_connect(parse_url(qs.url), cafle=qs.certfile)
        with pytest.raises(ValueError, match="needs a certificate"):
            await wirecall.Server().start("quic://127.0.0.1:0")
        with pytest.raises(ValueError, match=r"quic:// server does not accept option 'retries'"):
            await wirecall.Server().start("quic://127.0.0.1:0", certfile=qs.certfile,
                                          keyfile=qs.keyfile, retries=3)


async def test_four_streaming_modes() -> None:
    async with (
        quic_server((Calc(), "Calc")) as qs,
        await wirecall.connect(qs.url, cafile=qs.certfile) as client,
    ):
        assert [i async for i in client.stream("Calc.Count", [50], result_type=int)] == list(
            range(50))  # past the 16-message window: WINDOW_UPDATE on the call's stream

        async def pts() -> AsyncIterator[Point]:
            for i in range(40):
                yield Point(i, 1)

        s = client.stream("Calc.Sum", pts(), result_type=Point, timeout=5)
        assert await s.result() == Point(780, 40)
        bidi = client.stream("Calc.Double", result_type=int, timeout=5)
        for i in range(30):
            await bidi.send(i)
            assert await bidi.recv() == 2 * i
        await bidi.done_writing()
        assert await bidi.recv() is EOF
        bad = client.stream("Calc.Double", result_type=int, timeout=5)
        await bad.send(-1)
        with pytest.raises(NotFound, match="negative -1"):
            await bad.recv()
        assert await client.call("Calc.Add", 1, 2) == 3


async def test_deadline_and_cancel_reset_the_stream_and_cancel_the_handler() -> None:
    probe = Probe()
    async with (
        quic_server(probe) as qs,
        await wirecall.connect(qs.url, cafile=qs.certfile) as c,
    ):
        with pytest.raises(DeadlineExceeded):
            await c.call("Probe.Slow", 5, timeout=0.2)
        task = asyncio.ensure_future(c.call("Probe.Hang"))
        await asyncio.wait_for(probe.started.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the client reset the stream: the server cancels the handler
        await asyncio.wait_for(probe.cancelled.wait(), 5)
        assert await c.call("Probe.Add", 1, 2) == 3


async def test_a_server_stream_dropped_by_the_client_cancels_its_handler() -> None:
    calc = Calc()
    async with (
        quic_server((calc, "Calc")) as qs,
        await wirecall.connect(qs.url, cafile=qs.certfile) as client,
    ):
        async for x in client.stream("Calc.Sleepy", [], result_type=int):
            assert x == 1
            break
        await asyncio.wait_for(calc.cancelled.wait(), 5)


async def test_keepalive_ping_and_graceful_close_finishes_calls_in_flight() -> None:
    probe = Probe()
    async with quic_server(probe) as qs:
        conn = await quic_connect(parse_url(qs.url), cafile=qs.certfile, keepalive=0.2)
        try:
            rtt = await conn.ping(timeout=5)
            assert 0 <= rtt < 1
            await asyncio.sleep(0.5)  # keepalive PINGs answered: the connection stays up
            assert not conn.closed
            slow = asyncio.ensure_future(conn.call("Probe.Slow", [0.3], 5, None, Any))
            await asyncio.sleep(0.1)
            closing = asyncio.ensure_future(qs.server.close(drain_timeout=5))
            assert await slow == "slept"  # drained: the reply arrives before the close
            await closing
            # GOAWAY then CONNECTION_CLOSE: the client learns the connection is over
            for _ in range(100):
                if conn.closed:
                    break
                await asyncio.sleep(0.02)
            assert conn.closed
            with pytest.raises(Unavailable):
                await conn.call("Probe.Add", [1, 2], 1, None, Any)
        finally:
            await conn.aclose()


async def test_a_listener_that_stopped_accepting_refuses_new_connections_only() -> None:
    async with quic_server(Probe()) as qs:
        conn = await quic_connect(parse_url(qs.url), cafile=qs.certfile)
        try:
            [listener] = qs.server.listeners
            await listener.stop_accepting()
            with pytest.raises(ConnectError, match="not accepting connections"):
                await quic_connect(parse_url(qs.url), cafile=qs.certfile, timeout=5)
            # the connection made before goes on
            assert await conn.call("Probe.Add", [2, 2], 5, None, Any) == 4
        finally:
            await conn.aclose()


async def test_calls_in_flight_beyond_the_server_limit_are_refused() -> None:
    probe = Probe()
    async with quic_server(probe, server_options={"max_concurrent_calls": 2}) as qs:
        conn = await quic_connect(parse_url(qs.url), cafile=qs.certfile)
        try:
            hung = [asyncio.ensure_future(conn.call("Probe.Hang", [], 10, None, Any))
                    for _ in range(2)]
            await asyncio.wait_for(probe.started.wait(), 5)
            await asyncio.sleep(0.2)
            with pytest.raises(wirecall.RpcError, match="too many calls in flight") as ei:
                await conn.call("Probe.Add", [1, 1], 5, None, Any)
            assert ei.value.status == wirecall.Status.RESOURCE_EXHAUSTED
            for h in hung:
                h.cancel()
            await asyncio.gather(*hung, return_exceptions=True)
            for _ in range(50):  # the resets reach the server: room again
                try:
                    assert await conn.call("Probe.Add", [1, 1], 5, None, Any) == 2
                    break
                except wirecall.RpcError:
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("calls still refused after the hung ones were cancelled")
        finally:
            await conn.aclose()


async def test_a_request_on_the_control_stream_closes_the_connection_unrun() -> None:
    import msgspec

    from wirecall.protocol import frames as fr

    class Counter:
        def __init__(self) -> None:
            self.n = 0

        @wirecall.method(inline=True)
        def Bump(self) -> int:
            self.n += 1
            return self.n

    counter = Counter()
    async with quic_server(counter) as qs:
        conn = await quic_connect(parse_url(qs.url), cafile=qs.certfile)
        try:
            assert await conn.call("Counter.Bump", [], 5, None, Any) == 1
            enc = fr.FrameConnection(client=True)
            enc.send_request(99, "Counter.Bump", msgspec.msgpack.encode([]))
            assert conn.proto is not None
            conn.proto.quic.send_stream_data(0, enc.data_to_send())  # stream 0: control
            conn.proto.transmit()
            for _ in range(100):
                if conn.closed:
                    break
                await asyncio.sleep(0.02)
            assert conn.closed
            assert counter.n == 1  # the smuggled call never ran
        finally:
            await conn.aclose()
