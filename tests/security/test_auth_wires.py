"""``wirecall.auth.Auth`` on every wire: no credentials or a wrong token is UNAUTHENTICATED, a
known caller that the method's rule does not allow is PERMISSION_DENIED, an allowed one gets
the result; on TLS wires a client certificate's identity authenticates (the only way on Go's
wires, which carry no metadata)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import wirecall
from support.tls import Certs
from wirecall import Context, Status
from wirecall.auth import Auth, bearer

#: wire -> server address (TLS wires get the test certificate, clients trust the test CA)
PLAIN = {
    "tcp": "tcp://127.0.0.1:0",
    "unix": "unix://{tmp}/auth.sock",
    "http": "http://127.0.0.1:0",
    "ws": "ws://127.0.0.1:0/ws",
    "grpc": "grpc://127.0.0.1:0",
    "any": "any://127.0.0.1:0",
}
TLS = {
    "tls": "tls://127.0.0.1:0",
    "https": "https://127.0.0.1:0",
    "wss": "wss://127.0.0.1:0/ws",
    "grpcs": "grpcs://127.0.0.1:0",
    "quic": "quic://127.0.0.1:0",
}
GO_PLAIN = {"gob": "gob://127.0.0.1:0", "jsonrpc": "jsonrpc://127.0.0.1:0"}
GO_TLS = {"gobs": "gobs://127.0.0.1:0"}


class Bank:
    async def Balance(self, who: str, ctx: Context) -> str:
        return f"{who}:{ctx.identity or 'token'}"

    async def Close(self, who: str) -> str:
        return f"closed {who}"


def make_auth() -> Auth:
    return Auth(
        tokens={"tok-alice": "alice", "tok-ops": "ops"},
        rules={"Bank.Close": ["ops", "spiffe://wirecall.test/admin"], "Bank.*": ["*"]},
    )


@pytest.fixture
async def serve(certs: Certs, tmp_path: Any) -> AsyncIterator[Any]:
    servers: list[wirecall.Server] = []

    async def start(address: str, mtls: bool = False) -> str:
        server = wirecall.Server()
        make_auth().install(server)  # a call observer (test_auth_fast.py: the interceptor)
        server.register(Bank())
        servers.append(server)
        opts: dict[str, Any] = {}
        if address.startswith(("tls", "https", "wss", "grpcs", "gobs", "quic")):
            opts = {"certfile": certs.server.cert, "keyfile": certs.server.key}
            if mtls and not address.startswith("quic"):
                opts["cafile"] = certs.ca
        [url] = await server.start(address.format(tmp=tmp_path), **opts)
        return url

    yield start
    for s in servers:
        await s.close(drain_timeout=1)


async def _status(client: wirecall.Client, method: str, **kw: Any) -> Status | str:
    try:
        return str(await client.call(method, "bob", timeout=5, **kw))
    except wirecall.RpcError as exc:
        if exc.status in (Status.UNAUTHENTICATED, Status.PERMISSION_DENIED):
            assert "tok-" not in exc.message  # the token never comes back
        return exc.status


@pytest.mark.parametrize("wire", [*PLAIN, *TLS])
async def test_bearer_tokens_and_rules(serve: Any, certs: Certs, wire: str) -> None:
    url = await serve({**PLAIN, **TLS}[wire])
    client_opts = {"cafile": certs.ca} if wire in TLS else {}
    async with await wirecall.connect(url, **client_opts) as c:
        assert await _status(c, "Bank.Balance") == Status.UNAUTHENTICATED
        assert await _status(c, "Bank.Balance", metadata=bearer("nope")) == Status.UNAUTHENTICATED
        assert await _status(c, "Bank.Balance", metadata={"authorization": "Basic x"}) \
            == Status.UNAUTHENTICATED
        assert await _status(c, "Bank.Balance", metadata=bearer("tok-alice")) == "bob:token"
        assert await _status(c, "Bank.Close", metadata=bearer("tok-alice")) \
            == Status.PERMISSION_DENIED
        assert await _status(c, "Bank.Close", metadata=bearer("tok-ops")) == "closed bob"


@pytest.mark.parametrize("wire", ["tls", "https", "wss", "grpcs", "gobs"])
async def test_client_certificate_identity_authenticates(serve: Any, certs: Certs,
                                                         wire: str) -> None:
    url = await serve({**TLS, **GO_TLS}[wire], mtls=True)
    async with await wirecall.connect(url, cafile=certs.ca, certfile=certs.client.cert,
                                      keyfile=certs.client.key) as c:
        assert await _status(c, "Bank.Balance") == "bob:spiffe://wirecall.test/client-a"
        assert await _status(c, "Bank.Close") == Status.PERMISSION_DENIED


@pytest.mark.parametrize("wire", list(GO_PLAIN))
async def test_go_wires_without_credentials_are_unauthenticated(serve: Any, wire: str) -> None:
    url = await serve(GO_PLAIN[wire])
    async with await wirecall.connect(url) as c:
        assert await _status(c, "Bank.Balance") == Status.UNAUTHENTICATED


def test_auth_refuses_bad_configuration() -> None:
    with pytest.raises(TypeError, match="not one string"):
        Auth(tokens="secret")
    with pytest.raises(ValueError, match="empty token"):
        Auth(tokens={""})
    with pytest.raises(ValueError, match="'allow' or 'deny'"):
        Auth(default="maybe")
    with pytest.raises(TypeError, match="list of principals"):
        Auth(rules={"A.b": "ops"})


async def test_callable_tokens_and_default_deny() -> None:
    async def check(token: str) -> str | None:
        return "svc" if token == "dyn" else None

    auth = Auth(tokens=check, rules={"A.open": ["*"]}, default="deny", public=["Health.*"])
    assert await auth.authenticate(bearer("dyn"), "") == "svc"
    with pytest.raises(wirecall.Unauthenticated):
        await auth.authenticate(bearer("x"), "")
    auth.authorize("svc", "A.open")
    with pytest.raises(wirecall.PermissionDenied):
        auth.authorize("svc", "A.other")  # no rule: denied by default="deny"


async def test_https_takes_a_standard_authorization_header(serve: Any, certs: Certs) -> None:
    """curl -H 'Authorization: Bearer ...' (no wirecall metadata prefix) authenticates too."""
    import asyncio
    import json
    import ssl

    url = await serve(TLS["https"])
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=certs.ca)

    async def post(headers: str) -> dict[str, Any]:
        reader, writer = await asyncio.open_connection(host, int(port), ssl=ctx,
                                                       server_hostname="localhost")
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "Bank.Balance",
                           "params": ["bob"]}).encode()
        writer.write(f"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n{headers}Connection: close\r\n\r\n"
                     .encode() + body)
        raw = await reader.read()
        writer.close()
        return dict(json.loads(raw.split(b"\r\n\r\n", 1)[1]))

    ok = await post("Authorization: Bearer tok-alice\r\n")
    assert ok["result"] == "bob:token"
    denied = await post("")
    assert denied["error"]["data"]["status"] == "UNAUTHENTICATED", denied
