"""``max_connections`` (per listener) and ``max_connections_per_peer`` (per peer address) on
every stream wire: a connection over either is closed as it arrives, those already open keep
working, and a slot frees when a connection leaves."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import wirecall
from support.tls import Certs

WIRES = {
    "tcp": "tcp://127.0.0.1:0",
    "tls": "tls://127.0.0.1:0",
    "gob": "gob://127.0.0.1:0",
    "jsonrpc": "jsonrpc://127.0.0.1:0",
    "grpc": "grpc://127.0.0.1:0",
    "http": "http://127.0.0.1:0",
    "any": "any://127.0.0.1:0",
}


class Echo:
    async def Say(self, text: str) -> str:
        return text


async def _start(wire: str, certs: Certs, **limits: Any) -> tuple[wirecall.Server, str, dict]:
    server = wirecall.Server()
    server.register(Echo())
    tls = {"certfile": certs.server.cert, "keyfile": certs.server.key} if wire == "tls" else {}
    [url] = await server.start(WIRES[wire], **tls, **limits)
    return server, url, ({"cafile": certs.ca} if wire == "tls" else {})


async def _works(url: str, opts: dict) -> wirecall.Client | None:
    """A connected client whose call succeeded, or None when the server refused it."""
    try:
        c = await wirecall.connect(url, timeout=3, **opts)
    except wirecall.RpcError:
        return None
    try:
        assert await c.call("Echo.Say", "hi", timeout=3) == "hi"
    except wirecall.RpcError as exc:
        assert exc.status == wirecall.Status.UNAVAILABLE, exc
        await c.close()
        return None
    return c


@pytest.mark.parametrize("wire", list(WIRES))
async def test_max_connections_per_listener(wire: str, certs: Certs) -> None:
    server, url, opts = await _start(wire, certs, max_connections=2)
    try:
        c1 = await _works(url, opts)
        c2 = await _works(url, opts)
        assert c1 is not None and c2 is not None
        assert await _works(url, opts) is None  # the third is refused
        assert await c1.call("Echo.Say", "still", timeout=3) == "still"  # the others serve
        await c2.close()
        await asyncio.sleep(0.1)
        c3 = None
        for _ in range(20):  # the slot frees once the server saw the connection go
            c3 = await _works(url, opts)
            if c3 is not None:
                break
            await asyncio.sleep(0.05)
        assert c3 is not None
        await c1.close()
        await c3.close()
    finally:
        await server.close(drain_timeout=1)


@pytest.mark.parametrize("wire", ["tcp", "gob", "http", "any"])
async def test_max_connections_per_peer_address(wire: str, certs: Certs) -> None:
    server, url, _ = await _start(wire, certs, max_connections_per_peer=1)
    host, port = url.split("//", 1)[1].rsplit(":", 1)

    async def open_from(src: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(host, int(port), local_addr=(src, 0))

    async def refused(reader: asyncio.StreamReader) -> bool:
        try:
            return await asyncio.wait_for(reader.read(1), 0.5) == b""
        except TimeoutError:
            return False  # still open
        except ConnectionError:
            return True

    try:
        r1, w1 = await open_from("127.0.0.1")
        await asyncio.sleep(0.05)
        r2, w2 = await open_from("127.0.0.1")
        r3, w3 = await open_from("127.0.0.2")  # another loopback address: another peer
        assert await refused(r2)
        assert not await refused(r1)
        assert not await refused(r3)
        for w in (w1, w2, w3):
            w.close()
    finally:
        await server.close(drain_timeout=1)


async def test_bad_limit_values_are_errors() -> None:
    server = wirecall.Server()
    with pytest.raises(ValueError, match="max_connections must be a positive integer"):
        await server.start("tcp://127.0.0.1:0", max_connections=0)
    with pytest.raises(ValueError, match="does not accept option 'max_conections'"):
        await server.start("tcp://127.0.0.1:0", max_conections=3)
    await server.close()


@pytest.mark.parametrize("wire", ["tls", "https", "any"])
async def test_a_stalled_tls_handshake_is_closed(wire: str, certs: Certs) -> None:
    server = wirecall.Server()
    address = {"tls": "tls://127.0.0.1:0", "https": "https://127.0.0.1:0",
               "any": "any://127.0.0.1:0"}[wire]
    [url] = await server.start(address, certfile=certs.server.cert, keyfile=certs.server.key,
                               tls_handshake_timeout=0.3)
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    try:
        reader, writer = await asyncio.open_connection(host, int(port))
        # the first bytes of a ClientHello record, then nothing
        writer.write(b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03")
        t0 = asyncio.get_running_loop().time()
        try:
            data = await asyncio.wait_for(reader.read(), 5)
        except ConnectionError:
            data = b""
        elapsed = asyncio.get_running_loop().time() - t0
        assert data == b"" or data[:1] == b"\x15"  # closed (maybe after a TLS alert)
        assert elapsed < 4, elapsed
        writer.close()
    finally:
        await server.close(drain_timeout=1)
