"""One port, every protocol: each protocol's client against one ``any://`` listener."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import wirecall
from wirecall.transport.base import parse_url
from wirecall.transport.sniff import GOB, GOJSON, HTTP1, HTTP2, NATIVE, classify
from wirecall.tutorial.calculator import Args, Calculator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))
import goharness


@pytest.fixture
async def port() -> AsyncIterator[int]:
    server = wirecall.Server()
    server.register(Calculator())
    [url] = await server.start("any://127.0.0.1:0")
    assert url.startswith("any://127.0.0.1:")
    yield parse_url(url).port
    await server.close(drain_timeout=1)


@pytest.mark.parametrize(
    ("scheme", "path"),
    [
        ("tcp", ""),  # wirecall native (WRPC preface)
        ("gob", ""),  # Go net/rpc gob
        ("jsonrpc", ""),  # Go net/rpc/jsonrpc over TCP
        ("http", "/jsonrpc"),  # JSON-RPC 2.0 over HTTP/1.1
        ("http", "/_goRPC_"),  # Go's HTTP+gob: CONNECT /_goRPC_
        ("ws", "/ws"),  # JSON-RPC 2.0 over WebSocket (HTTP/1.1 Upgrade)
        ("grpc", ""),  # gRPC: HTTP/2 with prior knowledge
    ],
)
async def test_each_wirecall_client_on_one_port(port: int, scheme: str, path: str) -> None:
    client = await asyncio.wait_for(wirecall.connect(f"{scheme}://127.0.0.1:{port}{path}"), 10)
    try:
        assert await asyncio.wait_for(client.call("Calculator.Add", Args(A=10, B=5)), 10) == 15
        with pytest.raises(wirecall.RpcError, match="除数不能为零"):
            await asyncio.wait_for(client.call("Calculator.Divide", Args(A=1, B=0)), 10)
    finally:
        await client.close()


async def test_all_protocols_at_once(port: int) -> None:
    targets = ["tcp://", "gob://", "jsonrpc://", "http://", "ws://", "grpc://"]
    clients = [await wirecall.connect(f"{t}127.0.0.1:{port}") for t in targets]
    try:
        results = await asyncio.wait_for(asyncio.gather(*(
            c.call("Calculator.Add", Args(A=i, B=j)) for i, c in enumerate(clients)
            for j in range(20))), 20)
        assert results == [i + j for i in range(len(clients)) for j in range(20)]
    finally:
        for c in clients:
            await c.close()


async def test_plain_http_tools_on_the_sniffed_port(port: int) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{port}/healthz") as r:
            assert r.status == 200
        async with s.post(f"http://127.0.0.1:{port}/rpc", json={
                "jsonrpc": "2.0", "method": "Calculator.Add", "params": [{"A": 10, "B": 5}],
                "id": 1}) as r:
            assert await r.json() == {"jsonrpc": "2.0", "result": 15, "id": 1}


@pytest.mark.parametrize("mode", ["tcp", "http", "jsonrpc"])
async def test_go_clients_on_one_port(port: int, mode: str) -> None:
    """The tutorial's Go client (rpc.Dial, rpc.DialHTTP, jsonrpc.Dial) on the sniffing port."""
    out = await asyncio.to_thread(
        goharness.run, "calcclient", "-addr", f"127.0.0.1:{port}", "-mode", mode,
        "-case", "basic")
    by = {o["case"]: o for o in out}
    assert by["add"]["result"] == 15 and not by["add"]["error"]
    assert by["divide0"]["error"] == "除数不能为零"
    assert by["add_after_errors"]["result"] == -3


async def test_go_jsonrpc_over_tcp(port: int, caplog: pytest.LogCaptureFixture) -> None:
    """Go's jsonrpc.Dial: served once wirecall.transport.jsonrpc exists; until then the
    connection is closed with a log line naming the missing module."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b'{"method":"Calculator.Add","params":[{"A":10,"B":5}],"id":0}\n')
    if importlib.util.find_spec("wirecall.transport.jsonrpc") is not None:
        line = await asyncio.wait_for(reader.readline(), 10)
        assert json.loads(line) == {"id": 0, "result": 15, "error": None}
    else:
        with caplog.at_level(logging.ERROR, logger="wirecall.sniff"):
            assert await asyncio.wait_for(reader.read(), 5) == b""
        assert "wirecall.transport.jsonrpc is not available" in caplog.text
    writer.close()


async def test_unknown_protocol_is_closed_with_a_log_line(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="wirecall.sniff"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    assert "match no protocol" in caplog.text and "SSH-2.0" in caplog.text
    # the port still serves everyone else
    async with await wirecall.connect(f"tcp://127.0.0.1:{port}") as c:
        assert await c.call("Calculator.Add", Args(A=1, B=1)) == 2


async def test_any_scheme_client_speaks_native(port: int) -> None:
    async with await wirecall.connect(f"any://127.0.0.1:{port}") as c:
        assert await c.call("Calculator.Add", Args(A=2, B=3)) == 5


async def test_silent_connection_times_out() -> None:
    server = wirecall.Server()
    server.register(Calculator())
    [url] = await server.start("any://127.0.0.1:0?sniff_timeout=0.3")
    reader, writer = await asyncio.open_connection("127.0.0.1", parse_url(url).port)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    await server.close()


def test_classify() -> None:
    cases: dict[bytes, Any] = {
        b"WRPC\x01\x01": NATIVE,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n": HTTP2,
        b"POST /jsonrpc HTTP/1.1\r\n": HTTP1,
        b"GET /ws HTTP/1.1\r\n": HTTP1,
        b"CONNECT /_goRPC_ HTTP/1.0\n\n": HTTP1,
        b"\x2f\xff\x81\x03\x01\x01": GOB,
        b"\xfe\x01\x00\xff\x81": GOB,
        b'{"method":"A.B"}': GOJSON,
        b' \r\n\t{"method"': GOJSON,
        b"P": None,  # POST, PUT, PATCH or PRI: wait
        b"PRI * HTTP/2": None,
        b"W": None,
        b"  ": None,
        b"SSH-2.0": "",
        b"\x16\x03\x01\x02\x00": "",  # TLS ClientHello: not served in clear text
        b"\x00\x00\x00": "",
    }
    for data, want in cases.items():
        assert classify(data) == want, data
