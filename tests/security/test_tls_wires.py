"""TLS on every TCP wire: tls:// (native), https://, wss://, gobs:// (Go net/rpc over TLS),
grpcs:// and any:// (a ClientHello first): calls go through, the client verifies the server
against the CA, mTLS puts the client certificate's identity in ``Context.identity``, and a
client without a trusted certificate is refused at the handshake."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest

import wirecall
from support.tls import Certs
from wirecall import ConnectError, Context

#: wire -> (server address, client scheme)
WIRES = {
    "tls": ("tls://127.0.0.1:0", "tls"),
    "https": ("https://127.0.0.1:0", "https"),
    "wss": ("wss://127.0.0.1:0/ws", "wss"),
    "gobs": ("gobs://127.0.0.1:0", "gobs"),
    "grpcs": ("grpcs://127.0.0.1:0", "grpcs"),
    "any": ("any://127.0.0.1:0", "tls"),
}


class Who:
    async def Me(self, tag: str, ctx: Context) -> dict[str, str]:
        return {"identity": ctx.identity, "transport": ctx.transport, "tag": tag}


@pytest.fixture
async def tls_server(certs: Certs) -> AsyncIterator[Any]:
    servers: list[wirecall.Server] = []

    async def start(wire: str, **opts: Any) -> str:
        server = wirecall.Server()
        server.register(Who())
        servers.append(server)
        [url] = await server.start(WIRES[wire][0], certfile=certs.server.cert,
                                   keyfile=certs.server.key, **opts)
        scheme = WIRES[wire][1]
        return scheme + url[url.index("://"):]

    yield start
    for s in servers:
        await s.close(drain_timeout=1)


@pytest.mark.parametrize("wire", list(WIRES))
async def test_calls_over_tls_verify_the_server(tls_server: Any, certs: Certs,
                                                wire: str) -> None:
    url = await tls_server(wire)
    async with await wirecall.connect(url, cafile=certs.ca) as c:
        out = await c.call("Who.Me", "x", timeout=5)
    assert out["tag"] == "x"
    assert out["identity"] == ""  # no client certificate
    # a client that does not trust the CA is refused at the handshake
    with pytest.raises(ConnectError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
        c2 = await wirecall.connect(url, timeout=5)
        try:
            await c2.call("Who.Me", "y", timeout=5)
        finally:
            await c2.close()


@pytest.mark.parametrize("wire", list(WIRES))
async def test_mtls_identity_reaches_the_context(tls_server: Any, certs: Certs,
                                                 wire: str) -> None:
    url = await tls_server(wire, cafile=certs.ca)
    async with await wirecall.connect(url, cafile=certs.ca, certfile=certs.client.cert,
                                      keyfile=certs.client.key) as c:
        out = await c.call("Who.Me", "x", timeout=5)
    assert out["identity"] == "spiffe://wirecall.test/client-a"
    async with await wirecall.connect(url, cafile=certs.ca, certfile=certs.client_cn.cert,
                                      keyfile=certs.client_cn.key) as c:
        assert (await c.call("Who.Me", "x", timeout=5))["identity"] == "client-b"


@pytest.mark.parametrize("wire", list(WIRES))
async def test_mtls_refuses_missing_and_untrusted_client_certs(tls_server: Any, certs: Certs,
                                                               wire: str) -> None:
    url = await tls_server(wire, cafile=certs.ca)
    for cert in (None, certs.rogue_client):
        extra = {} if cert is None else {"certfile": cert.cert, "keyfile": cert.key}
        with pytest.raises(wirecall.RpcError) as ei:
            c = await wirecall.connect(url, cafile=certs.ca, timeout=5, **extra)
            try:
                await c.call("Who.Me", "x", timeout=5)
            finally:
                await c.close()
        assert ei.value.status in (wirecall.Status.UNAVAILABLE,), ei.value


async def test_tls_scheme_without_a_certificate_is_an_error() -> None:
    server = wirecall.Server()
    for url in ("tls://127.0.0.1:0", "https://127.0.0.1:0", "gobs://127.0.0.1:0"):
        with pytest.raises(ValueError, match="needs certfile="):
            await server.start(url)
    with pytest.raises(ValueError, match="TLS is not available on this scheme"):
        await server.start("tcp://127.0.0.1:0", certfile="x.pem")
    await server.close()


async def test_plaintext_client_on_a_tls_port_fails_cleanly(tls_server: Any) -> None:
    url = await tls_server("tls")
    plain = "tcp" + url[url.index("://"):]
    with pytest.raises(wirecall.RpcError):
        c = await wirecall.connect(plain, timeout=3)
        try:
            await c.call("Who.Me", "x", timeout=3)
        finally:
            await c.close()


def test_alpn_names(certs: Certs) -> None:
    from wirecall.transport import tls

    ctx, _ = tls.server_context("tls", certs.server.cert, certs.server.key)
    assert isinstance(ctx, ssl.SSLContext)
    assert tls.ALPN["tls"] == ["wirecall"]
    _ = asyncio  # (kept for the async tests above)


def test_sync_client_over_mtls(certs: Certs) -> None:
    """wirecall.sync (the blocking client) dials tls:// with a client certificate too."""
    import threading

    from wirecall import sync

    loop = asyncio.new_event_loop()
    server = wirecall.Server()
    server.register(Who())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        [url] = asyncio.run_coroutine_threadsafe(server.start(
            "tls://127.0.0.1:0", certfile=certs.server.cert, keyfile=certs.server.key,
            cafile=certs.ca), loop).result(10)
        c = sync.connect(url, cafile=certs.ca, certfile=certs.client.cert,
                         keyfile=certs.client.key)
        try:
            out = c.call("Who.Me", "s", timeout=5)
        finally:
            c.close()
    finally:
        asyncio.run_coroutine_threadsafe(server.close(drain_timeout=1), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
    assert out["identity"] == "spiffe://wirecall.test/client-a"
    assert out["transport"] == "tls"
