"""grpcs:// (TLS, ALPN h2) with wirecall and grpcio clients; graceful shutdown with GOAWAY."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import grpc
import msgspec
import pytest

from wirecall import Server, Unavailable
from wirecall.transport import grpc as tg
from wirecall.transport.base import parse_url


class Slow:
    async def Add(self, a: int, b: int) -> int:
        return a + b

    async def Wait(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"


def _cert(tmp: Path) -> tuple[str, str]:
    key, crt = tmp / "key.pem", tmp / "cert.pem"
    r = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(crt), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"openssl is needed for the TLS test: {r.stderr}"
    return str(crt), str(key)


async def test_grpcs_with_wirecall_and_grpcio_clients(tmp_path: Path) -> None:
    crt, key = _cert(tmp_path)
    server = Server()
    server.register(Slow())
    [url] = await server.start("grpcs://127.0.0.1:0", certfile=crt, keyfile=key)
    try:
        assert url.startswith("grpcs://")
        conn = await tg.connect(parse_url(url), cafile=crt)
        try:
            assert await conn.call("Slow.Add", [20, 22], 5, None, int) == 42
        finally:
            await conn.aclose()
        creds = grpc.ssl_channel_credentials(root_certificates=Path(crt).read_bytes())
        async with grpc.aio.secure_channel(url.removeprefix("grpcs://"), creds) as ch:
            add = ch.unary_unary("/Slow/Add", request_serializer=msgspec.msgpack.encode,
                                 response_deserializer=msgspec.msgpack.decode)
            assert await add([1, 2], timeout=5) == 3
    finally:
        await server.close(drain_timeout=1)


async def test_graceful_shutdown_goaway() -> None:
    server = Server()
    server.register(Slow())
    [url] = await server.start("grpc://127.0.0.1:0")
    conn = await tg.connect(parse_url(url))
    inflight = asyncio.ensure_future(conn.call("Slow.Wait", [0.3], 5, None, str))
    await asyncio.sleep(0.05)
    closing = asyncio.ensure_future(server.close(drain_timeout=5))
    await asyncio.sleep(0.05)
    assert conn.closed  # GOAWAY received: no new calls on this connection
    with pytest.raises(Unavailable):
        await conn.call("Slow.Add", [1, 1], 5, None, int)
    assert await inflight == "done"  # the call in flight finished
    await asyncio.wait_for(closing, 5)
    with pytest.raises(Unavailable):  # and the listener is gone
        await tg.connect(parse_url(url), timeout=1)
    await conn.aclose()


async def test_graceful_shutdown_with_grpcio_client() -> None:
    server = Server()
    server.register(Slow())
    [url] = await server.start("grpc://127.0.0.1:0")
    async with grpc.aio.insecure_channel(url.removeprefix("grpc://")) as ch:
        wait = ch.unary_unary("/Slow/Wait", request_serializer=msgspec.msgpack.encode,
                              response_deserializer=msgspec.msgpack.decode)
        call = wait([0.3], timeout=5)
        await asyncio.sleep(0.1)
        await asyncio.wait_for(server.close(drain_timeout=5), 5)
        assert await call == "done"
