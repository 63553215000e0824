"""gzip on gRPC replies (grpc/doc/compression.md): a server started with
``compression="gzip"`` compresses reply messages for clients whose ``grpc-accept-encoding``
lists gzip, per message (small ones stay plain, the flag says which); the default server
never compresses; the wirecall client inflates compressed replies from grpcio and wirecall;
inflating stops at the size limit (decompression bombs get RESOURCE_EXHAUSTED on both
sides); a reply in an encoding the client does not know is INTERNAL naming it.

"Compressed on the wire" is measured with a byte-counting TCP proxy between the peers."""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import msgspec
import pytest

from support.grpc_peer import WcTestService, _h, g_stream_out, g_unary, grpcio_stubs, pb
from wirecall import Server
from wirecall.errors import Internal, ResourceExhausted
from wirecall.protocol import grpc as gp
from wirecall.protocol.grpc import connection as grpc_connection
from wirecall.status import Status
from wirecall.transport import grpc as tg
from wirecall.transport.base import parse_url

MB = 1024 * 1024


class CountingProxy:
    """A TCP relay to ``host:port`` counting bytes each way (``up``: to the server)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.up = self.down = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _conn(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection(self.host, self.port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            try:
                while data := await src.read(65536):
                    if up:
                        self.up += len(data)
                    else:
                        self.down += len(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        for t in (pipe(r, uw, True), pipe(ur, w, False)):
            task = asyncio.ensure_future(t)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.sleep(0)


@pytest.fixture
def gz(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """Sizes of the messages wirecall compressed / inflated."""
    seen: dict[str, list[int]] = {"compress": [], "decompress": []}
    comp, decomp = gp.gzip_compress, gp.gzip_decompress

    def c(payload: bytes) -> bytes:
        seen["compress"].append(len(payload))
        return comp(payload)

    def d(payload: bytes, max_size: int) -> bytes:
        out = decomp(payload, max_size)
        seen["decompress"].append(len(out))
        return out

    monkeypatch.setattr(grpc_connection, "gzip_compress", c)  # where the connection calls it
    monkeypatch.setattr(grpc_connection, "gzip_decompress", d)
    return seen


@pytest.fixture
def inflated(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every chunk zlib produced while inflating (proof a bomb was never inflated whole)."""
    sizes: list[int] = []
    real = zlib.decompressobj

    class Spy:
        def __init__(self, wbits: int) -> None:
            self._d = real(wbits)

        def decompress(self, data: bytes, max_length: int = 0) -> bytes:
            out = self._d.decompress(data, max_length)
            sizes.append(len(out))
            return out

        def __getattr__(self, name: str) -> Any:
            return getattr(self._d, name)

    monkeypatch.setattr(zlib, "decompressobj", Spy)
    return sizes


async def _wirecall(*services: Any, **opts: Any) -> tuple[Server, str]:
    server = Server(max_message_size=opts.pop("max_message_size", 4 * MB))
    for s in services or (WcTestService(),):
        server.register(s)
    [url] = await server.start("grpc://127.0.0.1:0", **opts)
    return server, url


async def _proxy_to(url: str) -> CountingProxy:
    u = parse_url(url)
    return CountingProxy(u.host, u.port)


# -- grpcio client, wirecall server ------------------------------------------------------------


async def test_grpcio_gzip_client_gets_gzip_replies(gz: dict[str, list[int]]) -> None:
    server, url = await _wirecall(compression="gzip")
    proxy = await _proxy_to(url)
    ch = grpc.aio.insecure_channel(await proxy.start(), compression=grpc.Compression.Gzip)
    try:
        st = grpcio_stubs(ch)
        call = st["UnaryCall"](pb.SimpleRequest(response_size=300000), timeout=5)
        r = await call
        assert r.payload.body == b"\0" * 300000
        assert 300000 <= gz["compress"][0] < 300100  # the reply, compressed by wirecall
        s = st["StreamingOutputCall"](pb.StreamingOutputCallRequest(response_parameters=[
            pb.ResponseParameters(size=n) for n in (10, 200000, 20, 200000)]), timeout=5)
        assert [len(m.payload.body) async for m in s] == [10, 200000, 20, 200000]
        # each large message compressed; the 10- and 20-byte ones went plain
        assert len(gz["compress"]) == 3
        assert all(n > 200000 for n in gz["compress"])
        duplex = st["FullDuplexCall"](timeout=5)
        for size in (150000, 5):
            await duplex.write(pb.StreamingOutputCallRequest(
                response_parameters=[pb.ResponseParameters(size=size)]))
            assert len((await duplex.read()).payload.body) == size
        await duplex.done_writing()
        assert await duplex.code() == grpc.StatusCode.OK
        assert len(gz["compress"]) == 4
        # 700 KB of replies crossed the wire as a few KB
        assert proxy.down < 40000, f"{proxy.down} bytes from the server: not compressed"
    finally:
        await ch.close()
        await proxy.close()
        await server.close(drain_timeout=1)


async def test_default_server_does_not_compress(gz: dict[str, list[int]]) -> None:
    """gRPC's compression spec: no compression configured means none, whatever the client
    accepts (grpcio declares gzip in grpc-accept-encoding)."""
    server, url = await _wirecall()
    proxy = await _proxy_to(url)
    ch = grpc.aio.insecure_channel(await proxy.start(), compression=grpc.Compression.Gzip)
    try:
        r = await grpcio_stubs(ch)["UnaryCall"](pb.SimpleRequest(response_size=300000),
                                                timeout=5)
        assert len(r.payload.body) == 300000
        assert gz["compress"] == []
        assert proxy.down > 300000
    finally:
        await ch.close()
        await proxy.close()
        await server.close(drain_timeout=1)


# -- the wire, seen by a raw HTTP/2 client -----------------------------------------------------


class Blobs:
    async def Sizes(self, sizes: list[int]) -> AsyncIterator[bytes]:
        for n in sizes:
            yield b"b" * n

    async def One(self, n: int) -> bytes:
        return b"o" * n

    async def Len(self, data: bytes) -> int:
        return len(data)


async def _raw_call(url: str, path: str, arg: Any, accept: str | None) -> tuple[
        dict[bytes, bytes], list[tuple[int, bytes]], dict[bytes, bytes]]:
    """One call on a bare h2 connection: response headers, (flag, payload) of every
    message as sent, trailers."""
    u = parse_url(url)
    r, w = await asyncio.open_connection(u.host, u.port)
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    hdrs = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "x"),
            ("content-type", "application/grpc+msgpack"), ("te", "trailers")]
    if accept is not None:
        hdrs.append(("grpc-accept-encoding", accept))
    c.send_headers(1, hdrs)
    c.send_data(1, gp.frame_message(msgspec.msgpack.encode([arg])), end_stream=True)
    w.write(c.data_to_send())
    head: dict[bytes, bytes] = {}
    trailers: dict[bytes, bytes] = {}
    body = bytearray()

    async def pump() -> None:
        while not trailers:
            data = await r.read(65536)
            assert data, "server closed the connection"
            for ev in c.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    head.update(ev.headers)
                    if b"grpc-status" in head:  # trailers-only
                        trailers.update(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    body.extend(ev.data)
                    c.acknowledge_received_data(ev.flow_controlled_length, 1)
                elif isinstance(ev, h2.events.TrailersReceived):
                    trailers.update(ev.headers)
            w.write(c.data_to_send())

    try:
        await asyncio.wait_for(pump(), 5)
    finally:
        w.close()
    msgs = []
    while body:
        n = int.from_bytes(body[1:5], "big")
        msgs.append((body[0], bytes(body[5:5 + n])))
        del body[:5 + n]
    return head, msgs, trailers


async def test_per_message_flag_and_negotiation_on_the_wire() -> None:
    server, url = await _wirecall(Blobs(), compression="gzip", compress_threshold=100)
    sizes = [10, 5000, 97, 98, 20000, 0]  # encoded: 2 bytes more (msgpack bin 8)
    try:
        head, msgs, tr = await _raw_call(url, "/Blobs/Sizes", sizes, "identity,deflate,gzip")
        assert tr[b"grpc-status"] == b"0"
        assert head[b"grpc-encoding"] == b"gzip"
        assert [f for f, _ in msgs] == [0, 1, 0, 1, 1, 0]  # messages under 100 bytes: plain
        got = [zlib.decompress(p, 31) if f else p for f, p in msgs]
        assert got == [msgspec.msgpack.encode(b"b" * n) for n in sizes]
        # a client that does not list gzip gets every message plain, no grpc-encoding
        for accept in ("identity", None, "deflate"):
            head, msgs, tr = await _raw_call(url, "/Blobs/Sizes", sizes, accept)
            assert tr[b"grpc-status"] == b"0"
            assert b"grpc-encoding" not in head
            assert [f for f, _ in msgs] == [0] * len(sizes)
        # unary too; a message gzip cannot shrink goes plain
        head, msgs, _ = await _raw_call(url, "/Blobs/One", 50000, "gzip")
        assert head[b"grpc-encoding"] == b"gzip" and [f for f, _ in msgs] == [1]
        assert len(msgs[0][1]) < 1000
    finally:
        await server.close(drain_timeout=1)


async def test_incompressible_message_goes_plain(gz: dict[str, list[int]]) -> None:
    import os

    noise = os.urandom(4000)

    class Noise:
        async def Get(self, n: int) -> bytes:
            return noise[:n]

    server, url = await _wirecall(Noise(), compression="gzip")
    try:
        head, msgs, _ = await _raw_call(url, "/Noise/Get", 4000, "gzip")
        assert head[b"grpc-encoding"] == b"gzip"
        assert gz["compress"] and [f for f, _ in msgs] == [0]
        assert msgs[0][1] == msgspec.msgpack.encode(noise)
    finally:
        await server.close(drain_timeout=1)


# -- wirecall client ---------------------------------------------------------------------------


async def test_wirecall_client_inflates_grpcio_gzip_replies(gz: dict[str, list[int]]) -> None:
    gserver = grpc.aio.server(compression=grpc.Compression.Gzip)
    gserver.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "grpc.testing.TestService", {
            "UnaryCall": _h("unary_unary", g_unary, pb.SimpleRequest, pb.SimpleResponse),
            "StreamingOutputCall": _h("unary_stream", g_stream_out,
                                      pb.StreamingOutputCallRequest,
                                      pb.StreamingOutputCallResponse),
        }),))
    port = gserver.add_insecure_port("127.0.0.1:0")
    await gserver.start()
    proxy = CountingProxy("127.0.0.1", port)
    c = await tg.connect(parse_url(f"grpc://{await proxy.start()}"))  # no request compression
    try:
        r = await c.call("grpc.testing.TestService.UnaryCall",
                         [pb.SimpleRequest(response_size=400000)], 5, None, pb.SimpleResponse)
        assert r.payload.body == b"\0" * 400000
        s = c.open_stream("grpc.testing.TestService.StreamingOutputCall",
                          [pb.StreamingOutputCallRequest(response_parameters=[
                              pb.ResponseParameters(size=n) for n in (300000, 300000)])],
                          5, None, pb.StreamingOutputCallResponse)
        assert [len(x.payload.body) async for x in s] == [300000, 300000]
        assert gz["compress"] == []  # we compressed nothing
        # (the inflated messages: payload bytes plus 8 bytes of protobuf framing)
        assert sorted(gz["decompress"])[-3:] == [300008, 300008, 400008]
        assert proxy.down < 40000, f"{proxy.down} bytes from grpcio: not compressed"
    finally:
        await c.aclose()
        await proxy.close()
        await gserver.stop(0)


async def test_wirecall_both_ways_with_streams(gz: dict[str, list[int]]) -> None:
    server, url = await _wirecall(compression="gzip")
    proxy = await _proxy_to(url)
    c = await tg.connect(parse_url(f"grpc://{await proxy.start()}"), compression="gzip")
    try:
        s = c.open_stream("grpc.testing.TestService.FullDuplexCall", None, 5, None,
                          pb.StreamingOutputCallResponse)
        for size in (100000, 3, 250000):
            await s.send(pb.StreamingOutputCallRequest(
                response_parameters=[pb.ResponseParameters(size=size)],
                payload=pb.Payload(body=b"\0" * size)))
            assert (await s.recv()).payload.body == b"\0" * size
        await s.done_writing()
        assert [x async for x in s] == []
        # requests: the two big ones compressed by the client and inflated by the server;
        # replies: the same the other way
        assert len([n for n in gz["compress"] if n >= 100000]) == 4
        assert len([n for n in gz["decompress"] if n >= 100000]) == 4
        assert proxy.up < 40000 and proxy.down < 40000
    finally:
        await c.aclose()
        await proxy.close()
        await server.close(drain_timeout=1)


# -- bombs and bad encodings -------------------------------------------------------------------


class Calc:
    async def Add(self, a: int, b: int) -> int:
        return a + b

    async def Echo(self, data: bytes) -> int:
        return len(data)


def _send(c: h2.connection.H2Connection, sid: int, data: bytes, end: bool = False) -> None:
    """DATA in frames h2 accepts (16 KiB; the bombs fit the initial 64 KiB window)."""
    for i in range(0, len(data), 16384):
        c.send_data(sid, data[i:i + 16384])
    if end:
        c.end_stream(sid)


def _bomb(inflated_size: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"\0" * MB
    out = [c.compress(chunk) for _ in range(inflated_size // MB)]
    return b"".join(out) + c.flush()


async def test_gzip_bomb_request_refused_before_inflating(inflated: list[int]) -> None:
    server, url = await _wirecall(Calc(), max_message_size=MB)
    u = parse_url(url)
    r, w = await asyncio.open_connection(u.host, u.port)
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    bomb = _bomb(48 * MB)  # 48 MB of zeros in about 48 KB
    assert len(bomb) < 60000
    statuses: dict[int, dict[bytes, bytes]] = {}

    def request(sid: int, body: bytes, encoding: str) -> None:
        c.send_headers(sid, [
            (":method", "POST"), (":scheme", "http"), (":path", "/Calc/Echo"),
            (":authority", "x"), ("content-type", "application/grpc+msgpack"),
            ("te", "trailers"), ("grpc-encoding", encoding)])
        _send(c, sid, body, end=True)
        w.write(c.data_to_send())

    async def until(sid: int) -> dict[bytes, bytes]:
        while sid not in statuses:
            data = await r.read(65536)
            assert data, "server closed the connection"
            for ev in c.receive_data(data):
                if isinstance(ev, (h2.events.TrailersReceived, h2.events.ResponseReceived)):
                    hd = dict(ev.headers)
                    if b"grpc-status" in hd:
                        statuses[ev.stream_id] = hd
            w.write(c.data_to_send())
        return statuses[sid]

    try:
        # 48 KB on the wire: under the 1 MB limit, so only the inflated size can refuse it
        request(1, gp.frame_message(bomb, True), "gzip")
        t = await asyncio.wait_for(until(1), 5)
        assert t[b"grpc-status"] == b"8", t  # RESOURCE_EXHAUSTED
        assert b"limit" in t.get(b"grpc-message", b"")
        assert sum(inflated) <= MB + 1, f"inflated {sum(inflated)} bytes of a 48 MB bomb"
        # the same connection still works, with gzip
        ok = gp.gzip_compress(msgspec.msgpack.encode([b"z" * 200000]))
        request(3, gp.frame_message(ok, True), "gzip")
        t = await asyncio.wait_for(until(3), 5)
        assert t[b"grpc-status"] == b"0"
    finally:
        w.close()
        await server.close(drain_timeout=1)


async def _raw_server(reply: Callable[[h2.connection.H2Connection, int], None]) -> asyncio.Server:
    """A bare HTTP/2 server answering every request with ``reply(conn, stream_id)``."""

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        c.initiate_connection()
        w.write(c.data_to_send())
        with contextlib.suppress(ConnectionError):
            while data := await r.read(65536):
                for ev in c.receive_data(data):
                    if isinstance(ev, h2.events.StreamEnded):
                        reply(c, ev.stream_id)
                    elif isinstance(ev, h2.events.DataReceived):
                        c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                w.write(c.data_to_send())
        w.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def _answer(encoding: str, message: bytes) -> Callable[[h2.connection.H2Connection, int], None]:
    def reply(c: h2.connection.H2Connection, sid: int) -> None:
        c.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc+msgpack"),
                             ("grpc-encoding", encoding)])
        _send(c, sid, message)
        c.send_headers(sid, [("grpc-status", "0")], end_stream=True)
    return reply


async def test_gzip_bomb_reply_refused_by_the_client(inflated: list[int]) -> None:
    bomb = _bomb(32 * MB)
    srv = await _raw_server(_answer("gzip", gp.frame_message(bomb, True)))
    port = srv.sockets[0].getsockname()[1]
    c = await tg.connect(parse_url(f"grpc://127.0.0.1:{port}"), max_message_size=MB)
    try:
        with pytest.raises(ResourceExhausted, match="limit"):
            await c.call("Calc.Add", [1, 2], 5, None, int)
        assert sum(inflated) <= MB + 1, f"inflated {sum(inflated)} bytes of a 32 MB bomb"
        s = c.open_stream("Calc.Add", [1, 2], 5, None, int)  # streams: the same check
        with pytest.raises(ResourceExhausted):
            [x async for x in s]
    finally:
        await c.aclose()
        srv.close()


async def test_reply_in_unknown_encoding_is_internal_naming_it() -> None:
    srv = await _raw_server(_answer("snappy", gp.frame_message(b"\x03", True)))
    port = srv.sockets[0].getsockname()[1]
    c = await tg.connect(parse_url(f"grpc://127.0.0.1:{port}"))
    try:
        with pytest.raises(Internal, match=r"snappy.*identity,gzip"):
            await c.call("Calc.Add", [1, 2], 5, None, int)
    finally:
        await c.aclose()
        srv.close()
    # plain messages in that encoding are fine (the flag decides)
    srv = await _raw_server(_answer("snappy", gp.frame_message(b"\x03")))
    port = srv.sockets[0].getsockname()[1]
    c = await tg.connect(parse_url(f"grpc://127.0.0.1:{port}"))
    try:
        assert await c.call("Calc.Add", [1, 2], 5, None, int) == 3
    finally:
        await c.aclose()
        srv.close()


def test_gzip_decompress_edges() -> None:
    data = b"hello " * 1000
    z = gp.gzip_compress(data)
    assert gp.gzip_decompress(z, len(data)) == data
    with pytest.raises(gp.MessageError) as e:
        gp.gzip_decompress(z, len(data) - 1)
    assert e.value.status == Status.RESOURCE_EXHAUSTED
    with pytest.raises(gp.MessageError, match="truncated") as e:
        gp.gzip_decompress(z[:-10], len(data))
    assert e.value.status == Status.INTERNAL
    with pytest.raises(gp.MessageError, match="bad gzip") as e:
        gp.gzip_decompress(b"not gzip at all", 100)
    assert e.value.status == Status.INTERNAL
    # concatenated members (RFC 1952), the limit counting them all
    two = gp.gzip_compress(b"ab") + gp.gzip_compress(b"cd")
    assert gp.gzip_decompress(two, 4) == b"abcd"
    with pytest.raises(gp.MessageError):
        gp.gzip_decompress(two, 3)
    with pytest.raises(gp.MessageError, match="bad gzip"):
        gp.gzip_decompress(z + b"junk", len(data))


async def test_compression_from_the_url_query(gz: dict[str, list[int]]) -> None:
    server = Server()
    server.register(Blobs())
    [url] = await server.start("grpc://127.0.0.1:0?compression=gzip")
    try:
        head, msgs, _ = await _raw_call(url, "/Blobs/One", 50000, "gzip")
        assert head[b"grpc-encoding"] == b"gzip" and [f for f, _ in msgs] == [1]
        c = await tg.connect(parse_url(url + "?compression=gzip"))
        try:
            assert await c.call("Blobs.Len", [b"q" * 5000], 5, None, int) == 5000
        finally:
            await c.aclose()
        # the request: compressed by the client, inflated by the server
        assert [n for n in gz["compress"] if 5000 < n < 5010] != []
        assert [n for n in gz["decompress"] if 5000 < n < 5010] != []
    finally:
        await server.close(drain_timeout=1)


async def test_compress_threshold_none_means_off(gz: dict[str, list[int]]) -> None:
    """``compress_threshold=None`` is "off" on the native transport; the same on gRPC."""
    server, url = await _wirecall(Blobs(), compression="gzip", compress_threshold=None)
    try:
        head, msgs, _ = await _raw_call(url, "/Blobs/One", 50000, "gzip")
        assert b"grpc-encoding" not in head and [f for f, _ in msgs] == [0]
        c = await tg.connect(parse_url(url), compression="gzip", compress_threshold=None)
        try:
            assert await c.call("Blobs.Len", [b"q" * 5000], 5, None, int) == 5000
        finally:
            await c.aclose()
        assert gz["compress"] == [] and gz["decompress"] == []
    finally:
        await server.close(drain_timeout=1)


async def test_unknown_compression_option_is_refused() -> None:
    server = Server()
    with pytest.raises(ValueError, match="brotli"):
        await server.start("grpc://127.0.0.1:0", compression="brotli")
    with pytest.raises(ValueError, match="lz4"):
        await tg.connect(parse_url("grpc://127.0.0.1:1"), compression="lz4")
    await server.close(drain_timeout=1)
