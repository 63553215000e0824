"""JSON-RPC 2.0 over WebSocket, both directions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

import wirecall
from jsonrpc_helpers import Args, Calculator, spec_server
from wirecall import InvalidArgument
from wirecall.transport import http
from wirecall.transport.http import WebSocketConnection, current_websocket


class Feed:
    """Server code that talks back to the client over the WebSocket."""

    def __init__(self) -> None:
        self.subscribers: set[http.WebSocketSession] = set()

    async def Subscribe(self, count: int) -> str:
        ws = current_websocket()
        assert ws is not None
        self.subscribers.add(ws)

        async def push() -> None:
            for i in range(count):
                await ws.notify("tick", {"n": i})

        asyncio.get_running_loop().create_task(push())
        return "subscribed"

    async def AskClient(self, text: str) -> Any:
        ws = current_websocket()
        assert ws is not None
        return await ws.call("client.upper", [text], timeout=5)

    def Where(self) -> str:
        ws = current_websocket()
        return "ws" if ws is not None else "http"


@pytest.fixture
async def urls() -> AsyncIterator[tuple[str, str]]:
    server = spec_server()
    server.register(Calculator())
    server.register(Feed())
    [u] = await server.start("http://127.0.0.1:0")
    port = wirecall.transport.base.parse_url(u).port
    yield u, f"ws://127.0.0.1:{port}/ws"
    await server.close(drain_timeout=1)


async def test_call_over_websocket(urls: tuple[str, str]) -> None:
    async with await wirecall.connect(urls[1]) as client:
        assert await client.call("Calculator.Add", Args(A=10, B=5)) == 15
        with pytest.raises(InvalidArgument, match="除数不能为零"):
            await client.call("Calculator.Divide", Args(A=1, B=0))
        assert await client.call("Feed.Where") == "ws"
        results = await asyncio.gather(
            *(client.call("subtract", i, 1) for i in range(50)))
        assert results == [i - 1 for i in range(50)]


async def test_server_notifications(urls: tuple[str, str]) -> None:
    async with await wirecall.connect(urls[1]) as client:
        conn = await client.pool.get()
        assert isinstance(conn, WebSocketConnection)
        got: list[int] = []
        done = asyncio.Event()

        def on_tick(params: Any) -> None:
            got.append(params["n"])
            if len(got) == 5:
                done.set()

        conn.on_notification("tick", on_tick)
        assert await client.call("Feed.Subscribe", 5) == "subscribed"
        await asyncio.wait_for(done.wait(), 5)
        assert got == [0, 1, 2, 3, 4]


async def test_server_calls_the_client(urls: tuple[str, str]) -> None:
    async with await wirecall.connect(urls[1]) as client:
        conn = await client.pool.get()
        assert isinstance(conn, WebSocketConnection)

        async def upper(text: str) -> str:
            return text.upper()

        conn.register("client.upper", upper)
        assert await client.call("Feed.AskClient", "hello") == "HELLO"
        # a method the client does not have comes back as UNIMPLEMENTED
        conn._handlers.clear()
        with pytest.raises(wirecall.Unimplemented):
            await client.call("Feed.AskClient", "x")


async def test_websocket_batch(urls: tuple[str, str]) -> None:
    async with await wirecall.connect(urls[1]) as client:
        out = await http.batch(client, [
            ("sum", [1, 2, 4]),
            http.BatchCall("notify_hello", [7], notify=True),
            ("subtract", [42, 23]),
            ("foo.get", {"name": "myself"}),
        ])
        assert out[0] == 7 and out[1] is None and out[2] == 19
        assert isinstance(out[3], wirecall.Unimplemented)


async def test_raw_websocket_spec_examples(urls: tuple[str, str]) -> None:
    async with aiohttp.ClientSession() as s, s.ws_connect(urls[1].replace("ws:", "http:")) as ws:
        await ws.send_str('{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]')
        r = json.loads(await asyncio.wait_for(ws.receive_str(), 5))
        assert r["error"]["code"] == -32700
        await ws.send_str("[1,2,3]")
        r = json.loads(await asyncio.wait_for(ws.receive_str(), 5))
        assert [x["error"]["code"] for x in r] == [-32600] * 3
        await ws.send_str('{"jsonrpc": "2.0", "method": "update", "params": [1]}')  # no answer
        await ws.send_str('{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}')
        r = json.loads(await asyncio.wait_for(ws.receive_str(), 5))
        assert r == {"jsonrpc": "2.0", "result": 19, "id": 1}


async def test_get_ws_without_upgrade_is_400(urls: tuple[str, str]) -> None:
    async with aiohttp.ClientSession() as s, s.get(urls[1].replace("ws:", "http:")) as r:
        assert r.status == 400


async def test_websocket_and_http_on_the_same_connection_port(urls: tuple[str, str]) -> None:
    async with await wirecall.connect(urls[0]) as hc, await wirecall.connect(urls[1]) as wc:
        assert await hc.call("Feed.Where") == "http"
        assert await wc.call("Feed.Where") == "ws"


async def test_server_shutdown_closes_websockets() -> None:
    server = spec_server()
    [u] = await server.start("http://127.0.0.1:0")
    port = wirecall.transport.base.parse_url(u).port
    client = await wirecall.connect(f"ws://127.0.0.1:{port}/ws")
    assert await client.call("subtract", 2, 1) == 1
    conn = await client.pool.get()
    assert isinstance(conn, WebSocketConnection)
    await asyncio.wait_for(server.close(drain_timeout=1), 5)
    for _ in range(50):  # the client sees the close (and the GOAWAY notification before it)
        if conn.closed:
            break
        await asyncio.sleep(0.05)
    assert conn.closed and conn.goaway_received
    with pytest.raises(wirecall.RpcError):
        await asyncio.wait_for(conn.call("subtract", [2, 1]), 5)
    await client.close()
