"""The native server's hot path: the fast lane driven in process through a fake transport
(write backpressure mid-read, the first read carrying the preface, the JSON codec's decoder),
then against real servers on 127.0.0.1 (a client that never reads, a fast lane cached for a
service that is then unregistered)."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

import wirecall
from support.native_wire import DEC, Hot, client_preface, raw_requests, read_replies, server_preface
from wirecall.protocol import frames as fr
from wirecall.transport import native


class _Transport:
    """Records writes; optionally reports its buffer full after the first one."""

    def __init__(self, pause_after_first: bool = False) -> None:
        self.writes: list[bytes] = []
        self.proto: Any = None
        self.pause_after_first = pause_after_first
        self.reading = True
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        if self.pause_after_first and len(self.writes) == 1:
            self.proto.pause_writing()

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


def _replies(writes: list[bytes]) -> list[fr.Event]:
    reader = fr.FrameConnection(client=True, max_frame_size=64 * 1024 * 1024)
    reader.initiate()
    reader.receive_data(server_preface())
    return [e for w in writes for e in reader.receive_data(w)]


def test_a_stalled_writer_mid_read_backlogs_the_rest_in_order_and_resumes() -> None:
    """The transport reports its buffer full after the first batch: the rest of that read's
    plain requests (fast lane and general path mixed) wait in the backlog, reading stops,
    and resume_writing answers all of them, in order, exactly once."""

    class Mixed(Hot):
        def Slow(self, s: str) -> str:  # not inline: the general path (a task)
            return s

    async def run() -> tuple[list[bytes], bool, bool]:
        server = wirecall.Server()
        server.register(Mixed(), name="Hot")
        proto = native.ServerProtocol(server)
        t = _Transport()
        t.proto = proto
        proto.connection_made(t)  # type: ignore[arg-type]
        proto.data_received(client_preface())
        t.writes.clear()
        t.pause_after_first = True
        calls: list[tuple[int, str, Any]] = []
        for i in range(1, 201):
            calls.append((i, "Hot.Slow" if i % 7 == 0 else "Hot.Echo", [f"v{i}"]))
        proto.data_received(raw_requests(calls))
        stalled = not t.reading
        backlog = len(proto._backlog)
        assert backlog > 0
        proto.resume_writing()
        # the general-path calls run in worker threads: wait (bounded) until all are answered
        deadline = time.monotonic() + 10
        while proto.calls and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        proto.connection_lost(None)
        return t.writes, stalled, t.reading

    writes, stalled, reading_again = asyncio.run(run())
    assert stalled and reading_again
    evs = _replies(writes)
    got = {e.call_id: DEC(e.body) for e in evs if isinstance(e, fr.ResponseReceived)}
    assert got == {i: f"v{i}" for i in range(1, 201)}
    assert len([e for e in evs if isinstance(e, fr.ResponseReceived)]) == 200
    fast_order = [e.call_id for e in evs
                  if isinstance(e, fr.ResponseReceived) and e.call_id % 7]
    assert fast_order == sorted(fast_order)


def test_the_first_read_with_preface_and_plain_requests_is_answered_after_the_preface() -> None:
    async def run() -> list[bytes]:
        server = wirecall.Server()
        server.register(Hot())
        proto = native.ServerProtocol(server)
        t = _Transport()
        proto.connection_made(t)  # type: ignore[arg-type]
        wire = client_preface() + raw_requests([(i, "Hot.Add", [i, 1]) for i in range(1, 40)])
        proto.data_received(wire)
        proto.connection_lost(None)
        return t.writes

    writes = asyncio.run(run())
    data = b"".join(writes)
    assert data[:4] == fr.MAGIC  # the server's preface before any reply
    reader = fr.FrameConnection(client=True)
    reader.initiate()
    evs = reader.receive_data(data)
    assert isinstance(evs[0], fr.PrefaceReceived)
    assert [(e.call_id, DEC(e.body)) for e in evs[1:]] == [  # type: ignore[attr-defined]
        (i, i + 1) for i in range(1, 40)]


def test_json_codec_connection_uses_its_own_decoder_on_the_fast_lane() -> None:
    async def run() -> tuple[Any, Any, Any]:
        server = wirecall.Server()
        server.register(Hot())
        [url] = await server.start("tcp://127.0.0.1:0")
        try:
            async with await wirecall.connect(url, codec="json") as c:
                a = await c.call("Hot.Add", 2, 3)
                b = await c.call("Hot.Echo", "é")
                with pytest.raises(wirecall.InvalidArgument):
                    await c.call("Hot.Add", "x", 3)
                d = await c.call("Hot.Add", 5, 5)
                return a, b, d
        finally:
            await server.close(drain_timeout=1)

    assert asyncio.run(run()) == (5, "é", 10)


async def test_a_client_that_never_reads_does_not_stall_the_server(serve: Any) -> None:
    """Hundreds of plain requests with big replies from a client that never reads: the
    server stops reading it, keeps serving others, and answers every call once drained."""
    url = await serve(Hot())
    port = int(url.rsplit(":", 1)[1])
    n = 400
    loop = asyncio.get_running_loop()
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", port))
    try:
        raw.setblocking(False)
        wire = client_preface() + raw_requests(
            [(i, "Hot.Blob", [32 * 1024]) for i in range(1, n + 1)])
        sent = 0
        deadline = time.monotonic() + 5
        while sent < len(wire) and time.monotonic() < deadline:
            try:
                sent += raw.send(wire[sent:])
            except BlockingIOError:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        async with await wirecall.connect(url) as other:  # the server still serves others
            assert await asyncio.wait_for(other.call("Hot.Add", 1, 2), 5) == 3
        raw.setblocking(True)
        got = await loop.run_in_executor(None, read_replies, raw, n, 20.0)
    finally:
        raw.close()
    replies = [e for e in got if isinstance(e, fr.ResponseReceived)]
    assert sorted(e.call_id for e in replies) == list(range(1, n + 1))
    assert all(len(DEC(e.body)) == 32 * 1024 for e in replies)


async def test_unregistered_service_is_no_longer_served_by_a_cached_fast_lane(
    serve: Any,
) -> None:
    url = await serve(Hot())
    async with await wirecall.connect(url) as c:
        assert await c.call("Hot.Add", 1, 1) == 2  # the lane is cached on this connection
        serve.server.registry.unregister("Hot")
        with pytest.raises(wirecall.Unimplemented):
            await c.call("Hot.Add", 1, 1)
