"""gRPC client backpressure against a server that does not read: the client stops reading a
server that floods it with frames to answer while its own writes are backed up (so its write
buffer stays bounded) and resumes once the server reads; a client stream's producer is held
by HTTP/2 flow control; and two wirecall peers moving bulk data both ways do not deadlock
(neither side stops reading merely because its write buffer is full)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import AsyncIterator, Iterator

import h2.config
import h2.connection
import h2.events
from hyperframe.frame import PingFrame

from wirecall import Server
from wirecall.transport import grpc as tg
from wirecall.transport.base import parse_url

MB = 1024 * 1024


def _small_socket_buffers(sock: socket.socket) -> None:
    """Keep the kernel from absorbing megabytes, so the test is about wirecall's buffers.
    (Not below 128 KiB: under loopback's 64 KiB MSS a closed TCP window reopens only on
    zero-window probes, seconds apart.)"""
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, opt, 128 * 1024)


class NonReadingServer:
    """A server that accepts one connection, sends its HTTP/2 preface and then reads nothing
    (beyond a 2 KiB stream buffer) until :meth:`start_reading`."""

    def __init__(self) -> None:
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        _small_socket_buffers(self.lsock)  # (inherited by the connection)
        self.lsock.bind(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.server: asyncio.Server | None = None
        self.conn: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] | None
        self.conn = None
        self.reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.conn = asyncio.get_running_loop().create_future()

        async def accepted(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            assert self.conn is not None
            self.conn.set_result((r, w))

        self.server = await asyncio.start_server(accepted, sock=self.lsock, limit=1024)

    async def accept(self) -> None:
        assert self.conn is not None
        _, w = await asyncio.wait_for(self.conn, 5)
        self.h2.initiate_connection()
        w.write(self.h2.data_to_send())

    async def send(self, data: bytes, timeout: float) -> bool:
        """Queue ``data``; False if the client stopped taking it within ``timeout`` (what is
        not sent yet stays queued, whole frames, and goes once the client reads)."""
        assert self.conn is not None
        _, w = self.conn.result()
        w.write(data)
        try:
            await asyncio.wait_for(w.drain(), timeout)
        except TimeoutError:
            return False
        return True

    def start_reading(self) -> None:
        """From now on behave: read everything, let h2 answer (PING acks...)."""
        assert self.conn is not None
        r, w = self.conn.result()

        async def run() -> None:
            with contextlib.suppress(ConnectionError):
                while data := await r.read(1 << 16):
                    for ev in self.h2.receive_data(data):
                        if isinstance(ev, h2.events.DataReceived):
                            self.h2.acknowledge_received_data(
                                ev.flow_controlled_length, ev.stream_id)
                    w.write(self.h2.data_to_send())

        self.reader = asyncio.ensure_future(run())

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
        if self.conn is not None and self.conn.done():
            self.conn.result()[1].close()
        if self.server is not None:
            self.server.close()


async def test_server_that_never_reads_cannot_grow_the_client_buffer(http2_backend: str) -> None:
    if http2_backend == "ngh2":
        await _ping_flood_ends_the_connection_on_ngh2()
        return
    srv = NonReadingServer()
    await srv.start()
    c = await tg.connect(parse_url(f"grpc://127.0.0.1:{srv.port}"))
    assert c.transport is not None
    _small_socket_buffers(c.transport.get_extra_info("socket"))
    peak = 0

    def sample() -> None:
        nonlocal peak
        if c.transport is not None:
            peak = max(peak, c.transport.get_write_buffer_size())

    try:
        await srv.accept()
        ping = PingFrame(0)
        ping.opaque_data = b"flooding"
        batch = ping.serialize() * 2000  # 34 KB of PINGs, each wants a 17-byte ack
        sent = 0
        while sent < 3 * MB:  # 3 MB of acks asked for, none read
            if not await srv.send(batch, 0.5):
                break  # the client stopped reading and its receive buffer is full
            sent += len(batch)
            sample()
        for _ in range(60):  # (a client that keeps reading would now drain the flood)
            await asyncio.sleep(0.05)
            sample()
            if c.transport is not None and not c.transport.is_reading():
                break
        assert peak > 64 * 1024, "the client's buffer never filled: the test measured nothing"
        assert sent < 3 * MB, "the client read the whole flood"
        assert peak < MB // 2, f"client write buffer grew to {peak / MB:.1f} MB"
        assert c.transport is not None and not c.transport.is_reading()
        # the server starts reading: the client drains, reads again, and the connection works
        srv.start_reading()
        assert await srv.send(b"", 5), "the rest of the flood never reached the client"
        assert await c.ping(timeout=5) < 5
        for _ in range(100):
            if c.transport.is_reading() and c.transport.get_write_buffer_size() == 0:
                break
            await asyncio.sleep(0.02)
        assert c.transport.is_reading()
        assert c.transport.get_write_buffer_size() == 0
    finally:
        await c.aclose()
        await srv.close()


async def _ping_flood_ends_the_connection_on_ngh2() -> None:
    """On ngh2, nghttp2's own limit (1000 PING/SETTINGS acks queued) takes the flood for what
    it is before any buffer grows: the client ends the connection (GOAWAY
    ENHANCE_YOUR_CALM), its write buffer stays small, and the call in flight fails."""
    srv = NonReadingServer()
    await srv.start()
    c = await tg.connect(parse_url(f"grpc://127.0.0.1:{srv.port}"))
    assert c.transport is not None
    _small_socket_buffers(c.transport.get_extra_info("socket"))
    peak = 0
    try:
        await srv.accept()
        ping = PingFrame(0)
        ping.opaque_data = b"flooding"
        batch = ping.serialize() * 2000
        sent = 0
        while sent < 3 * MB and not c.closed:
            if not await srv.send(batch, 0.5):
                break
            sent += len(batch)
            if c.transport is not None:
                peak = max(peak, c.transport.get_write_buffer_size())
        for _ in range(100):
            if c.closed:
                break
            await asyncio.sleep(0.02)
        assert c.closed, "the client never ended the flooding connection"
        assert sent < 3 * MB, "the client read the whole flood"
        assert peak < MB // 2, f"client write buffer grew to {peak / MB:.1f} MB"
    finally:
        await c.aclose()
        await srv.close()


async def test_client_stream_producer_is_held_by_flow_control() -> None:
    """The server never reads and never grants window beyond the initial 64 KiB: ``send``
    waits, and a background producer (``send_all``) pulls a bounded number of items."""
    srv = NonReadingServer()
    await srv.start()
    c = await tg.connect(parse_url(f"grpc://127.0.0.1:{srv.port}"))
    item = b"p" * 10000
    try:
        await srv.accept()
        s = c.open_stream("Sink.Put", None, None, None, bytes)
        sent = 0

        async def produce() -> None:
            nonlocal sent
            while True:
                await s.send(item)
                sent += 1

        task = asyncio.ensure_future(produce())
        await asyncio.sleep(0.5)
        assert not task.done()
        # 64 KiB of window plus HIGH_WATER (256 KiB) queued on the stream, then send waits
        assert 0 < sent <= (65535 + tg.HIGH_WATER) // len(item) + 2, sent
        assert c.conn.pending(s.sid) <= tg.HIGH_WATER + len(item) + 5
        assert c.transport is not None
        assert c.transport.get_write_buffer_size() < 65535 + 4096
        task.cancel()
        s.cancel()

        pulled = 0

        def endless() -> Iterator[bytes]:
            nonlocal pulled
            for _ in itertools.count():
                pulled += 1
                yield item

        s2 = c.open_stream("Sink.Put", endless(), None, None, bytes)
        await asyncio.sleep(0.5)
        # the first stream's data still holds the connection window: fewer fit now
        assert 0 < pulled <= tg.HIGH_WATER // len(item) + 2, pulled
        assert c.conn.pending(s2.sid) <= tg.HIGH_WATER + len(item) + 5
        s2.cancel()
    finally:
        await c.aclose()
        await srv.close()


class Echo:
    async def Echo(self, items: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for x in items:
            yield x


async def test_bulk_both_ways_between_wirecall_peers_does_not_deadlock() -> None:
    """32 bidi streams each sending and echoing 1.5 MB at once: more than the socket buffers
    hold in flight, so both sides' write buffers go over their high-water marks together.
    Had the client stopped reading then (as the server does), each would wait for the other."""
    server = Server()
    server.register(Echo())
    [url] = await server.start("grpc://127.0.0.1:0")
    c = await tg.connect(parse_url(url))
    msg = b"e" * 1_500_000

    async def one() -> int:
        s = c.open_stream("Echo.Echo", None, 15, None, bytes)

        async def read() -> int:
            return sum([len(x) async for x in s])

        reader = asyncio.ensure_future(read())
        await s.send(msg)
        await s.done_writing()
        return await reader

    try:
        got = await asyncio.wait_for(asyncio.gather(*[one() for _ in range(32)]), 15)
        assert got == [len(msg)] * 32
    finally:
        await c.aclose()
        await server.close(drain_timeout=1)
