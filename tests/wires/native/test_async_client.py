"""The native async client (``wirecall.transport.native.client``): compressed, plain and late
replies, write batching with calls in flight, keepalive against a silent peer, idle timeout."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import wirecall
from support.native_wire import Hot, silent_server
from wirecall import Unavailable
from wirecall.transport import native


async def test_compressed_and_plain_replies_and_late_replies_on_the_async_client() -> None:
    server = wirecall.Server()
    server.register(Hot())
    [url] = await server.start("tcp://127.0.0.1:0", compress_threshold=1024)
    async with await wirecall.connect(url) as c:
        big, small = await asyncio.gather(c.call("Hot.Blob", 100_000), c.call("Hot.Echo", "s"))
        assert big == b"x" * 100_000 and small == "s"
        # a call cancelled by the caller: its late reply is dropped, the connection lives on
        task = asyncio.ensure_future(c.call("Hot.Blob", 10))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await c.call("Hot.Add", 2, 2) == 4
    await server.close(drain_timeout=1)


async def test_calls_started_while_another_is_in_flight_are_all_written(serve: Any) -> None:
    """The first call is written at once, the next ones at the end of the iteration or
    every 16: with a few hundred started at once, every one is answered."""
    url = await serve(Hot())
    conn = await native.connect(wirecall.transport.base.parse_url(url))
    try:
        futs = [conn.start("Hot.Add", [i, 1], None, None, Any)[1] for i in range(300)]
        assert await asyncio.wait_for(asyncio.gather(*futs), 10) == [i + 1 for i in range(300)]
        # and sequential calls (nothing in flight each time) too
        for i in range(20):
            assert await conn.call("Hot.Add", [i, i], None, None, Any) == 2 * i
        assert conn.pending == 0
    finally:
        await conn.aclose()


async def test_async_client_keepalive_fails_calls_to_a_silent_peer() -> None:
    lsock, held, t = silent_server()
    port = lsock.getsockname()[1]
    try:
        conn = await native.connect(
            wirecall.transport.base.parse_url(f"tcp://127.0.0.1:{port}"), keepalive=0.2)
        t0 = time.monotonic()
        with pytest.raises(Unavailable):
            await asyncio.wait_for(conn.call("Any.Thing", [], None, None, Any), 5)
        assert time.monotonic() - t0 < 3
        assert conn.closed
    finally:
        lsock.close()
        for s in held:
            s.close()
        t.join(5)


async def test_async_client_idle_timeout_counts_from_the_connect(serve: Any) -> None:
    """A connection never used is idle from the start (as before the idle mark moved to
    the call ids): one keepalive tick after idle_timeout passed closes it."""
    url = await serve(Hot())
    conn = await native.connect(wirecall.transport.base.parse_url(url), keepalive=None)
    try:
        conn._idle_timeout = 0.05
        await asyncio.sleep(0.1)
        conn._on_keepalive()
        assert conn.closed
    finally:
        await conn.aclose()


async def test_async_client_idle_timeout_spares_a_connection_in_use(serve: Any) -> None:
    url = await serve(Hot())
    conn = await native.connect(
        wirecall.transport.base.parse_url(url), keepalive=None, idle_timeout=0.2)
    try:
        for i in range(8):  # 0.4 s of calls every 0.05 s: never idle
            assert await conn.call("Hot.Add", [i, 0], None, None, Any) == i
            await asyncio.sleep(0.05)
        assert not conn.closed
        deadline = time.monotonic() + 3
        while not conn.closed and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert conn.closed  # and idle afterwards: closed
    finally:
        await conn.aclose()
