"""Go's ``tls.Dial`` + ``rpc.NewClient`` (net/rpc with gob over TLS) against a wirecall
``gobs://`` server: the calls go through, mTLS gives the Go client's certificate identity to the
handler, and wirecall.auth's refusals reach Go as texts it can tell apart."""

from __future__ import annotations

import asyncio
from typing import Any

import wirecall
from interop import goharness
from interop.pyservices import Args, Calculator
from support.tls import Certs
from wirecall import Context
from wirecall.auth import Auth


class Who:
    async def Me(self, args: Args, ctx: Context) -> str:
        return f"{ctx.transport} {ctx.identity}"


async def _serve(certs: Certs, **kw: Any) -> tuple[wirecall.Server, str]:
    server = wirecall.Server(**kw)
    server.register(Calculator())
    server.register(Who())
    [url] = await server.start("gobs://127.0.0.1:0", certfile=certs.server.cert,
                               keyfile=certs.server.key, cafile=certs.ca, client_cert="optional")
    return server, url.split("//", 1)[1]


async def _go(addr: str, certs: Certs, cert: Any = None) -> dict[str, Any]:
    args = ["-addr", addr, "-ca", certs.ca]
    if cert is not None:
        args += ["-cert", cert.cert, "-key", cert.key]
    lines = await asyncio.to_thread(goharness.run, "tlsclient", *args, timeout=120)
    return {line.get("method", "dial"): line for line in lines}


async def test_go_tls_dial_client_with_mtls(certs: Certs) -> None:
    server, addr = await _serve(certs)
    try:
        out = await _go(addr, certs, certs.client)
        assert out["Calculator.Add"]["result"] == 5
        assert out["Who.Me"]["result"] == "gobs spiffe://wirecall.test/client-a"
        anon = await _go(addr, certs)  # client_cert="optional": no certificate, no identity
        assert anon["Who.Me"]["result"] == "gobs "
    finally:
        await server.close(drain_timeout=1)


async def test_go_client_sees_auth_refusals(certs: Certs) -> None:
    auth = Auth(rules={"Calculator.*": ["*"], "Who.*": ["ops"]})
    server, addr = await _serve(certs, interceptors=[auth])
    try:
        out = await _go(addr, certs, certs.client)
        assert out["Calculator.Add"]["result"] == 5
        assert out["Who.Me"]["error"].startswith("permission denied: ")
        anon = await _go(addr, certs)
        assert anon["Calculator.Add"]["error"].startswith("unauthenticated: ")
    finally:
        await server.close(drain_timeout=1)


async def test_go_client_with_an_untrusted_certificate_fails_the_handshake(certs: Certs) -> None:
    server, addr = await _serve(certs)
    try:
        out = await _go(addr, certs, certs.rogue_client)
        # TLS 1.3: the server's refusal may arrive with the first read, not at tls.Dial
        add = out.get("Calculator.Add", {})
        assert "result" not in add, out
        assert out.get("dial", {}).get("dial") or add.get("error"), out
    finally:
        await server.close(drain_timeout=1)


async def test_go_tls_client_through_the_sniffing_listener(certs: Certs) -> None:
    """any:// with a certificate: Go's TLS gob client is decrypted, then sniffed as gob."""
    server = wirecall.Server()
    server.register(Calculator())
    server.register(Who())
    [url] = await server.start("any://127.0.0.1:0", certfile=certs.server.cert,
                               keyfile=certs.server.key, cafile=certs.ca,
                               client_cert="optional")
    try:
        out = await _go(url.split("//", 1)[1], certs, certs.client)
        assert out["Calculator.Add"]["result"] == 5
        assert out["Who.Me"]["result"].endswith(" spiffe://wirecall.test/client-a")
    finally:
        await server.close(drain_timeout=1)


async def test_go_jsonrpc_over_tls_through_the_sniffing_listener(certs: Certs) -> None:
    """Go's net/rpc/jsonrpc over TLS (what ``jsonrpc.NewClient(tls.Dial(...))`` sends),
    through any:// with a certificate."""
    import json
    import ssl

    server = wirecall.Server()
    server.register(Calculator())
    [url] = await server.start("any://127.0.0.1:0", certfile=certs.server.cert,
                               keyfile=certs.server.key)
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    try:
        ctx = ssl.create_default_context(cafile=certs.ca)
        reader, writer = await asyncio.open_connection(host, int(port), ssl=ctx,
                                                       server_hostname="localhost")
        writer.write(b'{"method":"Calculator.Add","params":[{"A":20,"B":22}],"id":7}\n')
        line = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        reply = json.loads(line)
        assert reply == {"id": 7, "result": 42, "error": None}
    finally:
        await server.close(drain_timeout=1)
