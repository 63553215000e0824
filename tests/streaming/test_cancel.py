"""Leaving a stream early cancels the call: breaking out of ``async for`` / ``for`` (async
client and sync facade) or dropping an unfinished stream object ends the server's handler,
which sees the cancellation, on ``tcp://`` and ``grpc://``. Also ``SyncStream.cancel()`` and
sync stream deadlines."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import wirecall
import wirecall.sync
from wirecall import Server
from wirecall.errors import Cancelled, DeadlineExceeded

SCHEMES = ["tcp", "grpc", "ws"]


def _client_url(scheme: str, listening: str) -> str:
    """The address a client dials: a ws:// listener reports ws://host:port/ws."""
    return listening


class Endless:
    def __init__(self) -> None:
        self.running = 0
        self.cancelled = 0
        self.started = 0

    async def Forever(self) -> AsyncIterator[int]:
        self.started += 1
        self.running += 1
        try:
            i = 0
            while True:
                yield i
                i += 1
                await asyncio.sleep(0.001)
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise
        finally:
            self.running -= 1


async def _settled(server: Server, svc: Endless, started: int, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if svc.started == started and svc.running == 0 and server.inflight == 0:
            return
        gc.collect()
        await asyncio.sleep(0.02)
    raise AssertionError(f"handlers still running: {svc.running} of {svc.started}, "
                         f"server inflight {server.inflight}")


@pytest.fixture(params=SCHEMES)
async def served(request: Any) -> AsyncIterator[tuple[Server, Endless, str]]:
    svc = Endless()
    server = Server()
    server.register(svc)
    [url] = await server.start(f"{request.param}://127.0.0.1:0")
    yield server, svc, _client_url(request.param, url)
    await server.close(drain_timeout=1)


async def test_break_out_of_async_for_cancels_the_handler(
    served: tuple[Server, Endless, str],
) -> None:
    server, svc, url = served
    client = await wirecall.connect(url)
    try:
        for _ in range(5):
            async for x in client.stream("Endless.Forever", [], result_type=int):
                if x == 3:
                    break
        await _settled(server, svc, 5)
        assert svc.cancelled == 5
        # the connection is still good for more
        async for x in client.stream("Endless.Forever", [], result_type=int):
            if x == 1:
                break
        await _settled(server, svc, 6)
    finally:
        await client.close()


async def test_dropping_an_unfinished_stream_cancels_the_handler(
    served: tuple[Server, Endless, str],
) -> None:
    server, svc, url = served
    client = await wirecall.connect(url)
    try:
        for _ in range(3):
            st = client.stream("Endless.Forever", [], timeout=30, result_type=int)
            assert await st.recv() == 0
            del st
        await _settled(server, svc, 3)
        assert svc.cancelled == 3
    finally:
        await client.close()


class _ThreadServer:
    """A server on its own loop thread, for the blocking client."""

    def __init__(self, scheme: str) -> None:
        self.svc = Endless()
        self.server = Server()
        self.server.register(self.svc)
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.url = ""

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            [url] = self.loop.run_until_complete(
                self.server.start(f"{scheme}://127.0.0.1:0"))
            self.url = _client_url(scheme, url)
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(5)

    def settled(self, started: int, timeout: float = 5.0) -> None:
        fut = asyncio.run_coroutine_threadsafe(
            _settled(self.server, self.svc, started, timeout), self.loop)
        fut.result(timeout + 1)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(
            self.server.close(drain_timeout=1), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(params=SCHEMES)
def threaded(request: Any) -> Iterator[_ThreadServer]:
    ts = _ThreadServer(request.param)
    yield ts
    ts.stop()


def test_sync_break_and_drop_cancel_the_handler(threaded: _ThreadServer) -> None:
    with wirecall.sync.connect(threaded.url) as cl:
        for _ in range(3):
            for x in cl.stream("Endless.Forever", [], result_type=int):
                if x == 3:
                    break
        threaded.settled(3)
        s = cl.stream("Endless.Forever", [], timeout=30, result_type=int)
        assert s.recv() == 0
        del s
        gc.collect()
        threaded.settled(4)
        assert threaded.svc.cancelled == 4


def test_sync_cancel_and_deadline(threaded: _ThreadServer) -> None:
    with wirecall.sync.connect(threaded.url) as cl:
        s = cl.stream("Endless.Forever", [], result_type=int)
        assert s.recv() == 0
        s.cancel()
        with pytest.raises(Cancelled):
            for _ in range(10_000):
                s.recv()
        threaded.settled(1)
        t0 = time.monotonic()
        s = cl.stream("Endless.Forever", [], timeout=0.3, result_type=int)
        with pytest.raises(DeadlineExceeded):
            for _ in s:
                pass
        assert time.monotonic() - t0 < 5
        threaded.settled(2)
        assert threaded.svc.cancelled == 2
