"""Every task wirecall starts for a client stream is owned and finished.

A client-/bidi-streaming call whose requests come from an iterable sends them from a background
task; into a handler that never reads, that task waits for flow-control credit. However the
caller then lets go of the stream (drops it, breaks out of ``async for``, has its own task
cancelled, cancels it, leaves ``async with``, calls ``aclose()``), the task must end: no
"Task was destroyed but it is pending!" nor "exception was never retrieved" from asyncio,
and nothing reported to ``sys.unraisablehook``. A dropped stream must still cancel the call
on the server (the sender does not keep the stream alive). Covered on ``tcp://``,
``grpc://`` and ``ws://``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import wirecall
from wirecall import Server
from wirecall.errors import Cancelled, ConnectError
from wirecall.transport.base import parse_url

ITEM = "x" * 100_000  # big enough that a few fill gRPC's window and queue (256 KiB)


class Svc:
    def __init__(self) -> None:
        self.started = 0
        self.cancelled = 0
        self.read = 0

    async def Sink(self, items: AsyncIterator[str]) -> int:
        """Never reads: the client's sender soon runs out of credit."""
        self.started += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return 0

    async def Hello(self, items: AsyncIterator[str]) -> AsyncIterator[int]:
        """Sends one reply, then never reads (bidi)."""
        self.started += 1
        try:
            yield 1
            await asyncio.Event().wait()
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise

    async def Count(self, items: AsyncIterator[str]) -> int:
        """Reads everything."""
        self.started += 1
        try:
            async for _ in items:
                self.read += 1
        except BaseException:  # (cancelled, or the inbound stream failed with the reset)
            self.cancelled += 1
            raise
        return self.read


class Trouble:
    """What asyncio reports about tasks: log records of the "asyncio" logger and unraisable
    exceptions."""

    def __init__(self) -> None:
        self.records: list[str] = []
        self.unraisable: list[str] = []

    def __bool__(self) -> bool:
        return bool(self.records or self.unraisable)

    def __repr__(self) -> str:
        return f"asyncio log: {self.records}, unraisable: {self.unraisable}"


@pytest.fixture
def trouble() -> Iterator[Trouble]:
    t = Trouble()

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            t.records.append(record.getMessage()[:300])

    handler = Catch(logging.WARNING)
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    hook = sys.unraisablehook
    sys.unraisablehook = lambda u: t.unraisable.append(f"{u.exc_type}: {u.exc_value!r}")
    try:
        yield t
    finally:
        sys.unraisablehook = hook
        logger.removeHandler(handler)


async def settle() -> None:
    """Collect garbage and let the loop run what that scheduled, a few times over."""
    for _ in range(6):
        gc.collect()
        await asyncio.sleep(0.01)


@pytest.fixture(params=["tcp", "grpc", "ws"])
async def served(request: Any) -> AsyncIterator[tuple[Server, Svc, str]]:
    svc = Svc()
    server = Server()
    server.register(svc)
    if request.param == "ws":
        [u] = await server.start("http://127.0.0.1:0")
        url = f"ws://127.0.0.1:{parse_url(u).port}/ws"
    else:
        [url] = await server.start(f"{request.param}://127.0.0.1:0")
    yield server, svc, url
    await server.close(drain_timeout=1)


class Items:
    """An endless request iterator that counts what the sender pulled."""

    def __init__(self) -> None:
        self.pulled = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        self.pulled += 1
        return ITEM


async def blocked(items: Items, svc: Svc, started: int = 1) -> None:
    """Wait until the handler runs and the sender stopped pulling (it waits for credit)."""
    end = time.monotonic() + 5
    last = -1
    while time.monotonic() < end:
        if svc.started >= started and items.pulled and items.pulled == last:
            return
        last = items.pulled
        await asyncio.sleep(0.1)
    raise AssertionError(f"the sender never blocked: pulled {items.pulled}")


async def cancelled_on_server(server: Server, svc: Svc, n: int) -> None:
    end = time.monotonic() + 5
    while time.monotonic() < end:
        if svc.cancelled >= n and server.inflight == 0:
            return
        gc.collect()
        await asyncio.sleep(0.02)
    raise AssertionError(f"handler not cancelled: {svc.cancelled}, inflight {server.inflight}")


async def test_dropping_a_stream_whose_sender_waits_for_credit(
    served: tuple[Server, Svc, str], trouble: Trouble,
) -> None:
    server, svc, url = served
    async with await wirecall.connect(url) as client:
        items = Items()
        st = client.stream("Svc.Sink", items, result_type=int)
        await blocked(items, svc)
        writer = st._writer
        assert writer is not None and not writer.done()
        del st
        await settle()
        await cancelled_on_server(server, svc, 1)
        assert writer.cancelled()
        assert not trouble, trouble
    await settle()
    assert not trouble, trouble


async def test_the_callers_task_cancelled_while_its_stream_sends(
    served: tuple[Server, Svc, str], trouble: Trouble,
) -> None:
    server, svc, url = served
    async with await wirecall.connect(url) as client:
        items = Items()

        async def caller() -> int:
            result: int = await client.stream("Svc.Sink", items, result_type=int).result()
            return result

        task = asyncio.ensure_future(caller())
        await blocked(items, svc)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        del task
        await settle()
        await cancelled_on_server(server, svc, 1)
        assert not trouble, trouble
    await settle()
    assert not trouble, trouble


async def test_break_out_of_async_for_over_a_bidi_stream(
    served: tuple[Server, Svc, str], trouble: Trouble,
) -> None:
    server, svc, url = served
    async with await wirecall.connect(url) as client:
        items = Items()
        async for reply in client.stream("Svc.Hello", items, result_type=int):
            assert reply == 1
            await blocked(items, svc)
            break
        await settle()
        await cancelled_on_server(server, svc, 1)
        assert not trouble, trouble
    await settle()
    assert not trouble, trouble


@pytest.mark.parametrize("how", ["cancel", "async with", "aclose"])
async def test_cancel_close_and_async_with_finish_the_sender(
    served: tuple[Server, Svc, str], trouble: Trouble, how: str,
) -> None:
    server, svc, url = served
    async with await wirecall.connect(url) as client:
        items = Items()
        st = client.stream("Svc.Sink", items, result_type=int)
        writer = st._writer
        assert writer is not None
        if how == "async with":
            async with st:
                await blocked(items, svc)
            assert writer.done()  # cancelled and awaited on the way out
        elif how == "aclose":
            await blocked(items, svc)
            await st.aclose()
            assert writer.done()
        else:
            await blocked(items, svc)
            st.cancel()
            await settle()
            assert writer.done()
        assert writer.cancelled()
        assert not st._tasks
        with pytest.raises(Cancelled):
            await st.result()
        await cancelled_on_server(server, svc, 1)
        del st, writer
        await settle()
        assert not trouble, trouble


async def test_closing_the_connection_finishes_the_sender(
    served: tuple[Server, Svc, str], trouble: Trouble,
) -> None:
    _, svc, url = served
    client = await wirecall.connect(url)
    items = Items()
    st = client.stream("Svc.Sink", items, result_type=int)
    writer = st._writer
    assert writer is not None
    await blocked(items, svc)
    await client.close()
    await settle()
    assert writer.done()
    with pytest.raises(wirecall.RpcError):
        await st.result()
    del st, writer
    await settle()
    assert not trouble, trouble


async def test_an_iterable_that_raises_fails_the_call(
    served: tuple[Server, Svc, str], trouble: Trouble,
) -> None:
    """The sender's error is not left in a task nobody reads: it cancels the call and
    readers get it (before, the call hung and the error was logged as never retrieved)."""
    server, svc, url = served

    async def requests() -> AsyncIterator[str]:
        yield "a"
        yield "b"
        raise ValueError("no more requests today")

    async with await wirecall.connect(url) as client:
        st = client.stream("Svc.Count", requests(), result_type=int)
        with pytest.raises(Cancelled, match="no more requests today"):
            await asyncio.wait_for(st.result(), 5)
        writer = st._writer
        assert writer is None or writer.done()
        # the server's handler did not complete: cancelled (or never run, when the CANCEL
        # came in with the request)
        end = time.monotonic() + 5
        while (server.inflight or svc.started != svc.cancelled) and time.monotonic() < end:
            await asyncio.sleep(0.02)
        assert server.inflight == 0 and svc.started == svc.cancelled, (svc.started, svc.read)
        del st
        await settle()
        assert not trouble, trouble


async def test_a_pending_stream_whose_connection_fails_logs_nothing(trouble: Trouble) -> None:
    """``Client.stream`` before any connection is ready returns a PendingStream; dropped (or
    never used) while dialling fails, its opening task's error is not left unretrieved."""
    server = Server()
    [url] = await server.start("tcp://127.0.0.1:0")
    await server.close()  # nobody listens there any more
    client = wirecall.Client(url, connect_timeout=2)
    try:
        pending = client.stream("Svc.Sink", iter(["a"]), result_type=int)
        assert isinstance(pending, wirecall.streaming.PendingStream)
        task = pending._task
        del pending
        end = time.monotonic() + 5
        while not task.done() and time.monotonic() < end:
            await asyncio.sleep(0.02)
        assert task.done()
        with pytest.raises(ConnectError):
            task.result()
        del task
        await settle()
        assert not trouble, trouble
        # used, it raises the error to its caller
        with pytest.raises(ConnectError):
            await client.stream("Svc.Sink", iter(["a"]), result_type=int).result()
    finally:
        await client.close()
    await settle()
    assert not trouble, trouble
