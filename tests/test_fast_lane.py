"""The native server's fast lane: inline handlers run straight from the parser's callback.

Every behaviour of the general path must hold there too: the context, errors, unencodable
and oversized results, bad params falling back to the general path's messages, interceptors
and shutdown turning the lane off.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import wirecall
from wirecall import Internal, InvalidArgument, ResourceExhausted, RpcError, Status, method
from wirecall.examples.calculator import Args, Calculator
from wirecall.interceptors import ServerCall


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

    @method(inline=True)
    def Big(self, n: int) -> bytes:
        return b"x" * n


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
        with pytest.raises(Internal, match="boom"):
            await c.call("Lane.Fail", "other")
        with pytest.raises(Internal, match=r"cannot encode the result of Lane\.Unencodable"):
            await c.call("Lane.Unencodable")
        with pytest.raises(InvalidArgument, match="invalid argument 'n'"):  # general path's text
            await c.call("Lane.Where", "not a number")
        assert await c.call("Lane.Where", 21) == 42


async def test_fast_lane_reply_over_the_client_limit(serve: Any) -> None:
    url = await serve(Lane())
    async with await wirecall.connect(url, max_message_size=1024) as c:
        with pytest.raises(ResourceExhausted, match="exceeds the client's limit"):
            await c.call("Lane.Big", 4096)
        assert await c.call("Lane.Big", 10) == b"x" * 10


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
