"""gRPC server backpressure and limits against hostile or slow peers: a client that never
reads its replies cannot make the server buffer without bound (the server stops reading
new requests while its write buffer is over the high-water mark), the advertised
SETTINGS_MAX_CONCURRENT_STREAMS is enforced, and a slow handler reading a client stream
keeps the client's sender waiting instead of growing a buffer."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import msgspec

from wirecall import Server
from wirecall.protocol.grpc import frame_message
from wirecall.transport import grpc as tg
from wirecall.transport.base import parse_url

MB = 1024 * 1024


class Big:
    started = 0

    async def Get(self, n: int) -> bytes:
        Big.started += 1
        await asyncio.sleep(0)
        return b"x" * n


class Slow:
    def __init__(self) -> None:
        self.taken = 0
        self.gate = asyncio.Event()

    async def Sink(self, items: AsyncIterator[bytes]) -> int:
        await self.gate.wait()
        n = 0
        async for _ in items:
            self.taken += 1
            n += 1
        return n


def _h2_client(window: int = 2**31 - 1) -> h2.connection.H2Connection:
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.local_settings = h2.settings.Settings(
        client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
    c.initiate_connection()
    if window > 65535:
        c.increment_flow_control_window(window - 65535)
    return c


def _request(c: h2.connection.H2Connection, path: str, body: bytes, end: bool = True) -> int:
    sid: int = c.get_next_available_stream_id()
    c.send_headers(sid, [
        (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "x"),
        ("content-type", "application/grpc+msgpack"), ("te", "trailers"),
    ])
    if body or end:
        c.send_data(sid, body, end_stream=end)
    return sid


async def _nonreader(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: tiny window
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    return sock


async def test_client_that_never_reads_cannot_grow_the_server_buffer() -> None:
    Big.started = 0
    server = Server()
    server.register(Big())
    [url] = await server.start("grpc://127.0.0.1:0")
    u = parse_url(url)
    loop = asyncio.get_running_loop()
    sock = await _nonreader(u.host, u.port)
    c = _h2_client()  # a huge HTTP/2 window: flow control alone would not stop the server
    await loop.sock_sendall(sock, c.data_to_send())
    body = frame_message(msgspec.msgpack.encode([MB]))
    peak = 0

    def sample() -> None:
        nonlocal peak
        for p in server.listeners[0].connections:  # type: ignore[attr-defined]
            if p.transport is not None:
                peak = max(peak, p.transport.get_write_buffer_size())

    try:
        for _ in range(6):  # 96 MB of replies asked for in bursts of 16 calls, none read
            for _ in range(16):
                _request(c, "/Big/Get", body)
            await asyncio.wait_for(loop.sock_sendall(sock, c.data_to_send()), 5)
            for _ in range(10):
                await asyncio.sleep(0.02)
                sample()
        for _ in range(25):
            await asyncio.sleep(0.02)
            sample()
        assert peak > 0, "the server wrote nothing: the test measured nothing"
        # the calls parsed before the first pause run (one burst); later bursts stay unread
        assert Big.started <= 32, f"{Big.started} of 96 calls started"
        assert peak < 20 * MB, f"server write buffer grew to {peak / MB:.0f} MB"
        # everyone else is still served, on a new connection
        other = await tg.connect(u)
        try:
            assert await other.call("Big.Get", [10], 5, None, bytes) == b"x" * 10
        finally:
            await other.aclose()
    finally:
        sock.close()
        await server.close(drain_timeout=1)


async def test_blocked_connection_resumes_when_the_client_reads() -> None:
    """The pause is not a deadlock: once the client reads, every queued call is answered."""
    server = Server()
    server.register(Big())
    [url] = await server.start("grpc://127.0.0.1:0")
    u = parse_url(url)
    loop = asyncio.get_running_loop()
    sock = await _nonreader(u.host, u.port)
    c = _h2_client()
    await loop.sock_sendall(sock, c.data_to_send())
    body = frame_message(msgspec.msgpack.encode([256 * 1024]))
    sids = set()
    try:
        for _ in range(40):
            sids.add(_request(c, "/Big/Get", body))
        await asyncio.wait_for(loop.sock_sendall(sock, c.data_to_send()), 5)
        await asyncio.sleep(0.3)  # the server fills its buffer and pauses
        ended: set[int] = set()
        got = 0

        async def read_all() -> None:
            nonlocal got
            while ended != sids:
                data = await loop.sock_recv(sock, 1 << 16)
                assert data, "server closed the connection"
                for ev in c.receive_data(data):
                    if isinstance(ev, h2.events.DataReceived):
                        got += len(ev.data)
                        c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.TrailersReceived):
                        assert (b"grpc-status", b"0") in ev.headers
                        ended.add(ev.stream_id)
                out = c.data_to_send()
                if out:
                    await loop.sock_sendall(sock, out)

        await asyncio.wait_for(read_all(), 15)
        assert got >= 40 * 256 * 1024
    finally:
        sock.close()
        await server.close(drain_timeout=1)


async def test_max_concurrent_streams_is_advertised_and_enforced() -> None:
    server = Server()
    server.register(Slow())
    [url] = await server.start("grpc://127.0.0.1:0", max_concurrent_streams=3)
    u = parse_url(url)
    r, w = await asyncio.open_connection(u.host, u.port)
    c = _h2_client(65535)
    w.write(c.data_to_send())
    events: list[Any] = []

    async def pump(pred: Any) -> Any:
        while True:
            for ev in events:
                if pred(ev):
                    return ev
            data = await r.read(65536)
            if not data:
                return None
            events.extend(c.receive_data(data))
            w.write(c.data_to_send())

    try:
        ev = await asyncio.wait_for(pump(lambda e: isinstance(e, h2.events.RemoteSettingsChanged)
                                         and h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS
                                         in e.changed_settings), 5)
        assert ev.changed_settings[
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS].new_value == 3
        for _ in range(3):  # three open client streams into a handler that waits
            _request(c, "/Slow/Sink", b"", end=False)
        w.write(c.data_to_send())
        # a fourth stream breaks the advertised limit (make our h2 forget it to send one)
        c.remote_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = 100
        c.remote_settings.acknowledge()
        _request(c, "/Slow/Sink", b"", end=False)
        w.write(c.data_to_send())
        ev = await asyncio.wait_for(
            pump(lambda e: isinstance(e, h2.events.ConnectionTerminated)), 5)
        assert ev is not None and ev.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    finally:
        w.close()
        with contextlib.suppress(Exception):
            await w.wait_closed()
        await server.close(drain_timeout=1)
