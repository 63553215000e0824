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


# -- streaming calls over the WebSocket ---------------------------------------------------


class Streams:
    def __init__(self) -> None:
        self.cancelled = asyncio.Event()

    async def Count(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    async def Points(self, n: int) -> AsyncIterator[Args]:
        for i in range(n):
            yield Args(A=i, B=-i)

    async def Sum(self, items: AsyncIterator[Args]) -> int:
        total = 0
        async for a in items:
            total += a.A + a.B
        return total

    async def Upper(self, words: AsyncIterator[str]) -> AsyncIterator[str]:
        async for w in words:
            yield w.upper()

    async def FailAfter(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i
        raise wirecall.RpcError(wirecall.Status.ABORTED, "stopped on purpose")

    async def Forever(self) -> AsyncIterator[int]:
        i = 0
        try:
            while True:
                yield i
                i += 1
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


@pytest.fixture
async def stream_conn() -> AsyncIterator[tuple[WebSocketConnection, Streams]]:
    server = wirecall.Server()
    streams = Streams()
    server.register(streams)
    [u] = await server.start("http://127.0.0.1:0")
    port = wirecall.transport.base.parse_url(u).port
    client = await wirecall.connect(f"ws://127.0.0.1:{port}/ws")
    conn = await client.pool.get()
    assert isinstance(conn, WebSocketConnection)
    yield conn, streams
    await client.close()
    await server.close(drain_timeout=1)


async def test_server_stream(stream_conn: tuple[WebSocketConnection, Streams]) -> None:
    conn, _ = stream_conn
    st = conn.open_stream("Streams.Count", [5])
    assert [x async for x in st] == [0, 1, 2, 3, 4]
    st = conn.open_stream("Streams.Points", [3], result_type=Args)
    assert [x async for x in st] == [Args(0, 0), Args(1, -1), Args(2, -2)]


async def test_client_stream(stream_conn: tuple[WebSocketConnection, Streams]) -> None:
    conn, _ = stream_conn
    st = conn.open_stream("Streams.Sum", iter([{"A": 1, "B": 2}, {"A": 10, "B": 20}]))
    assert await asyncio.wait_for(st.result(), 5) == 33
    st = conn.open_stream("Streams.Sum", None)
    await st.send(Args(A=5, B=5))
    await st.done_writing()
    assert await asyncio.wait_for(st.result(), 5) == 10


async def test_bidi_stream(stream_conn: tuple[WebSocketConnection, Streams]) -> None:
    conn, _ = stream_conn
    st = conn.open_stream("Streams.Upper", None)
    out = []
    for w in ["a", "b", "c"]:
        await st.send(w)
        out.append(await asyncio.wait_for(st.recv(), 5))
    await st.done_writing()
    assert out == ["A", "B", "C"]
    assert [x async for x in st] == []


async def test_stream_error_and_bad_item(stream_conn: tuple[WebSocketConnection, Streams]) -> None:
    conn, _ = stream_conn
    st = conn.open_stream("Streams.FailAfter", [2])
    got = []
    with pytest.raises(wirecall.RpcError) as ei:
        async for x in st:
            got.append(x)
    assert got == [0, 1] and ei.value.status is wirecall.Status.ABORTED
    st = conn.open_stream("Streams.Sum", iter([{"A": "x"}]))
    with pytest.raises(wirecall.InvalidArgument):
        await asyncio.wait_for(st.result(), 5)


async def test_stream_cancel_and_deadline(stream_conn: tuple[WebSocketConnection, Streams]) -> None:
    conn, streams = stream_conn
    st = conn.open_stream("Streams.Forever", [])
    assert await asyncio.wait_for(st.recv(), 5) == 0
    st.cancel()
    await asyncio.wait_for(streams.cancelled.wait(), 5)  # the server's handler was cancelled
    streams.cancelled.clear()
    st = conn.open_stream("Streams.Forever", [], timeout=0.2)
    with pytest.raises(wirecall.DeadlineExceeded):
        async for _ in st:
            pass
    await asyncio.wait_for(streams.cancelled.wait(), 5)
    # unary calls still work on the same connection
    assert [x async for x in conn.open_stream("Streams.Count", [2])] == [0, 1]
