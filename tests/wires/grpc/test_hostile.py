"""Hostile input against the gRPC server, crafted with h2 (and hyperframe) as a raw client:
oversized and malformed messages get the right status, floods get GOAWAY, and the server
keeps serving other connections."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from hyperframe.frame import ContinuationFrame, HeadersFrame

from wirecall import Server
from wirecall.protocol.grpc import frame_message
from wirecall.transport import grpc as tg
from wirecall.transport.base import parse_url


class Calc:
    async def Add(self, a: int, b: int) -> int:
        return a + b


@pytest.fixture
async def target() -> AsyncIterator[tuple[str, int]]:
    server = Server(max_message_size=1024 * 1024)
    server.register(Calc())
    [url] = await server.start("grpc://127.0.0.1:0")
    u = parse_url(url)
    yield u.host, u.port
    # after every attack, a fresh client still gets answers
    c = await tg.connect(u)
    try:
        assert await c.call("Calc.Add", [1, 2], 5, None, int) == 3
    finally:
        await c.aclose()
    await server.close(drain_timeout=1)


class Raw:
    """A bare HTTP/2 client: we decide every frame."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r, self.w = reader, writer
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.events: list[Any] = []
        self.eof = False

    @classmethod
    async def open(cls, host: str, port: int) -> Raw:
        r, w = await asyncio.open_connection(host, port)
        raw = cls(r, w)
        raw.flush()
        return raw

    def flush(self) -> None:
        self.w.write(self.h2.data_to_send())

    def headers(self, path: str = "/Calc/Add", end: bool = False) -> int:
        sid: int = self.h2.get_next_available_stream_id()
        self.h2.send_headers(sid, [
            (":method", "POST"), (":scheme", "http"), (":path", path),
            (":authority", "x"), ("content-type", "application/grpc+msgpack"),
            ("te", "trailers"),
        ], end_stream=end)
        return sid

    async def until(self, pred: Any, timeout: float = 5) -> Any:
        async def loop() -> Any:
            while True:
                for ev in self.events:
                    if pred(ev):
                        return ev
                try:
                    data = await self.r.read(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    self.eof = True
                    return None
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self.events += self.h2.receive_data(data)
                self.flush()

        return await asyncio.wait_for(loop(), timeout)

    async def status_of(self, sid: int) -> str | None:
        ev = await self.until(lambda e: isinstance(e, (h2.events.TrailersReceived,
                                                       h2.events.ResponseReceived))
                              and e.stream_id == sid and any(k == b"grpc-status"
                                                             for k, _ in e.headers))
        if ev is None:
            return None
        return dict(ev.headers)[b"grpc-status"].decode()

    def close(self) -> None:
        self.w.close()


async def test_oversized_message_refused_from_the_prefix(target: tuple[str, int]) -> None:
    raw = await Raw.open(*target)
    sid = raw.headers()
    # claims 64 MiB; only the 5-byte prefix is sent: the refusal cannot wait for the body
    raw.h2.send_data(sid, b"\x00" + (64 << 20).to_bytes(4, "big"))
    raw.flush()
    assert await raw.status_of(sid) == "8"  # RESOURCE_EXHAUSTED
    sid2 = raw.headers()  # the connection is still usable
    raw.h2.send_data(sid2, frame_message(b"\x92\x01\x02"), end_stream=True)
    raw.flush()
    assert await raw.status_of(sid2) == "0"
    raw.close()


async def test_malformed_prefix_and_framing(target: tuple[str, int]) -> None:
    raw = await Raw.open(*target)
    bad_flag = raw.headers()
    raw.h2.send_data(bad_flag, b"\x07\x00\x00\x00\x01\x00", end_stream=True)
    compressed_without_encoding = raw.headers()
    raw.h2.send_data(compressed_without_encoding, b"\x01\x00\x00\x00\x01\x00", end_stream=True)
    truncated = raw.headers()
    raw.h2.send_data(truncated, b"\x00\x00\x00\x00\x10abc", end_stream=True)
    two_messages = raw.headers()
    raw.h2.send_data(two_messages, frame_message(b"\x92\x01\x02") * 2, end_stream=True)
    no_message = raw.headers(end=True)
    garbage = raw.headers()
    raw.h2.send_data(garbage, frame_message(b"\xc1\xc1"), end_stream=True)
    unknown = raw.headers(path="/Nope/Nope", end=True)
    raw.flush()
    assert await raw.status_of(bad_flag) == "13"  # INTERNAL
    assert await raw.status_of(compressed_without_encoding) == "13"
    assert await raw.status_of(truncated) == "13"
    assert await raw.status_of(two_messages) == "13"
    assert await raw.status_of(no_message) == "13"
    assert await raw.status_of(garbage) == "3"  # INVALID_ARGUMENT
    assert await raw.status_of(unknown) == "12"  # UNIMPLEMENTED
    raw.close()


async def test_rapid_reset_flood_gets_goaway(target: tuple[str, int]) -> None:
    raw = await Raw.open(*target)
    for _ in range(400):
        sid = raw.headers()
        raw.h2.reset_stream(sid)
    raw.flush()
    ev = await raw.until(lambda e: isinstance(e, h2.events.ConnectionTerminated))
    assert ev is not None and ev.error_code == 11  # ENHANCE_YOUR_CALM
    raw.close()


async def test_continuation_flood_gets_goaway(target: tuple[str, int]) -> None:
    raw = await Raw.open(*target)
    await raw.until(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))
    hf = HeadersFrame(1)
    hf.data = raw.h2.encoder.encode([(":method", "POST"), (":path", "/Calc/Add")])
    out = hf.serialize()
    for _ in range(5000):
        cf = ContinuationFrame(1)
        cf.data = b"\x00" * 16  # never END_HEADERS
        out += cf.serialize()
    raw.w.write(out)
    ev = await raw.until(lambda e: isinstance(e, h2.events.ConnectionTerminated))
    assert ev is None or ev.error_code != 0  # GOAWAY with an error, or the connection dropped
    await raw.until(lambda e: False) if not raw.eof else None
    assert raw.eof
    raw.close()


async def test_garbage_instead_of_http2(target: tuple[str, int]) -> None:
    r, w = await asyncio.open_connection(*target)
    w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\xff" * 1000)
    try:
        data = await asyncio.wait_for(r.read(), 5)  # the server closes the connection
    except ConnectionResetError:
        data = b""
    types, off = [], 0  # the server's preface (and maybe GOAWAY), then EOF
    while off + 9 <= len(data):
        types.append(data[off + 3])
        if data[off + 3] == 7:
            assert int.from_bytes(data[off + 13:off + 17], "big") == 1  # PROTOCOL_ERROR
        off += 9 + int.from_bytes(data[off:off + 3], "big")
    assert set(types) <= {4, 7, 8}  # SETTINGS, WINDOW_UPDATE, GOAWAY: no response, then EOF
    w.close()
