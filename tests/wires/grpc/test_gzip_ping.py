"""gzip message compression with grpcio as the peer, both directions, and HTTP/2 PING:
the wirecall server acks a raw client's PING with the same payload, and the wirecall client's
``ping()`` is answered by both grpcio and wirecall servers."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import pytest

from support.grpc_peer import (
    _h,
    g_stream_out,
    g_unary,
    grpcio_stubs,
    pb,
    start_grpcio,
    start_wirecall,
)
from wirecall.protocol import grpc as gp
from wirecall.protocol.grpc import connection as grpc_connection
from wirecall.transport import grpc as tg
from wirecall.transport.base import parse_url


@pytest.fixture
def gzip_counts(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many messages wirecall compressed and decompressed (proof gzip was on the wire)."""
    counts = {"compress": 0, "decompress": 0}
    comp, decomp = gp.gzip_compress, gp.gzip_decompress

    def c(payload: bytes) -> bytes:
        counts["compress"] += 1
        return comp(payload)

    def d(payload: bytes, max_size: int) -> bytes:
        counts["decompress"] += 1
        return decomp(payload, max_size)

    monkeypatch.setattr(grpc_connection, "gzip_compress", c)  # where the connection calls it
    monkeypatch.setattr(grpc_connection, "gzip_decompress", d)
    return counts


async def test_grpcio_gzip_client_to_wirecall_server(gzip_counts: dict[str, int]) -> None:
    server, url = await start_wirecall()
    ch = grpc.aio.insecure_channel(url.removeprefix("grpc://"),
                                   compression=grpc.Compression.Gzip)
    try:
        st = grpcio_stubs(ch)
        r = await st["UnaryCall"](pb.SimpleRequest(
            response_size=1000, payload=pb.Payload(body=b"\0" * 50000)), timeout=5)
        assert len(r.payload.body) == 1000
        unary_msgs = gzip_counts["decompress"]
        assert unary_msgs >= 1, "grpcio's request did not arrive gzip-compressed"
        call = st["FullDuplexCall"](timeout=5)
        for size in (10, 2000):
            await call.write(pb.StreamingOutputCallRequest(
                response_parameters=[pb.ResponseParameters(size=size)],
                payload=pb.Payload(body=b"a" * 5000)))
            assert len((await call.read()).payload.body) == size
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK
        assert gzip_counts["decompress"] >= unary_msgs + 2
    finally:
        await ch.close()
        await server.close(drain_timeout=1)


async def test_wirecall_gzip_client_to_grpcio_gzip_server(gzip_counts: dict[str, int]) -> None:
    server = grpc.aio.server(compression=grpc.Compression.Gzip)
    handlers = {
        "UnaryCall": _h("unary_unary", g_unary, pb.SimpleRequest, pb.SimpleResponse),
        "StreamingOutputCall": _h("unary_stream", g_stream_out, pb.StreamingOutputCallRequest,
                                  pb.StreamingOutputCallResponse),
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("grpc.testing.TestService", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    c = await tg.connect(parse_url(f"grpc://127.0.0.1:{port}"), compression="gzip")
    try:
        r = await c.call("grpc.testing.TestService.UnaryCall", [pb.SimpleRequest(
            response_size=100000, payload=pb.Payload(body=b"\0" * 50000))], 5, None,
            pb.SimpleResponse)
        assert len(r.payload.body) == 100000
        assert gzip_counts["compress"] == 1
        assert gzip_counts["decompress"] >= 1, "grpcio's reply was not gzip-compressed"
        s = c.open_stream(
            "grpc.testing.TestService.StreamingOutputCall",
            [pb.StreamingOutputCallRequest(response_parameters=[
                pb.ResponseParameters(size=n) for n in (10, 70000)],
                payload=pb.Payload(body=b"\0" * 5000))],  # over compress_threshold
            5, None, pb.StreamingOutputCallResponse)
        assert [len(x.payload.body) async for x in s] == [10, 70000]
        assert gzip_counts["compress"] == 2
        assert gzip_counts["decompress"] >= 2  # (grpcio may leave a 10-byte reply plain)
    finally:
        await c.aclose()
        await server.stop(0)


async def test_wirecall_server_acks_ping_with_the_same_payload() -> None:
    server, url = await start_wirecall()
    u = parse_url(url)
    r, w = await asyncio.open_connection(u.host, u.port)
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    try:
        acks: list[bytes] = []
        for payload in (b"wirecall", b"\x00\x01\x02\x03\x04\x05\x06\x07"):
            c.ping(payload)
            w.write(c.data_to_send())

            async def ack() -> Any:
                while True:
                    data = await r.read(65536)
                    assert data, "server closed the connection"
                    for ev in c.receive_data(data):
                        if isinstance(ev, h2.events.PingAckReceived):
                            return ev
                    w.write(c.data_to_send())

            ev = await asyncio.wait_for(ack(), 5)
            acks.append(ev.ping_data)
        assert acks == [b"wirecall", b"\x00\x01\x02\x03\x04\x05\x06\x07"]
    finally:
        w.close()
        await server.close(drain_timeout=1)


async def test_client_ping_answered_by_grpcio_and_wirecall() -> None:
    gserver, port = await start_grpcio()
    wserver, url = await start_wirecall()
    try:
        for target in (f"grpc://127.0.0.1:{port}", url):
            c = await tg.connect(parse_url(target))
            try:
                rtt = await c.ping(timeout=5)
                assert 0 <= rtt < 5
            finally:
                await c.aclose()
    finally:
        await gserver.stop(0)
        await wserver.close(drain_timeout=1)
