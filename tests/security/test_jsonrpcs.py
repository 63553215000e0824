"""``jsonrpcs://``: Go's net/rpc/jsonrpc over TLS. Go's own client (``tls.Dial`` +
``jsonrpc.NewClient``, ``interop/go/tlsclient -codec jsonrpc``) and wirecall's client both get
through; mTLS gives the client certificate's identity to the handler; Auth's refusals reach Go
as its texts; the access log names the wire and sizes; misconfiguration is an error."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest

import wirecall
from interop import goharness
from interop.pyservices import Args, Calculator
from support.tls import Certs
from wirecall import Context
from wirecall.auth import Auth
from wirecall.observability.accesslog import AccessLog


class Who:
    async def Me(self, args: Args, ctx: Context) -> str:
        return f"{ctx.transport} {ctx.identity}"


async def _go(addr: str, certs: Certs, cert: Any = None) -> dict[str, Any]:
    """Go's ``tls.Dial`` + ``jsonrpc.NewClient`` (``tests/interop/go/tlsclient -codec
    jsonrpc``): one JSON line per call, or one naming the dial error."""
    args = ["-codec", "jsonrpc", "-addr", addr, "-ca", certs.ca]
    if cert is not None:
        args += ["-cert", cert.cert, "-key", cert.key]
    lines = await asyncio.to_thread(goharness.run, "tlsclient", *args, timeout=120)
    return {line.get("method", "dial"): line for line in lines}


async def _serve(certs: Certs, **kw: Any) -> tuple[wirecall.Server, str]:
    server = wirecall.Server(**kw)
    server.register(Calculator())
    server.register(Who())
    [url] = await server.start("jsonrpcs://127.0.0.1:0", certfile=certs.server.cert,
                               keyfile=certs.server.key, cafile=certs.ca,
                               client_cert="optional")
    return server, url


async def test_go_jsonrpc_client_over_tls_with_mtls(certs: Certs) -> None:
    server, url = await _serve(certs)
    out = io.StringIO()
    log = AccessLog(server, fmt="json", stream=out)
    try:
        assert url.startswith("jsonrpcs://127.0.0.1:")
        addr = url.split("//", 1)[1]
        got = await _go(addr, certs, certs.client)
        assert got["Calculator.Add"]["result"] == 5
        assert got["Who.Me"]["result"] == "jsonrpcs spiffe://wirecall.test/client-a"
        anon = await _go(addr, certs)  # client_cert="optional": no certificate, no identity
        assert anon["Who.Me"]["result"] == "jsonrpcs "
        rogue = await _go(addr, certs, certs.rogue_client)  # not signed by the CA
        assert "result" not in rogue.get("Calculator.Add", {}), rogue
    finally:
        await server.close(drain_timeout=1)
    log.close()
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    add = [x for x in lines if x["method"] == "Calculator.Add"]
    assert add and all(x["wire"] == "jsonrpcs" and x["request_bytes"] > 0
                       and x["response_bytes"] > 0 for x in add), lines


async def test_wirecall_client_and_auth_refusals(certs: Certs) -> None:
    auth = Auth(rules={"Calculator.*": ["*"], "Who.*": ["ops"]})
    server, url = await _serve(certs)
    auth.install(server)
    try:
        async with await wirecall.connect(url, cafile=certs.ca, certfile=certs.client.cert,
                                          keyfile=certs.client.key) as c:
            assert await c.call("Calculator.Add", Args(20, 22), result_type=int) == 42
            with pytest.raises(wirecall.PermissionDenied):
                await c.call("Who.Me", Args(1, 1), result_type=str)
        go = await _go(url.split("//", 1)[1], certs)  # no certificate: unauthenticated
        assert go["Calculator.Add"]["error"].startswith("unauthenticated: ")
        go = await _go(url.split("//", 1)[1], certs, certs.client)
        assert go["Calculator.Add"]["result"] == 5
        assert go["Who.Me"]["error"].startswith("permission denied: ")
    finally:
        await server.close(drain_timeout=1)


async def test_misconfiguration_is_an_error(certs: Certs) -> None:
    with pytest.raises(ValueError, match=r"jsonrpcs:// needs certfile="):
        await wirecall.Server().start("jsonrpcs://127.0.0.1:0")
    with pytest.raises(ValueError, match=r"jsonrpc:// server does not accept option.*"
                                         r"jsonrpcs://"):
        await wirecall.Server().start("jsonrpc://127.0.0.1:0", certfile=certs.server.cert,
                                      keyfile=certs.server.key)
    server, url = await _serve(certs)
    try:  # a plaintext client on the TLS port: the handshake fails, no call runs
        with pytest.raises((wirecall.RpcError, OSError, ConnectionError)):
            c = await wirecall.connect(url.replace("jsonrpcs", "jsonrpc"), timeout=3)
            try:
                await c.call("Calculator.Add", Args(1, 2), result_type=int, timeout=3)
            finally:
                await c.close()
    finally:
        await server.close(drain_timeout=1)
