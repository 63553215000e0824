"""``wirecall.Client`` on a real ``tcp://`` loopback server: the calling convention, call
options (timeouts, metadata, the onward-call rule), ``go``, typed stubs, interceptors, the
pool behind it, closing."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

import msgspec
import pytest

import wirecall
from support.servers import free_port
from wirecall import (
    Context,
    DeadlineExceeded,
    InvalidArgument,
    RpcError,
    Unavailable,
    Unimplemented,
    method,
)
from wirecall.client import Call, call_options, check_timeout
from wirecall.context import CURRENT


class Pair(msgspec.Struct):
    A: int
    B: int


class Sum(msgspec.Struct):
    total: int
    parts: list[int]


class Svc:
    @method(inline=True)
    def Add(self, a: int, b: int) -> int:
        return a + b

    @method(inline=True)
    def AddPair(self, p: Pair) -> int:
        return p.A + p.B

    @method(inline=True)
    def Total(self, parts: list[int]) -> Sum:
        return Sum(sum(parts), parts)

    async def Sleep(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "slept"

    async def Seen(self, ctx: Context) -> dict[str, Any]:
        """What the call arrived with: metadata and seconds left (None: no deadline)."""
        return {"metadata": dict(ctx.metadata), "remaining": ctx.time_remaining()}


class SvcAPI(Protocol):
    __wirecall_service__ = "Svc"

    async def Add(self, a: int, b: int) -> int: ...

    async def Total(self, parts: list[int]) -> Sum: ...


@pytest.fixture
async def url(serve: Any) -> str:
    u: str = await serve(Svc())
    return u


# -- the calling convention ----------------------------------------------------------------


async def test_positional_struct_dict_and_named_arguments(url: str) -> None:
    async with await wirecall.connect(url) as c:
        assert await c.call("Svc.Add", 2, 3) == 5
        assert await c.call("Svc.Add", a=4, b=5) == 9
        assert await c.call("Svc.AddPair", Pair(A=10, B=5)) == 15
        assert await c.call("Svc.AddPair", {"A": 1, "B": 2}) == 3
        assert await c.invoke("Svc.Add", {"a": 7, "b": 1}) == 8
        assert await c.invoke("Svc.Add", [7, 2]) == 9
        with pytest.raises(TypeError, match="not both"):
            await c.call("Svc.Add", 1, b=2)


async def test_result_type_decodes_the_reply(url: str) -> None:
    async with await wirecall.connect(url) as c:
        raw = await c.call("Svc.Total", [1, 2, 3])
        assert raw == {"total": 6, "parts": [1, 2, 3]}
        typed = await c.call("Svc.Total", [1, 2, 3], result_type=Sum)
        assert typed == Sum(6, [1, 2, 3])
        with pytest.raises(InvalidArgument):
            await c.call("Svc.Add", 1, 2, result_type=str)


async def test_unknown_method_and_bad_arguments_come_back_as_errors(url: str) -> None:
    async with await wirecall.connect(url) as c:
        with pytest.raises(Unimplemented, match="unknown method"):
            await c.call("Svc.Nope")
        with pytest.raises(InvalidArgument, match="invalid argument 'a'"):
            await c.call("Svc.Add", "x", 1)
        assert await c.call("Svc.Add", 1, 1) == 2  # the connection lives on


# -- timeouts and metadata -----------------------------------------------------------------


async def test_call_timeout_is_the_default_and_a_call_may_override_it(url: str) -> None:
    async with await wirecall.connect(url, call_timeout=0.05) as c:
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await c.call("Svc.Sleep", 2)
        assert time.monotonic() - t0 < 1.5
        assert await c.call("Svc.Sleep", 0.2, timeout=5) == "slept"
        assert await c.call("Svc.Sleep", 0.2, timeout=None) == "slept"  # None: no deadline
        seen = await c.call("Svc.Seen")
        assert seen["remaining"] is not None and 0 < seen["remaining"] <= 0.05


async def test_the_deadline_travels_and_huge_timeouts_mean_none(url: str) -> None:
    async with await wirecall.connect(url) as c:
        assert (await c.call("Svc.Seen"))["remaining"] is None
        seen = await c.call("Svc.Seen", timeout=30)
        assert 25 < seen["remaining"] <= 30
        assert (await c.call("Svc.Seen", timeout=1e12))["remaining"] is None


@pytest.mark.parametrize("bad", [-1, float("nan"), "1"])
async def test_invalid_timeouts_are_refused_before_sending(url: str, bad: Any) -> None:
    async with await wirecall.connect(url) as c:
        with pytest.raises(InvalidArgument, match="timeout must be"):
            await c.call("Svc.Add", 1, 2, timeout=bad)
    with pytest.raises(InvalidArgument):
        check_timeout(bad)


async def test_default_metadata_is_overlaid_by_the_calls(url: str) -> None:
    async with await wirecall.connect(url, metadata={"app": "t", "k": "default"}) as c:
        seen = await c.call("Svc.Seen", metadata={"k": "call"})
        assert seen["metadata"] == {"app": "t", "k": "call"}
        assert (await c.call("Svc.Seen"))["metadata"] == {"app": "t", "k": "default"}


def test_an_onward_call_inherits_the_deadline_and_metadata() -> None:
    ctx = Context("In.Coming", {"trace": "abc", "k": "incoming"},
                  deadline=time.monotonic() + 2.0)
    token = CURRENT.set(ctx)
    try:
        timeout, md = call_options("Out.Going", None, {"k": "mine"}, {})
        assert timeout is not None and 1.5 < timeout <= 2.0
        assert md == {"trace": "abc", "k": "mine"}  # explicit keys win
        timeout, _ = call_options("Out.Going", 0.5, None, {})
        assert timeout == 0.5  # the smaller of the two
        ctx.deadline = time.monotonic() - 0.01
        with pytest.raises(DeadlineExceeded, match="already passed"):
            call_options("Out.Going", None, None, {})
    finally:
        CURRENT.reset(token)
    assert call_options("Out.Going", None, None, {}) == (None, None)  # outside a handler


async def test_an_onward_call_from_a_handler_carries_them_on_the_wire(serve: Any) -> None:
    inner = await serve(Svc())

    class Front:
        async def Relay(self, ctx: Context) -> dict[str, Any]:
            async with await wirecall.connect(inner) as c:
                seen: dict[str, Any] = await c.call("Svc.Seen")
                return seen

    front = await serve(Front())
    async with await wirecall.connect(front) as c:
        seen = await c.call("Front.Relay", timeout=10, metadata={"trace": "t1"})
    assert seen["metadata"] == {"trace": "t1"}
    assert seen["remaining"] is not None and 5 < seen["remaining"] < 10


# -- go, stubs, interceptors ---------------------------------------------------------------


async def test_go_returns_a_call_to_await_poll_or_call_back(url: str) -> None:
    async with await wirecall.connect(url) as c:
        got: list[Call] = []
        call = c.go("Svc.Add", 20, 22)
        call.add_done_callback(got.append)
        assert isinstance(call, Call) and call.method == "Svc.Add"
        assert await call == 42
        await asyncio.sleep(0)
        assert call.done() and call.reply == 42 and call.error is None and got == [call]
        bad = c.go("Svc.Nope")
        with pytest.raises(Unimplemented):
            await bad
        assert bad.reply is None and isinstance(bad.error, Unimplemented)
        slow = c.go("Svc.Sleep", 5)
        assert not slow.done() and slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        assert slow.cancelled() and isinstance(slow.error, asyncio.CancelledError)


async def test_a_typed_stub_calls_service_methods_and_decodes_replies(url: str) -> None:
    async with await wirecall.connect(url) as c:
        svc = c.stub(SvcAPI)
        assert await svc.Add(2, 2) == 4
        assert await svc.Total([4, 5]) == Sum(9, [4, 5])  # the declared return type
        with pytest.raises(TypeError, match=r"Svc\.Add"):
            await svc.Add(1)  # checked against the declared signature before sending
        with pytest.raises(AttributeError, match="no method 'Mul'"):
            svc.Mul  # type: ignore[attr-defined]  # noqa: B018
        renamed = c.stub(SvcAPI, name="Other")
        with pytest.raises(Unimplemented, match="Other"):
            await renamed.Add(1, 1)


async def test_client_interceptors_wrap_calls_in_order_and_may_change_them(url: str) -> None:
    log: list[str] = []

    async def outer(call: Any, proceed: Any) -> Any:
        log.append(f"outer>{call.method}")
        call.metadata["via"] = "outer"
        try:
            return await proceed(call)
        finally:
            log.append("outer<")

    async def inner(call: Any, proceed: Any) -> Any:
        log.append(f"inner>{call.metadata['via']}")
        call.timeout = 5.0
        return await proceed(call)

    async with await wirecall.connect(url, interceptors=[outer, inner]) as c:
        seen = await c.call("Svc.Seen")
    assert log == ["outer>Svc.Seen", "inner>outer", "outer<"]
    assert seen["metadata"] == {"via": "outer"}
    assert seen["remaining"] is not None and 4 < seen["remaining"] <= 5


async def test_batch_is_refused_on_a_wire_without_batches(url: str) -> None:
    async with await wirecall.connect(url) as c:
        with pytest.raises(Unimplemented, match="batches need an http"):
            await c.batch([("Svc.Add", [1, 2])])


# -- connections ---------------------------------------------------------------------------


async def test_pool_size_dials_that_many_connections_and_spreads_calls(url: str) -> None:
    async with await wirecall.connect(url, pool_size=3) as c:
        assert len(c.pool.connections) == 3
        results = await asyncio.gather(*(c.call("Svc.Sleep", 0.05) for _ in range(9)))
        assert results == ["slept"] * 9
        assert len(c.pool.connections) == 3
        assert await c.ping() >= 0


async def test_connecting_to_nothing_fails_with_unavailable() -> None:
    with pytest.raises(Unavailable):
        await wirecall.connect(f"tcp://127.0.0.1:{free_port()}", timeout=2)


async def test_a_closed_client_refuses_calls(url: str) -> None:
    c = await wirecall.connect(url)
    assert await c.call("Svc.Add", 1, 2) == 3
    await c.close()
    with pytest.raises(RpcError) as ei:
        await c.call("Svc.Add", 1, 2)
    assert isinstance(ei.value, Unavailable)


async def test_the_client_redials_after_the_server_comes_back(serve: Any) -> None:
    port = free_port()
    target = f"tcp://127.0.0.1:{port}"
    server = wirecall.Server().register(Svc())
    await server.start(target)
    c = await wirecall.connect(target)
    try:
        assert await c.call("Svc.Add", 1, 1) == 2
        await server.close(drain_timeout=1)
        with pytest.raises(Unavailable):
            await c.call("Svc.Add", 1, 1)
        again = wirecall.Server().register(Svc())
        await again.start(target)
        try:
            deadline = time.monotonic() + 5
            while True:  # the pool backs off between redials: retry until it is back
                try:
                    assert await c.call("Svc.Add", 2, 2) == 4
                    break
                except Unavailable:
                    assert time.monotonic() < deadline, "never redialled"
                    await asyncio.sleep(0.05)
        finally:
            await again.close(drain_timeout=1)
    finally:
        await c.close()
