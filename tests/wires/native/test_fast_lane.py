"""The native server's fast lane: inline handlers run straight from the parser's callback.

Every behaviour of the general path must hold there too: the context, errors, unencodable
and oversized results, bad params falling back to the general path's messages, interceptors
and shutdown turning the lane off.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

import wirecall
from wirecall import Internal, InvalidArgument, RpcError, Status, method
from wirecall.interceptors import ServerCall
from wirecall.protocol import frames as fr
from wirecall.transport import native as tcp
from wirecall.tutorial.calculator import Args, Calculator


class Lane:
    def __init__(self) -> None:
        self.contexts: list[tuple[str, str, str]] = []

    @method(inline=True)
    def Where(self, n: int) -> int:
        ctx = wirecall.current_context()
        assert ctx is not None
        self.contexts.append((ctx.method, ctx.transport, ctx.peer))
        return n * 2

    @method(inline=True)
    def Fail(self, kind: str) -> None:
        if kind == "rpc":
            raise RpcError(Status.FAILED_PRECONDITION, "not now")
        raise ValueError("boom")

    @method(inline=True)
    def Unencodable(self) -> Any:
        return object()


async def test_fast_lane_handler_sees_its_context(serve: Any) -> None:
    lane = Lane()
    url = await serve(lane)
    async with await wirecall.connect(url) as c:
        assert [await c.call("Lane.Where", i) for i in range(3)] == [0, 2, 4]
    assert {x[:2] for x in lane.contexts} == {("Lane.Where", "tcp")}
    assert all(x[2].startswith("127.0.0.1:") for x in lane.contexts)
    assert wirecall.current_context() is None  # reset after each call


async def test_fast_lane_errors_are_statuses_and_the_connection_survives(serve: Any) -> None:
    url = await serve(Lane())
    async with await wirecall.connect(url) as c:
        with pytest.raises(RpcError) as ei:
            await c.call("Lane.Fail", "rpc")
        assert (ei.value.status, ei.value.message) == (Status.FAILED_PRECONDITION, "not now")
        with pytest.raises(Internal, match=r"internal error \(ref "):  # opaque (issue #10)
            await c.call("Lane.Fail", "other")
        with pytest.raises(Internal, match=r"cannot encode the result of Lane\.Unencodable"):
            await c.call("Lane.Unencodable")
        with pytest.raises(InvalidArgument, match="invalid argument 'n'"):  # general path's text
            await c.call("Lane.Where", "not a number")
        assert await c.call("Lane.Where", 21) == 42


async def test_interceptor_added_later_sees_calls_the_fast_lane_served_before(
    serve: Any,
) -> None:
    url = await serve(Calculator())
    seen: list[str] = []

    async def spy(call: ServerCall, nxt: Any) -> Any:
        seen.append(call.method)
        return await nxt(call)

    async with await wirecall.connect(url) as c:
        assert await c.call("Calculator.Add", Args(1, 2)) == 3  # fast lane, cached
        serve.server.add_interceptor(spy)
        assert await c.call("Calculator.Add", Args(2, 2)) == 4
    assert seen == ["Calculator.Add"]


async def test_many_fast_lane_calls_in_one_read_all_answered(serve: Any) -> None:
    url = await serve(Calculator())
    async with await wirecall.connect(url) as c:
        got = await asyncio.gather(*(c.call("Calculator.Add", Args(i, 1)) for i in range(2000)))
    assert got == [i + 1 for i in range(2000)]


class _RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def close(self) -> None:
        pass


def _in_memory_server(
    service: Any, name: str | None = None
) -> tuple[tcp.ServerProtocol, _RecordingTransport, fr.FrameConnection]:
    """A native ServerProtocol on a recording transport, the client's preface already read
    (call from inside a running loop)."""
    server = wirecall.Server()
    server.register(service, name=name)
    proto = tcp.ServerProtocol(server)
    t = _RecordingTransport()
    proto.connection_made(t)  # type: ignore[arg-type]
    client = fr.FrameConnection(client=True)
    client.initiate()
    proto.data_received(client.data_to_send())
    return proto, t, client


def test_server_writes_every_16_replies_not_only_at_the_end_of_a_read() -> None:
    """40 plain requests in one read: replies leave in writes of 16, 16 and 8 frames."""

    async def run() -> list[bytes]:
        proto, t, client = _in_memory_server(Calculator())
        t.writes.clear()
        for i in range(1, 41):
            client.send_request(i, "Calculator.Add", msgspec.msgpack.encode([{"A": i, "B": 1}]))
        proto.data_received(client.data_to_send())
        proto.connection_lost(None)
        return t.writes

    writes = asyncio.run(run())
    reader = fr.FrameConnection(client=True)
    reader.initiate()
    reader.receive_data(fr.PREFACE.pack(b"WRPC", 1, 1, 0, 1 << 22))
    per_write = [reader.receive_data(w) for w in writes]
    assert [len(evs) for evs in per_write] == [16, 16, 8]
    got = [(e.call_id, msgspec.msgpack.decode(e.body)) for evs in per_write for e in evs]
    assert got == [(i, i + 1) for i in range(1, 41)]


def test_client_writes_the_first_call_at_once_then_every_16_requests() -> None:
    """From idle, 40 calls started in one loop iteration: written as 1, 16, 16 and 7."""

    async def run() -> list[bytes]:
        conn = tcp.TcpClientConnection(wirecall.codec.MSGPACK_CODEC)
        t = _RecordingTransport()
        conn.connection_made(t)  # type: ignore[arg-type]
        t.writes.clear()  # the preface
        for i in range(40):
            conn.start("Calculator.Add", [i], None, None, Any)
        await asyncio.sleep(0)  # the end-of-iteration flush
        conn._fail_all(wirecall.Unavailable(message="test over"))
        return t.writes

    writes = asyncio.run(run())
    server = fr.FrameConnection(client=False)
    server.receive_data(fr.PREFACE.pack(b"WRPC", 1, 1, 0, 1 << 22))
    per_write = [server.receive_data(w) for w in writes]
    assert [len(evs) for evs in per_write] == [1, 16, 16, 7]
    assert [e.call_id for evs in per_write for e in evs] == list(range(1, 41))


def test_after_goaway_a_plain_request_is_refused_not_run() -> None:
    calc_calls: list[int] = []

    class Counting(Calculator):
        @method(inline=True)
        def Add(self, args: Args) -> int:
            calc_calls.append(args.A)
            return args.A + args.B

    async def run() -> list[bytes]:
        proto, t, client = _in_memory_server(Counting(), name="Calculator")
        client.send_request(1, "Calculator.Add", msgspec.msgpack.encode([{"A": 1, "B": 1}]))
        proto.data_received(client.data_to_send())  # served by the fast lane
        proto.goaway()
        client.send_request(2, "Calculator.Add", msgspec.msgpack.encode([{"A": 2, "B": 1}]))
        proto.data_received(client.data_to_send())
        proto.connection_lost(None)
        return t.writes

    writes = asyncio.run(run())
    reader = fr.FrameConnection(client=True)
    reader.initiate()
    events = [e for w in writes for e in reader.receive_data(w)]
    kinds = [(type(e).__name__, getattr(e, "call_id", None)) for e in events]
    assert ("ResponseReceived", 1) in kinds and ("GoAwayReceived", None) in kinds
    [err] = [e for e in events if isinstance(e, fr.ErrorReceived)]
    assert (err.call_id, err.status, err.message) == (2, Status.UNAVAILABLE,
                                                       "server is shutting down")
    assert calc_calls == [1]
