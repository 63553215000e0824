"""The four call modes over gRPC for a plain Python class (msgpack messages), with grpcio and
wirecall on either side; streaming semantics: backpressure, deadlines, cancellation, errors
mid-stream, interceptors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import msgspec
import pytest

from support.services import Calc, Point
from wirecall import DeadlineExceeded, InvalidArgument, NotFound, RpcError, Server
from wirecall.streaming import EOF
from wirecall.transport import grpc as tg
from wirecall.transport.base import parse_url


@pytest.fixture
async def calc_server() -> AsyncIterator[tuple[Server, Calc, str]]:
    calc = Calc()
    server = Server()
    server.register(calc, name="Calc")
    [url] = await server.start("grpc://127.0.0.1:0")
    yield server, calc, url
    await server.close(drain_timeout=1)


@pytest.fixture
async def conn(calc_server: tuple[Server, Calc, str]) -> AsyncIterator[tg.GrpcClientConnection]:
    c = await tg.connect(parse_url(calc_server[2]))
    yield c
    await c.aclose()


async def test_unary_msgpack(conn: tg.GrpcClientConnection) -> None:
    assert await conn.call("Calc.Add", [2, 3], 5, None, int) == 5
    assert await conn.call("Calc.Add", {"a": 4, "b": 5}, 5, None, int) == 9
    with pytest.raises(InvalidArgument):
        await conn.call("Calc.Add", ["x", 3], 5, None, int)


async def test_json_codec(calc_server: tuple[Server, Calc, str]) -> None:
    c = await tg.connect(parse_url(calc_server[2]), codec="json")
    try:
        assert await c.call("Calc.Add", [20, 22], 5, None, int) == 42
    finally:
        await c.aclose()


async def test_gzip_requests(calc_server: tuple[Server, Calc, str]) -> None:
    c = await tg.connect(parse_url(calc_server[2]), compression="gzip")
    try:
        st = c.open_stream("Calc.Sum", None, 5, None, Point)
        for i in range(50):
            await st.send({"x": i, "y": 1})
        assert await st.result() == Point(1225, 50)
    finally:
        await c.aclose()


async def test_four_modes(conn: tg.GrpcClientConnection) -> None:
    st = conn.open_stream("Calc.Count", [5], 5, None, int)
    assert [i async for i in st] == [0, 1, 2, 3, 4]

    async def pts() -> AsyncIterator[Point]:
        for i in range(10):
            yield Point(i, 2 * i)

    assert await conn.open_stream("Calc.Sum", pts(), 5, None, Point).result() == Point(45, 90)
    bidi = conn.open_stream("Calc.Double", None, 5, None, int)
    for i in range(5):
        await bidi.send(i)
        assert await bidi.recv() == 2 * i
    await bidi.done_writing()
    assert await bidi.recv() is EOF


async def test_error_mid_stream_carries_status(conn: tg.GrpcClientConnection) -> None:
    bidi = conn.open_stream("Calc.Double", None, 5, None, int)
    await bidi.send(1)
    assert await bidi.recv() == 2
    await bidi.send(-1)
    with pytest.raises(NotFound, match="negative -1"):
        await bidi.recv()


async def test_slow_consumer_backpressure(
    calc_server: tuple[Server, Calc, str], conn: tg.GrpcClientConnection
) -> None:
    _, calc, _ = calc_server
    st = conn.open_stream("Calc.Firehose", [16384], 10, None, bytes)
    assert len(await st.recv()) == 16384
    await asyncio.sleep(0.3)  # the consumer stalls: the producer must stall too
    stalled_at = calc.produced
    await asyncio.sleep(0.2)
    assert calc.produced == stalled_at
    # bounded: the HTTP/2 stream window (1 MiB) plus the server's high-water mark
    assert stalled_at * 16384 < 4 * 1024 * 1024
    for _ in range(200):  # reading reopens the window
        await st.recv()
    assert calc.produced > stalled_at
    st.cancel()
    await asyncio.wait_for(calc.cancelled.wait(), 5)


async def test_client_cancel_ends_handler(
    calc_server: tuple[Server, Calc, str], conn: tg.GrpcClientConnection
) -> None:
    _, calc, _ = calc_server
    st = conn.open_stream("Calc.Sleepy", [], 10, None, int)
    assert await st.recv() == 1
    st.cancel()
    await asyncio.wait_for(calc.cancelled.wait(), 5)


async def test_deadline_ends_stream_on_both_sides(
    calc_server: tuple[Server, Calc, str], conn: tg.GrpcClientConnection
) -> None:
    _, calc, _ = calc_server
    st = conn.open_stream("Calc.Sleepy", [], 0.2, None, int)
    assert await st.recv() == 1
    with pytest.raises(DeadlineExceeded):
        await st.recv()
    await asyncio.wait_for(calc.cancelled.wait(), 5)


async def test_interceptors_see_streaming_calls() -> None:
    seen: list[tuple[str, str, str]] = []

    async def icpt(call: Any, proceed: Any) -> Any:
        try:
            r = await proceed(call)
            seen.append((call.method, call.spec.mode, "ok"))
            return r
        except RpcError as e:
            seen.append((call.method, call.spec.mode, e.status.name))
            raise

    server = Server(interceptors=[icpt])
    server.register(Calc(), name="Calc")
    [url] = await server.start("grpc://127.0.0.1:0")
    c = await tg.connect(parse_url(url))
    try:
        assert await c.call("Calc.Add", [1, 2], 5, None, int) == 3
        assert [i async for i in c.open_stream("Calc.Count", [2], 5, None, int)] == [0, 1]
        with pytest.raises(NotFound):
            await c.open_stream("Calc.Double", [-1].__iter__(), 5, None, int).recv()
    finally:
        await c.aclose()
        await server.close(drain_timeout=1)
    assert ("Calc.Add", "unary", "ok") in seen
    assert ("Calc.Count", "server_stream", "ok") in seen
    assert ("Calc.Double", "bidi_stream", "NOT_FOUND") in seen


# -- grpcio as the client of a plain-Python service (msgpack bodies) -----------------------

_enc = msgspec.msgpack.encode
_dec = msgspec.msgpack.decode


async def test_grpcio_client_four_modes(calc_server: tuple[Server, Calc, str]) -> None:
    target = calc_server[2].removeprefix("grpc://")
    async with grpc.aio.insecure_channel(target) as ch:
        add = ch.unary_unary("/Calc/Add", request_serializer=_enc, response_deserializer=_dec)
        assert await add([40, 2], timeout=5) == 42
        count = ch.unary_stream("/Calc/Count", request_serializer=_enc,
                                response_deserializer=_dec)
        assert [i async for i in count([3], timeout=5)] == [0, 1, 2]
        summ = ch.stream_unary("/Calc/Sum", request_serializer=_enc, response_deserializer=_dec)

        async def pts() -> AsyncIterator[dict[str, int]]:
            for i in range(4):
                yield {"x": i, "y": 1}

        assert await summ(pts(), timeout=5) == {"x": 6, "y": 4}
        dbl = ch.stream_stream("/Calc/Double", request_serializer=_enc,
                               response_deserializer=_dec)
        call = dbl(timeout=5)
        await call.write(21)
        assert await call.read() == 42
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF


# -- wirecall as the client of a grpcio server, four modes (msgpack bodies) -------------------


async def test_wirecall_client_grpcio_server_four_modes() -> None:
    async def add(req: Any, ctx: Any) -> Any:
        return req[0] + req[1]

    async def count(req: Any, ctx: Any) -> AsyncIterator[int]:
        for i in range(req[0]):
            yield i

    async def summ(it: Any, ctx: Any) -> int:
        return sum([x async for x in it])

    async def dbl(it: Any, ctx: Any) -> AsyncIterator[int]:
        async for x in it:
            yield 2 * x

    kw = {"request_deserializer": _dec, "response_serializer": _enc}
    handlers = {
        "Add": grpc.unary_unary_rpc_method_handler(add, **kw),
        "Count": grpc.unary_stream_rpc_method_handler(count, **kw),
        "Sum": grpc.stream_unary_rpc_method_handler(summ, **kw),
        "Double": grpc.stream_stream_rpc_method_handler(dbl, **kw),
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("Calc", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    c = await tg.connect(parse_url(f"grpc://127.0.0.1:{port}"))
    try:
        assert await c.call("Calc.Add", [1, 2], 5, None, int) == 3
        assert [i async for i in c.open_stream("Calc.Count", [4], 5, None, int)] == [0, 1, 2, 3]
        assert await c.open_stream("Calc.Sum", iter([1, 2, 3]), 5, None, int).result() == 6
        bidi = c.open_stream("Calc.Double", None, 5, None, int)
        await bidi.send(5)
        assert await bidi.recv() == 10
        await bidi.done_writing()
        assert await bidi.recv() is EOF
        assert await c.ping(5) >= 0
    finally:
        await c.aclose()
        await server.stop(0)
