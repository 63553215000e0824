"""Client-to-server flow control: a client streaming into a slow handler is held back by the
server's window (native credit on tcp://, HTTP/2 window on grpc://) instead of filling the
server's memory, and resumes when the handler reads. A raw native client that sends more
messages than its credit gets RESOURCE_EXHAUSTED; the server keeps serving."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

import wirecall
from wirecall import Server, Status
from wirecall.protocol.frames import FrameConnection
from wirecall.transport.base import parse_url
from wirecall.transport.native.messages import INITIAL_WINDOW

CHUNK = 64 * 1024  # bytes per message on grpc:// (its window counts bytes)


class Slow:
    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.taken = 0

    async def Sink(self, items: AsyncIterator[bytes]) -> int:
        await self.gate.wait()
        n = 0
        async for _ in items:
            n += 1
            self.taken += 1
        return n

    async def Add(self, a: int, b: int) -> int:
        return a + b


@pytest.mark.parametrize("scheme", ["tcp", "grpc"])
async def test_client_stream_into_a_slow_handler_waits_for_the_window(scheme: str) -> None:
    svc = Slow()
    server = Server()
    server.register(svc)
    [url] = await server.start(f"{scheme}://127.0.0.1:0")
    total = 100
    try:
        async with await wirecall.connect(url) as client:
            st = client.stream("Slow.Sink", timeout=20, result_type=int)
            sent = 0

            async def produce() -> None:
                nonlocal sent
                for _ in range(total):
                    await st.send(b"m" * CHUNK)
                    sent += 1
                await st.done_writing()

            task = asyncio.create_task(produce())
            await asyncio.sleep(0.5)
            # the sender is stopped by the window while the handler reads nothing
            if scheme == "tcp":  # INITIAL_WINDOW messages of credit
                assert sent == INITIAL_WINDOW
            else:  # 1 MiB stream window + 256 KiB queued on the client, then send() waits
                assert 0 < sent <= (1 << 20) // CHUNK + 6, sent
            assert not task.done()
            assert svc.taken == 0
            svc.gate.set()  # the handler starts reading: credit flows back, all arrive
            await asyncio.wait_for(task, 10)
            assert await st.result() == total
            assert svc.taken == total
    finally:
        await server.close(drain_timeout=1)


async def test_native_client_over_its_credit_gets_resource_exhausted() -> None:
    svc = Slow()
    server = Server()
    server.register(svc)
    [url] = await server.start("tcp://127.0.0.1:0")
    u = parse_url(url)
    r, w = await asyncio.open_connection(u.host, u.port)
    try:
        fc = FrameConnection(client=True)
        fc.initiate()
        fc.send_request(1, "Slow.Sink", b"", stream=True)
        for i in range(INITIAL_WINDOW * 3):  # ignores the credit the server granted
            fc.send_message(1, msgspec.msgpack.encode(b"%d" % i))
        w.write(fc.data_to_send())
        events: list[Any] = []

        async def read() -> Any:
            while True:
                data = await r.read(65536)
                assert data, "connection closed without an error frame"
                for ev in fc.receive_data(data):
                    events.append(ev)
                    if type(ev).__name__ in ("ErrorReceived", "ResponseReceived"):
                        return ev

        ev = await asyncio.wait_for(read(), 5)
        assert type(ev).__name__ == "ErrorReceived"
        assert ev.status == Status.RESOURCE_EXHAUSTED
        assert "credit" in ev.message
        # same connection, next call: still served
        fc.send_request(3, "Slow.Add", msgspec.msgpack.encode([2, 3]))
        w.write(fc.data_to_send())
        ev = await asyncio.wait_for(read(), 5)
        assert type(ev).__name__ == "ResponseReceived"
        assert msgspec.msgpack.decode(ev.body) == 5
    finally:
        w.close()
        await server.close(drain_timeout=1)
