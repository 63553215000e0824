"""The access log's request and response sizes (bytes as the wire carried them), on every
wire: a call with a 1,000-character string logs ~990 bytes more each way than one with 10.
Checked on the fast lane (inline handler) and on the general path (async handler)."""

from __future__ import annotations

import io
import json
import re
import tempfile
from pathlib import Path

import msgspec
import pytest

from support.observability import listen_urls
from wirecall import Client, NotFound, Server, method
from wirecall.observability.accesslog import AccessLog
from wirecall.transport.quic import write_self_signed

WIRES = ("tcp", "unix", "http", "ws", "grpc", "gob", "jsonrpc")


class Text(msgspec.Struct):
    S: str


class Echo:
    """Go-compatible signatures (one struct argument): every wire can call it."""

    @method(inline=True)
    def Fast(self, t: Text) -> Text:
        return t

    async def Slow(self, t: Text) -> Text:
        return t

    def Warm(self, t: Text) -> Text:
        return t

    def Fail(self, t: Text) -> Text:
        raise NotFound(message="no " + t.S)


async def _calls(url: str, **opts: object) -> None:
    async with Client(url, **opts) as c:  # type: ignore[arg-type]
        # gob sends a type's definition with its first value: counted in that reply's size
        await c.call("Echo.Warm", Text(""), result_type=Text)
        for m in ("Echo.Fast", "Echo.Slow"):
            for n in (10, 1000):
                out = await c.call(m, Text("x" * n), result_type=Text)
                assert len(out.S) == n


def _check(lines: list[dict[str, object]], wire: str) -> None:
    mine = [x for x in lines if x["wire"] == wire]
    assert [x["method"] for x in mine] == ["Echo.Fast"] * 2 + ["Echo.Slow"] * 2, (wire, mine)
    for small, big in (mine[0:2], mine[2:4]):
        for key in ("request_bytes", "response_bytes"):
            a, b = small[key], big[key]
            assert isinstance(a, int) and isinstance(b, int) and a > 0, (wire, key, small)
            assert 990 <= b - a <= 1000, (wire, key, a, b)


async def test_sizes_on_every_wire(tmp_path: Path) -> None:
    server = Server()
    server.register(Echo(), "Echo")
    out = io.StringIO()
    log = AccessLog(server, fmt="json", stream=out)
    with tempfile.TemporaryDirectory(prefix="wirecall-quic-") as d:
        crt, key = write_self_signed(d)
        urls = await server.start(*listen_urls(tmp_path, WIRES))
        [qurl] = await server.start("quic://127.0.0.1:0", certfile=crt, keyfile=key)
        try:
            for url in urls:
                await _calls(url)
            await _calls(qurl, cafile=crt)
            async with Client(urls[0]) as c:  # an error reply: its frame is counted too
                with pytest.raises(NotFound):
                    await c.call("Echo.Fail", Text("y"), result_type=Text)
        finally:
            await server.close(drain_timeout=1)
    log.close()
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    for wire in (*WIRES, "quic"):
        _check([x for x in lines if x["method"] not in ("Echo.Fail", "Echo.Warm")], wire)
    [fail] = [x for x in lines if x["method"] == "Echo.Fail"]
    assert fail["status"] == "NOT_FOUND" and fail["request_bytes"] > 0
    assert fail["response_bytes"] > len("no y")


async def test_text_line_ends_with_the_sizes() -> None:
    server = Server()
    server.register(Echo(), "Echo")
    out = io.StringIO()
    log = AccessLog(server, stream=out)
    [url] = await server.start("tcp://127.0.0.1:0")
    try:
        async with Client(url) as c:
            await c.call("Echo.Fast", Text("abc"), result_type=Text)
    finally:
        await server.close(drain_timeout=1)
    log.close()
    [line] = out.getvalue().splitlines()
    m = re.search(r" call OK \d+\.\d{3}ms (\d+) (\d+)$", line)
    assert m is not None, line
    # msgpack: a params array [ {"S": "abc"} ] in, {"S": "abc"} out
    assert (int(m[1]), int(m[2])) == (
        len(msgspec.msgpack.encode([Text("abc")])), len(msgspec.msgpack.encode(Text("abc"))))
