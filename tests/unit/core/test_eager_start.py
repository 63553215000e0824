"""The eager start of a call's coroutine (``Server._spawn``): an ``async def`` handler's
first step runs on the calling stack; one that finishes there is answered before
``start_call`` returns, with no task; one that waits goes on in a task. Every transport starts
calls from a protocol callback (no task running): the tests do the same with ``call_soon``.
What a handler can observe must not change: the current task (``asyncio.timeout``,
``TaskGroup``), contextvars, cancellation (also before the task's first step), deadlines,
errors."""

from __future__ import annotations

import asyncio
import contextvars
import time
from typing import Any

import pytest

from wirecall import Context, DeadlineExceeded, Internal, NotFound, Server, current_context
from wirecall.errors import Cancelled

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("test_eager_var", default="outer")


class Handlers:
    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.released = asyncio.Event()
        self.cleanup: list[str] = []

    async def Quick(self, a: int) -> int:
        self.seen.append((asyncio.current_task(), current_context(), VAR.get()))
        VAR.set("inner")  # stays in the call's context
        return a + 1

    async def Waits(self, a: int) -> int:
        first = asyncio.current_task()
        await asyncio.sleep(0)
        self.seen.append((first, asyncio.current_task(), current_context(), VAR.get()))
        return a * 2

    async def TimesOut(self) -> str:
        try:
            async with asyncio.timeout(0.01):  # needs a current task in the first step
                await asyncio.sleep(30)
        except TimeoutError:
            return "timed out"
        return "slept"

    async def Group(self) -> int:
        async with asyncio.TaskGroup() as tg:
            a = tg.create_task(asyncio.sleep(0, 20))
            b = tg.create_task(asyncio.sleep(0, 22))
        return a.result() + b.result()

    async def Blocks(self) -> str:
        try:
            await self.released.wait()
        except asyncio.CancelledError:
            self.cleanup.append("cancelled")
            raise
        finally:
            self.cleanup.append("finally")
        return "released"

    async def Fails(self, kind: str) -> int:
        if kind == "rpc":
            raise NotFound(message="no such thing")
        raise ValueError("boom")

    async def FailsLater(self) -> int:
        await asyncio.sleep(0)
        raise ValueError("later")

    async def CancelsItself(self, ctx: Context) -> str:
        ctx.cancel()
        await asyncio.sleep(0)
        return "not cancelled"


async def _start(server: Server, method: str, params: Any, ctx: Context | None = None) -> Any:
    """start_call from a loop callback, as a transport does: (answered before start_call
    returned, inflight right after, (result, error) future)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[tuple[Any, BaseException | None]] = loop.create_future()
    state: dict[str, Any] = {}
    ctx = ctx or Context(method)

    def callback() -> None:
        assert asyncio.current_task() is None
        server.start_call(method, params, ctx, lambda r, e: fut.set_result((r, e)))
        state["at_once"] = fut.done()
        state["inflight"] = server.inflight

    loop.call_soon(callback)
    while "at_once" not in state:
        await asyncio.sleep(0)
    return state["at_once"], state["inflight"], fut


@pytest.fixture
def server() -> tuple[Server, Handlers]:
    h = Handlers()
    s = Server()
    s.register(h, "H")
    return s, h


async def test_a_handler_that_does_not_wait_is_answered_at_once_without_a_task(
    server: tuple[Server, Handlers],
) -> None:
    s, h = server
    at_once, inflight, fut = await _start(s, "H.Quick", [1])
    assert at_once and inflight == 0
    assert await fut == (2, None)
    task, ctx, var = h.seen[0]
    assert task is not None  # a current task for asyncio.timeout & co, never run as one
    assert ctx is not None and ctx.method == "H.Quick"
    assert var == "outer" and VAR.get() == "outer"  # the handler's set() stayed in its context


async def test_a_handler_that_waits_goes_on_in_the_same_task(
    server: tuple[Server, Handlers],
) -> None:
    s, h = server
    at_once, inflight, fut = await asyncio.wait_for(_start(s, "H.Waits", [4]), 10)
    assert not at_once and inflight == 1
    assert await asyncio.wait_for(fut, 10) == (8, None)
    first, later, ctx, var = h.seen[0]
    assert first is later and first is not None and first.done()
    assert ctx is not None and ctx.method == "H.Waits" and var == "outer"
    assert s.inflight == 0


async def test_asyncio_timeout_and_taskgroup_in_the_first_step(
    server: tuple[Server, Handlers],
) -> None:
    s, _ = server
    _, _, fut = await _start(s, "H.TimesOut", [])
    assert await asyncio.wait_for(fut, 10) == ("timed out", None)
    _, _, fut = await _start(s, "H.Group", [])
    assert await asyncio.wait_for(fut, 10) == (42, None)


async def test_cancelled_before_the_tasks_first_step(server: tuple[Server, Handlers]) -> None:
    s, h = server
    ctx = Context("H.Blocks")
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[tuple[Any, BaseException | None]] = loop.create_future()

    def callback() -> None:  # the task exists but has not run yet when it is cancelled
        s.start_call("H.Blocks", [], ctx, lambda r, e: fut.set_result((r, e)))
        ctx.cancel()

    loop.call_soon(callback)
    result, err = await asyncio.wait_for(fut, 10)
    assert result is None and isinstance(err, Cancelled)
    assert h.cleanup == ["cancelled", "finally"]  # the handler saw the CancelledError
    assert s.inflight == 0


async def test_cancelled_while_waiting_and_at_the_deadline(
    server: tuple[Server, Handlers],
) -> None:
    s, h = server
    ctx = Context("H.Blocks")
    _, _, fut = await _start(s, "H.Blocks", [], ctx)
    await asyncio.sleep(0)
    ctx.cancel()
    _, err = await asyncio.wait_for(fut, 10)
    assert isinstance(err, Cancelled) and h.cleanup == ["cancelled", "finally"]
    ctx = Context("H.Blocks", deadline=time.monotonic() + 0.02)
    _, _, fut = await _start(s, "H.Blocks", [], ctx)
    _, err = await asyncio.wait_for(fut, 10)
    assert isinstance(err, DeadlineExceeded), err


async def test_a_handler_cancelling_itself_in_its_first_step(
    server: tuple[Server, Handlers],
) -> None:
    s, _ = server
    _, _, fut = await _start(s, "H.CancelsItself", [])
    _, err = await asyncio.wait_for(fut, 10)
    assert isinstance(err, Cancelled), err


async def test_errors_in_the_first_step_and_later(server: tuple[Server, Handlers]) -> None:
    s, _ = server
    at_once, inflight, fut = await _start(s, "H.Fails", ["rpc"])
    assert at_once and inflight == 0
    _, err = await fut
    assert isinstance(err, NotFound) and err.message == "no such thing"
    _, _, fut = await _start(s, "H.Fails", ["other"])
    _, err = await fut
    assert isinstance(err, Internal) and "internal error (ref" in err.message
    _, _, fut = await _start(s, "H.FailsLater", [])
    _, err = await asyncio.wait_for(fut, 10)
    assert isinstance(err, Internal)


async def test_started_from_inside_a_task_takes_an_ordinary_task(
    server: tuple[Server, Handlers],
) -> None:
    s, h = server
    assert await s.dispatch("H.Quick", [5]) == 6
    task, _, _ = h.seen[0]
    assert task is not asyncio.current_task()  # its own task, not the caller's
    assert await s.dispatch("H.Waits", [5]) == 10
