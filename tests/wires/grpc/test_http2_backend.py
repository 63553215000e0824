"""The HTTP/2 backend switch under the gRPC core: each backend serves the other, the option
and the environment variable choose, an unknown name is refused, and received data is
acknowledged as the application consumes it, not on receipt (both backends)."""

from __future__ import annotations

import sys

import pytest

from wirecall import Server
from wirecall.protocol.grpc import GrpcConnection
from wirecall.protocol.grpc.http2 import resolve_backend
from wirecall.transport import grpc as tg
from wirecall.transport.base import parse_url


class Calc:
    async def Add(self, a: int, b: int) -> int:
        return a + b

    async def Echo(self, data: bytes) -> bytes:
        return data


@pytest.mark.parametrize("client_backend", ["ngh2", "h2"])
async def test_each_backend_serves_the_other(http2_backend: str, client_backend: str) -> None:
    server = Server()
    server.register(Calc())
    [url] = await server.start("grpc://127.0.0.1:0")  # the env var (http2_backend) chooses
    c = await tg.connect(parse_url(url), http2_backend=client_backend)
    try:
        assert c.conn.backend.name == client_backend
        assert await c.call("Calc.Add", [2, 3], 5, None, int) == 5
        big = bytes(range(256)) * 8000  # 2 MB: more than both flow-control windows
        assert await c.call("Calc.Echo", [big], 10, None, bytes) == big
        conns = server.listeners[0].connections  # type: ignore[attr-defined]
        assert {p.conn.backend.name for p in conns} == {http2_backend}
    finally:
        await c.aclose()
        await server.close(drain_timeout=1)


async def test_option_beats_env_and_unknown_names_are_refused(http2_backend: str) -> None:
    other = "h2" if http2_backend == "ngh2" else "ngh2"
    assert resolve_backend(None) == http2_backend
    assert resolve_backend(other) == other
    server = Server()
    server.register(Calc())
    with pytest.raises(ValueError, match="unknown HTTP/2 backend 'nghttp3'"):
        await server.start("grpc://127.0.0.1:0", http2_backend="nghttp3")
    [url] = await server.start(f"grpc://127.0.0.1:0?http2_backend={other}")
    c = await tg.connect(parse_url(url))
    try:
        assert await c.call("Calc.Add", [1, 1], 5, None, int) == 2
        conns = server.listeners[0].connections  # type: ignore[attr-defined]
        assert {p.conn.backend.name for p in conns} == {other}
        with pytest.raises(ValueError, match="unknown HTTP/2 backend"):
            GrpcConnection(client_side=True, backend="bogus")
    finally:
        await c.aclose()
        await server.close(drain_timeout=1)


def _pair(backend: str) -> tuple[GrpcConnection, GrpcConnection]:
    c = GrpcConnection(client_side=True, backend=backend)
    s = GrpcConnection(client_side=False, backend=backend, stream_window=256 * 1024)
    c.initiate()
    s.initiate()
    s.receive(c.data_to_send())
    c.receive(s.data_to_send())
    s.receive(c.data_to_send())
    return c, s


def test_flow_control_acknowledged_as_messages_are_consumed(http2_backend: str) -> None:
    c, s = _pair(http2_backend)
    sid = c.start_request("/Calc/Echo", authority="x")
    msg = b"m" * 20_000
    for _ in range(20):  # 400 KB queued against a 256 KiB stream window
        c.send_message(sid, msg)
    got = []
    for _ in range(5):
        got += [e for e in s.receive(c.data_to_send()) if type(e).__name__ == "MessageReceived"]
        c.receive(s.data_to_send())
    # nothing consumed: the server granted no window, the client holds the rest back
    assert 0 < len(got) < 20
    assert c.pending(sid) > 0
    before = c.pending(sid)
    for ev in got:  # the application takes them: WINDOW_UPDATEs go out, the rest flows
        s.consumed(ev.stream_id, ev.flow)
    for _ in range(10):
        new = [e for e in s.receive(c.data_to_send()) if type(e).__name__ == "MessageReceived"]
        for ev in new:
            s.consumed(ev.stream_id, ev.flow)
        got += new
        c.receive(s.data_to_send())
    assert c.pending(sid) < before
    assert len(got) == 20 and all(e.payload == msg for e in got)


def test_without_ngh2_h2_is_the_fallback_and_naming_ngh2_says_what_to_install(
    http2_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WIRECALL_GRPC_HTTP2")
    monkeypatch.setitem(sys.modules, "ngh2", None)  # import ngh2 raises ImportError
    assert resolve_backend(None) == "h2"
    assert GrpcConnection(client_side=True).backend.name == "h2"
    with pytest.raises(ImportError, match=r"pip install 'wirecall\[grpc\]'"):
        resolve_backend("ngh2")
