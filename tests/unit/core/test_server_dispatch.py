"""The Server's dispatch without a network: ``Server.start_call`` (what every transport calls
through the seam) and ``Server.dispatch`` (its awaitable form). Which path a call takes (inline
on the calling stack, a task, a worker thread), interceptors, deadlines, how errors map, the
fast-lane decision, drain on close."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from typing import Any

import msgspec
import pytest

from wirecall import (
    Context,
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    NotFound,
    RpcError,
    Server,
    Status,
    Unavailable,
    Unimplemented,
    current_context,
    method,
)


class Paths:
    """One method per dispatch path; each records where it ran."""

    def __init__(self) -> None:
        self.threads: list[str] = []
        self.tasks: list[asyncio.Task[Any] | None] = []
        self.contexts: list[Context | None] = []

    def _saw(self) -> None:
        self.threads.append(threading.current_thread().name)
        try:
            self.tasks.append(asyncio.current_task())
        except RuntimeError:  # no running loop in this thread
            self.tasks.append(None)
        self.contexts.append(current_context())

    @method(inline=True)
    def Inline(self, a: int, b: int) -> int:
        self._saw()
        return a + b

    async def Async(self, a: int, b: int) -> int:
        self._saw()
        await asyncio.sleep(0)
        return a * b

    def Threaded(self, a: int) -> int:
        self._saw()
        return -a

    async def Sleep(self, seconds: float, ctx: Context) -> str:
        await asyncio.sleep(seconds)
        return "slept"

    def ThreadSleep(self, seconds: float, ctx: Context) -> bool:
        """Polls ``ctx.cancelled`` (all a worker thread can see of a deadline)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if ctx.cancelled:
                return True
            time.sleep(0.005)
        return False

    @method(inline=True)
    def Boom(self) -> None:
        raise ValueError("bad value")

    async def NotThere(self, key: str) -> None:
        raise NotFound(message=f"no {key}")

    @method(inline=True)
    def WithContext(self, ctx: Context) -> str:
        return f"{ctx.method}|{ctx.metadata.get('k', '')}"


def _server(**kw: Any) -> tuple[Server, Paths]:
    paths = Paths()
    return Server(**kw).register(paths), paths


class Outcome:
    """An ``on_done`` that records how the call ended."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, BaseException | None]] = []
        self.event = asyncio.Event()

    def __call__(self, result: Any, exc: BaseException | None) -> None:
        self.calls.append((result, exc))
        self.event.set()

    async def wait(self, timeout: float = 5.0) -> tuple[Any, BaseException | None]:
        await asyncio.wait_for(self.event.wait(), timeout)
        assert len(self.calls) == 1, self.calls
        return self.calls[0]


# -- the three paths -------------------------------------------------------------------------


def test_inline_def_completes_before_start_call_returns_on_the_calling_stack() -> None:
    """No event loop at all: an inline handler needs none, and on_done has run on return."""
    server, paths = _server()
    done = Outcome()
    ctx = Context("Paths.Inline")
    server.start_call("Paths.Inline", [2, 3], ctx, done)
    assert done.calls == [(5, None)]
    assert paths.threads == [threading.current_thread().name]
    assert paths.contexts == [ctx]  # the context was current while the handler ran
    assert current_context() is None  # and reset afterwards
    assert server.inflight == 0


async def test_async_handler_runs_in_a_tracked_task() -> None:
    server, paths = _server()
    done = Outcome()
    me = asyncio.current_task()
    server.start_call("Paths.Async", [4, 5], Context(), done)
    assert done.calls == []  # not yet: it runs in a task
    assert server.inflight == 1
    assert await done.wait() == (20, None)
    assert server.inflight == 0
    assert paths.tasks[0] is not None and paths.tasks[0] is not me
    assert isinstance(paths.contexts[0], Context)


async def test_plain_def_runs_in_a_worker_thread_with_its_context() -> None:
    server, paths = _server()
    done = Outcome()
    ctx = Context(metadata={"k": "v"})
    server.start_call("Paths.Threaded", [7], ctx, done)
    assert done.calls == []
    assert await done.wait() == (-7, None)
    assert paths.threads[0].startswith("wirecall")
    assert paths.threads[0] != threading.current_thread().name
    assert paths.contexts == [ctx]
    assert ctx.method == "Paths.Threaded"  # start_call names the context's method


async def test_inline_def_with_an_interceptor_runs_in_a_task_through_it() -> None:
    seen: list[str] = []

    async def outer(call: Any, proceed: Any) -> Any:
        seen.append(f"outer>{call.method}")
        result = await proceed(call)
        seen.append("outer<")
        return result * 10

    async def inner(call: Any, proceed: Any) -> Any:
        seen.append(f"inner>{call.args}")
        call.args[0] = 100  # interceptors may change the decoded arguments
        return await proceed(call)

    server, _ = _server(interceptors=[outer, inner])
    done = Outcome()
    server.start_call("Paths.Inline", [1, 2], Context(), done)
    assert done.calls == []  # with interceptors even an inline handler goes to a task
    assert await done.wait() == (1020, None)
    assert seen == ["outer>Paths.Inline", "inner>[1, 2]", "outer<"]


async def test_an_interceptor_may_refuse_a_call() -> None:
    async def auth(call: Any, proceed: Any) -> Any:
        if call.metadata.get("token") != "ok":
            raise RpcError(Status.PERMISSION_DENIED, "no token")
        return await proceed(call)

    server, _ = _server(interceptors=[auth])
    with pytest.raises(RpcError) as ei:
        await server.dispatch("Paths.Async", [1, 1])
    assert ei.value.status == Status.PERMISSION_DENIED
    ok = await server.dispatch("Paths.Async", [2, 3], Context(metadata={"token": "ok"}))
    assert ok == 6


async def test_named_params_and_the_context_parameter() -> None:
    server, _ = _server()
    assert await server.dispatch("Paths.Async", {"a": 3, "b": 4}) == 12
    got = await server.dispatch("Paths.WithContext", [], Context(metadata={"k": "v"}))
    assert got == "Paths.WithContext|v"


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "message"), [
    ("Nope.Add", "unknown service 'Nope'"),
    ("Paths.Nope", "unknown method 'Paths.Nope'"),
])
def test_unknown_service_and_unknown_method_are_told_apart(name: str, message: str) -> None:
    server, _ = _server()
    done = Outcome()
    server.start_call(name, [], Context(), done)
    [(result, exc)] = done.calls
    assert result is None and isinstance(exc, Unimplemented)
    assert message in exc.message


def test_bad_params_are_invalid_argument_naming_the_problem() -> None:
    server, _ = _server()
    for params, needle in [(["x", 1], "invalid argument 'a'"), ([1], "missing argument 'b'")]:
        done = Outcome()
        server.start_call("Paths.Inline", params, Context(), done)
        [(_, exc)] = done.calls
        assert isinstance(exc, InvalidArgument), exc
        assert needle in exc.message


async def test_handler_exceptions_map_to_internal_and_rpc_errors_pass_through() -> None:
    server, _ = _server()
    with pytest.raises(Internal) as ei:
        await server.dispatch("Paths.Boom", [])
    # opaque by default: a reference, never the exception's text (issue #10)
    assert re.fullmatch(r"internal error \(ref [0-9a-f]{12}\)", ei.value.message), ei.value
    assert "bad value" not in repr(ei.value.details)
    with pytest.raises(NotFound, match="no key"):
        await server.dispatch("Paths.NotThere", ["key"])

    debug, _ = _server(debug=True)
    with pytest.raises(Internal) as ei:
        await debug.dispatch("Paths.Boom", [])
    assert ei.value.details is not None and "Traceback" in ei.value.details
    assert "raise ValueError" in ei.value.details


# -- deadlines and cancellation ------------------------------------------------------------


def test_a_deadline_already_passed_is_refused_before_the_handler_runs() -> None:
    server, paths = _server()
    done = Outcome()
    server.start_call("Paths.Inline", [1, 1], Context(deadline=time.monotonic() - 1), done)
    [(_, exc)] = done.calls
    assert isinstance(exc, DeadlineExceeded) and "before Paths.Inline started" in exc.message
    assert paths.threads == []


async def test_an_async_handler_past_its_deadline_is_cancelled_with_deadline_exceeded() -> None:
    server, _ = _server()
    ctx = Context(deadline=time.monotonic() + 0.05)
    t0 = time.monotonic()
    with pytest.raises(DeadlineExceeded, match=r"while serving Paths\.Sleep"):
        await server.dispatch("Paths.Sleep", [5], ctx)
    assert time.monotonic() - t0 < 2
    assert ctx.cancelled and server.inflight == 0


async def test_a_thread_handler_sees_its_deadline_as_cancelled() -> None:
    server, _ = _server()
    ctx = Context(deadline=time.monotonic() + 0.1)
    done = Outcome()
    server.start_call("Paths.ThreadSleep", [3], ctx, done)
    _, exc = await done.wait()
    assert isinstance(exc, DeadlineExceeded)
    deadline = time.monotonic() + 2
    while not ctx.cancelled and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert ctx.cancelled  # what the thread polls: it stops early instead of running 3 s


async def test_cancelling_dispatch_cancels_the_handler() -> None:
    server, _ = _server()
    ctx = Context()
    task = asyncio.ensure_future(server.dispatch("Paths.Sleep", [5], ctx))
    await asyncio.sleep(0.02)
    assert server.inflight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ctx.cancelled
    for _ in range(20):
        if server.inflight == 0:
            break
        await asyncio.sleep(0.01)
    assert server.inflight == 0


# -- the fast lane -------------------------------------------------------------------------


def test_fast_lane_holds_inline_defs_without_context_and_nothing_else() -> None:
    server, _ = _server()
    lane = server.fast_lane(msgspec.msgpack)
    entry = lane["Paths.Inline"]
    assert entry is not None
    handler, decoder = entry
    assert handler(*decoder.decode(msgspec.msgpack.encode([2, 5]))) == 7
    for name in ("Paths.Async", "Paths.Threaded", "Paths.WithContext", "Nope.Nope"):
        assert lane[name] is None, name
    assert server.fast_lane(msgspec.msgpack) is lane  # one table per codec, shared
    assert server.fast_lane(None)["Paths.Inline"] is None  # not a msgspec codec


def test_an_interceptor_empties_the_fast_lane() -> None:
    server, _ = _server()
    lane = server.fast_lane(msgspec.msgpack)
    assert lane["Paths.Inline"] is not None

    async def icpt(call: Any, proceed: Any) -> Any:
        return await proceed(call)

    server.add_interceptor(icpt)
    assert "Paths.Inline" not in lane  # cleared...
    assert lane["Paths.Inline"] is None  # ...and now decided against


# -- shutdown ------------------------------------------------------------------------------


async def test_close_drains_calls_in_flight_then_refuses_new_ones() -> None:
    server, _ = _server()
    done = Outcome()
    server.start_call("Paths.Sleep", [0.2], Context(), done)
    closing = asyncio.ensure_future(server.close(drain_timeout=5))
    await asyncio.sleep(0.05)
    assert server.closing and not closing.done()  # waiting for the call
    late = Outcome()
    server.start_call("Paths.Inline", [1, 1], Context(), late)
    [(_, exc)] = late.calls
    assert isinstance(exc, Unavailable) and "shutting down" in exc.message
    assert server.fast_lane(msgspec.msgpack)["Paths.Inline"] is None  # no fast lane either
    await asyncio.wait_for(closing, 5)
    assert await done.wait() == ("slept", None)  # it finished, it was not cancelled


async def test_close_cancels_what_outlives_the_drain_timeout() -> None:
    server, _ = _server()
    done = Outcome()
    server.start_call("Paths.Sleep", [30], Context(), done)
    t0 = time.monotonic()
    await server.close(drain_timeout=0.1)
    assert time.monotonic() - t0 < 3
    _, exc = await done.wait()
    assert isinstance(exc, Unavailable) and "shutting down" in exc.message
    assert server.inflight == 0


async def test_describe_is_served_like_any_method() -> None:
    server, _ = _server()
    desc = await server.dispatch("rpc.describe", [])
    names = {m["name"] for m in desc["Paths"]}
    assert {"Paths.Inline", "Paths.Async", "Paths.Threaded", "Paths.Sleep"} <= names
    assert not any("_saw" in n for n in names)  # private methods are not exposed
