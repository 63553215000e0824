"""JSON-RPC 2.0 over WebSocket, both directions."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

import wirecall
from support.jsonrpc import Args, Calculator, spec_server
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
        self.endless_exits: list[type[BaseException]] = []

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

    async def Endless(self) -> AsyncIterator[int]:
        """Never ends by itself; records how it was stopped."""
        i = 0
        try:
            while True:
                yield i
                i += 1
                await asyncio.sleep(0.001)
        except (asyncio.CancelledError, GeneratorExit) as exc:
            self.endless_exits.append(type(exc))
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


async def test_a_dropped_server_stream_is_cancelled_on_the_server(
    stream_conn: tuple[WebSocketConnection, Streams],
) -> None:
    """The connection holds its streams weakly: one the caller lets go of unfinished (no
    cancel, no aclose) is collected and ``rpc.stream.cancel`` ends the handler."""
    conn, streams = stream_conn
    for n in range(1, 4):
        st = conn.open_stream("Streams.Endless", [], result_type=int)
        assert await asyncio.wait_for(st.recv(), 5) == 0
        del st
        end = time.monotonic() + 5
        while len(streams.endless_exits) < n and time.monotonic() < end:
            gc.collect()
            await asyncio.sleep(0.02)
        assert len(streams.endless_exits) == n, "the dropped stream's handler still runs"
        assert streams.endless_exits[-1] in (asyncio.CancelledError, GeneratorExit)
    assert not conn._streams  # nothing left in the connection's table
    # the connection is still good
    assert [x async for x in conn.open_stream("Streams.Count", [2])] == [0, 1]


# -- flow control, routing, metadata (audit fixes) -----------------------------------------


class Flow:
    def __init__(self) -> None:
        self.produced = 0
        self.inbound: Any = None
        self.read = asyncio.Event()
        self.metadata: dict[str, str] = {}

    async def Flood(self, n: int) -> AsyncIterator[str]:
        for _ in range(n):
            self.produced += 1
            yield "x" * 100

    async def Sink(self, items: AsyncIterator[str]) -> int:
        self.inbound = items
        await self.read.wait()  # a slow handler: reads nothing until told to
        n = 0
        async for _ in items:
            n += 1
        return n

    async def Meta(self, n: int, ctx: wirecall.Context) -> AsyncIterator[str]:
        self.metadata = dict(ctx.metadata)
        for _ in range(n):
            yield ctx.metadata.get("tenant", "-")

    def UnaryMeta(self, ctx: wirecall.Context) -> dict[str, str]:
        return dict(ctx.metadata)


@pytest.fixture
async def flow_conn() -> AsyncIterator[tuple[WebSocketConnection, Flow, wirecall.Server]]:
    server = wirecall.Server()
    flow = Flow()
    server.register(flow)
    [u] = await server.start("http://127.0.0.1:0")
    port = wirecall.transport.base.parse_url(u).port
    client = await wirecall.connect(f"ws://127.0.0.1:{port}/ws",
                                    headers={"Wirecall-Meta-Conn": "1"})  # per connection
    conn = await client.pool.get()
    assert isinstance(conn, WebSocketConnection)
    yield conn, flow, server
    await client.close()
    await server.close(drain_timeout=1)


async def _settle(value: Any, rounds: int = 40) -> None:
    """Wait until ``value()`` stops changing (bounded: at most rounds * 0.05 s)."""
    last = value()
    for _ in range(rounds):
        await asyncio.sleep(0.05)
        now = value()
        if now == last and now:
            return
        last = now


async def test_server_stream_to_a_client_that_never_reads(
    flow_conn: tuple[WebSocketConnection, Flow, wirecall.Server],
) -> None:
    conn, flow, server = flow_conn
    window = http.STREAM_WINDOW_INITIAL
    st = conn.open_stream("Flow.Flood", [200_000])
    await _settle(lambda: flow.produced)
    await asyncio.sleep(0.3)
    # the producer is blocked on credit: one window sent (plus the item it holds), no more
    assert flow.produced <= window + 1
    assert len(st._items) <= window
    assert server.inflight == 1 and not st.done
    # reading returns credit: the stream moves on, still bounded
    for _ in range(10 * window):
        await asyncio.wait_for(st.recv(), 5)
    await asyncio.sleep(0.1)
    assert 11 * window <= flow.produced <= 12 * window + 1
    assert len(st._items) <= window
    st.cancel()


async def test_client_stream_into_a_handler_that_never_reads(
    flow_conn: tuple[WebSocketConnection, Flow, wirecall.Server],
) -> None:
    conn, flow, _ = flow_conn
    window = http.STREAM_WINDOW_INITIAL
    st = conn.open_stream("Flow.Sink", None)
    sent = [0]

    async def pump() -> None:
        for _ in range(50_000 if not flow.read.is_set() else 0):
            await st.send("y" * 100)
            sent[0] += 1
            if flow.read.is_set() and sent[0] >= 200:
                break
        await st.done_writing()

    task = asyncio.create_task(pump())
    await _settle(lambda: flow.inbound.buffered if flow.inbound is not None else 0)
    await asyncio.sleep(0.3)
    assert flow.inbound is not None
    assert flow.inbound.buffered <= window
    assert sent[0] <= window and not task.done()  # the sender waits for credit
    flow.read.set()  # the handler starts reading: credit flows back, the sender finishes
    await asyncio.wait_for(task, 10)
    assert await asyncio.wait_for(st.result(), 5) == sent[0] >= 200


async def test_a_client_exceeding_its_window_gets_resource_exhausted(
    flow_conn: tuple[WebSocketConnection, Flow, wirecall.Server],
) -> None:
    conn, _, server = flow_conn
    url = conn.url
    async with aiohttp.ClientSession() as s, s.ws_connect(url) as ws:
        await ws.send_str('{"jsonrpc":"2.0","method":"Flow.Sink","id":7}')
        for i in range(http.STREAM_WINDOW_INITIAL + 1):
            await ws.send_str(json.dumps({"jsonrpc": "2.0", "method": "rpc.stream.item",
                                          "params": {"id": 7, "item": str(i)}}))
        opened = json.loads(await asyncio.wait_for(ws.receive_str(), 5))
        assert opened["method"] == "rpc.stream.open" and opened["params"]["id"] == 7
        r = json.loads(await asyncio.wait_for(ws.receive_str(), 5))
        assert r["id"] == 7 and r["error"]["data"]["status"] == "RESOURCE_EXHAUSTED"
        assert "window" in r["error"]["message"]
    for _ in range(40):  # the handler was cancelled
        if server.inflight == 0:
            break
        await asyncio.sleep(0.05)
    assert server.inflight == 0


async def test_a_server_exceeding_the_window_fails_the_client_stream(
    flow_conn: tuple[WebSocketConnection, Flow, wirecall.Server],
) -> None:
    conn, _, _ = flow_conn
    st = conn.open_stream("Flow.Flood", [0])
    sid = st.id  # type: ignore[attr-defined]
    for i in range(http.STREAM_WINDOW_INITIAL + 1):  # what a misbehaving server would send
        conn._dispatch({"jsonrpc": "2.0", "method": "rpc.stream.item",
                        "params": {"id": sid, "item": i}})
    assert st.done
    with pytest.raises(wirecall.ResourceExhausted, match="window"):
        async for _ in st:
            pass


async def test_raw_client_drives_the_window(
    flow_conn: tuple[WebSocketConnection, Flow, wirecall.Server],
) -> None:
    """The convention without wirecall's client: 16 items, then one per granted credit."""
    conn, _, _ = flow_conn
    async with aiohttp.ClientSession() as s, s.ws_connect(conn.url) as ws:
        await ws.send_str('{"jsonrpc":"2.0","method":"Flow.Flood","params":[40],"id":"f"}')
        opened = json.loads(await asyncio.wait_for(ws.receive_str(), 5))
        assert opened["params"] == {"id": "f", "method": "Flow.Flood", "mode": "server_stream"}
        items = []
        for _ in range(http.STREAM_WINDOW_INITIAL):
            items.append(json.loads(await asyncio.wait_for(ws.receive_str(), 5)))
        assert all(m["method"] == "rpc.stream.item" for m in items)
        with pytest.raises(TimeoutError):  # no credit: nothing more comes
            await asyncio.wait_for(ws.receive_str(), 0.3)
        await ws.send_str('{"jsonrpc":"2.0","method":"rpc.stream.window",'
                          '"params":{"id":"f","n":100}}')
        rest = []
        while True:
            m = json.loads(await asyncio.wait_for(ws.receive_str(), 5))
            if "method" not in m:
                assert m == {"jsonrpc": "2.0", "result": None, "id": "f"}
                break
            rest.append(m)
        assert len(items) + len(rest) == 40


async def test_server_call_answered_with_a_method_member(
    flow_conn: tuple[WebSocketConnection, Flow, wirecall.Server],
) -> None:
    """A reply whose *result* mentions "method" is still a reply (routing decodes first)."""
    conn, _, server = flow_conn

    class Ask:
        async def Info(self) -> Any:
            ws = current_websocket()
            assert ws is not None
            return await ws.call("client.info", [], timeout=5)

    server.register(Ask())
    conn.register("client.info", lambda: {"method": "GET", "path": "/", "x": '"method"'})
    assert await asyncio.wait_for(conn.call("Ask.Info", []), 5) == {
        "method": "GET", "path": "/", "x": '"method"'}


async def test_stream_and_call_metadata_reach_the_context(
    flow_conn: tuple[WebSocketConnection, Flow, wirecall.Server],
) -> None:
    conn, flow, _ = flow_conn
    st = conn.open_stream("Flow.Meta", [2], metadata={"tenant": "acme"})
    assert [x async for x in st] == ["acme", "acme"]
    assert flow.metadata == {"conn": "1", "tenant": "acme"}  # per-call over per-connection
    assert await conn.call("Flow.UnaryMeta", [], metadata={"k": "v"}) == {"conn": "1", "k": "v"}
    # a bad metadata member is an invalid request, not ignored
    async with aiohttp.ClientSession() as s, s.ws_connect(conn.url) as ws:
        await ws.send_str('{"jsonrpc":"2.0","method":"Flow.UnaryMeta","id":1,"metadata":{"a":1}}')
        r = json.loads(await asyncio.wait_for(ws.receive_str(), 5))
        assert r["error"]["code"] == -32600 and "metadata" in r["error"]["message"]


@pytest.mark.parametrize("kind", ["async", "thread"])
async def test_client_that_never_reads_its_answers_stops_being_read(kind: str) -> None:
    """Unary calls: a client that sends and never reads cannot grow the server's buffer
    (the session stops reading while its socket is not writable, and refuses calls over
    ``max_concurrent_calls`` in flight)."""
    served = [0]

    def blob(pad: str) -> str:
        served[0] += 1
        return "z" * 2000

    async def ablob(pad: str) -> str:
        return blob(pad)

    server = wirecall.Server()
    server.register_function(ablob if kind == "async" else blob, name="blob")
    [u] = await server.start("http://127.0.0.1:0")
    port = wirecall.transport.base.parse_url(u).port
    n = 20_000  # 40 MB each way: far more than the kernel's socket buffers hold
    pad = "p" * 2000
    async with aiohttp.ClientSession() as s, s.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:

        async def flood() -> None:
            for i in range(n):
                await ws.send_str(json.dumps(
                    {"jsonrpc": "2.0", "method": "blob", "params": [pad], "id": i}))

        task = asyncio.create_task(flood())  # never receives
        await _settle(lambda: served[0], rounds=60)
        await asyncio.sleep(0.3)
        [session] = server.listeners[0].service.sessions  # type: ignore[attr-defined]
        buffered = session.ws._writer.transport.get_write_buffer_size()
        assert served[0] < n
        assert buffered < 3 * 1024 * 1024
        if kind == "async":  # answers come at once: the server stopped reading the client
            assert not task.done()
        task.cancel()
    await server.close(drain_timeout=1)


async def test_calls_over_max_concurrent_calls_are_refused() -> None:
    release = asyncio.Event()

    async def hold() -> str:
        await release.wait()
        return "done"

    server = wirecall.Server(max_concurrent_calls=2)
    server.register_function(hold, name="hold")
    [u] = await server.start("http://127.0.0.1:0")
    port = wirecall.transport.base.parse_url(u).port
    client = await wirecall.connect(f"ws://127.0.0.1:{port}/ws")
    first = [asyncio.create_task(client.call("hold")) for _ in range(2)]
    await asyncio.sleep(0.2)
    with pytest.raises(wirecall.ResourceExhausted, match="in flight"):
        await asyncio.wait_for(client.call("hold"), 5)
    release.set()
    assert await asyncio.wait_for(asyncio.gather(*first), 5) == ["done", "done"]
    assert await asyncio.wait_for(client.call("hold"), 5) == "done"  # room again
    await client.close()
    await server.close(drain_timeout=1)


class AskMany:
    """Server code that makes several calls to the client at once."""

    def __init__(self) -> None:
        self.outcomes: list[str] = []

    async def Ask(self, n: int) -> list[str]:
        ws = current_websocket()
        assert ws is not None

        async def one() -> str:
            try:
                r = await ws.call("client.hold", [], timeout=10)
            except wirecall.RpcError as exc:
                out = exc.status.name
            else:
                out = str(r)
            self.outcomes.append(out)
            return out

        return list(await asyncio.gather(*[one() for _ in range(n)]))


async def test_server_calls_over_the_clients_limit_are_refused() -> None:
    """The WebSocket client runs at most ``max_incoming_calls`` of the server's calls at once;
    one more is answered RESOURCE_EXHAUSTED at once; closing the connection cancels and
    awaits the handlers still running."""
    asker = AskMany()
    server = wirecall.Server()
    server.register(asker)
    [u] = await server.start("http://127.0.0.1:0")
    port = wirecall.transport.base.parse_url(u).port
    client = await wirecall.connect(f"ws://127.0.0.1:{port}/ws", max_incoming_calls=3)
    conn = await client.pool.get()
    assert isinstance(conn, WebSocketConnection)
    assert conn.max_incoming_calls == 3
    release = asyncio.Event()
    running = 0
    cancelled = 0

    async def hold() -> str:
        nonlocal running, cancelled
        running += 1
        try:
            await release.wait()
        except asyncio.CancelledError:
            cancelled += 1
            raise
        finally:
            running -= 1
        return "ok"

    conn.register("client.hold", hold)
    call: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    try:
        call = asyncio.ensure_future(client.call("AskMany.Ask", 5, timeout=10))
        for _ in range(250):  # the excess is refused while the first three still run
            if asker.outcomes.count("RESOURCE_EXHAUSTED") == 2:
                break
            await asyncio.sleep(0.02)
        assert asker.outcomes == ["RESOURCE_EXHAUSTED"] * 2
        assert running == 3 and len(conn._serving) == 3
        release.set()
        assert sorted(await asyncio.wait_for(call, 5)) == ["RESOURCE_EXHAUSTED"] * 2 + ["ok"] * 3
        assert running == 0

        # room again; then close while three handlers are blocked
        release.clear()
        asker.outcomes.clear()
        call = asyncio.ensure_future(client.call("AskMany.Ask", 3, timeout=10))
        for _ in range(250):
            if running == 3:
                break
            await asyncio.sleep(0.02)
        assert running == 3 and asker.outcomes == []
        tasks = list(conn._serving)
        await client.close()
        assert all(t.done() for t in tasks)  # cancelled and awaited by close
        assert cancelled == 3 and running == 0 and not conn._serving
        assert conn._reader.done() and not conn._tasks
        with pytest.raises(wirecall.RpcError):
            await call
    finally:
        release.set()
        call.cancel()
        await client.close()
        await server.close(drain_timeout=1)


def test_max_incoming_calls_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_incoming_calls"):
        WebSocketConnection(None, None, "ws://x", max_incoming_calls=0)
