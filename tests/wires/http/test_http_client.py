"""The HTTP client: wirecall.connect("http://...") over pooled keep-alive, batches, Go replies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

import wirecall
from support.jsonrpc import Args, Calculator, spec_server
from wirecall import Context, DeadlineExceeded, InvalidArgument, RpcError, Status, Unimplemented
from wirecall.transport import http
from wirecall.transport.http import BatchCall, HttpConnection


class Extra:
    async def Meta(self, ctx: Context) -> dict[str, str]:
        return dict(ctx.metadata)

    async def Sleep(self, s: float) -> str:
        await asyncio.sleep(s)
        return "ok"

    async def Fail(self) -> None:
        raise RpcError(Status.PERMISSION_DENIED, "nope", details={"why": "test"})


@pytest.fixture
async def url() -> AsyncIterator[str]:
    server = spec_server()
    server.register(Calculator())
    server.register(Extra())
    [u] = await server.start("http://127.0.0.1:0")
    yield u
    await server.close(drain_timeout=1)


async def test_client_call(url: str) -> None:
    async with await wirecall.connect(url + "/rpc") as client:
        assert await client.call("Calculator.Add", Args(A=10, B=5)) == 15
        assert await client.call("Calculator.Add", {"A": 1, "B": 2}) == 3
        assert await client.call("subtract", 42, 23) == 19
        assert await client.call("subtract", minuend=42, subtrahend=23) == 19
        assert await client.call("Calculator.Divide", Args(A=9, B=2), result_type=float) == 4.5
        with pytest.raises(InvalidArgument, match="除数不能为零"):
            await client.call("Calculator.Divide", Args(A=1, B=0))
        with pytest.raises(Unimplemented):
            await client.call("Calculator.Nope", Args(A=1, B=0))
        with pytest.raises(RpcError) as ei:
            await client.call("Extra.Fail")
        assert ei.value.status is Status.PERMISSION_DENIED and ei.value.details == {"why": "test"}


async def test_client_default_path_and_typed_result(url: str) -> None:
    async with await wirecall.connect(url) as client:  # no path: /rpc (JSON-RPC 2.0)
        assert await client.call("get_data", result_type=tuple[str, int]) == ("hello", 5)


async def test_client_timeout_and_metadata(url: str) -> None:
    async with await wirecall.connect(url, metadata={"tenant": "acme"}) as client:
        assert await client.call("Extra.Meta", metadata={"trace": "t1"}) == {
            "tenant": "acme", "trace": "t1"}
        with pytest.raises(DeadlineExceeded):
            await client.call("Extra.Sleep", 2, timeout=0.2)


async def test_concurrent_calls_share_keepalive_connections(url: str) -> None:
    async with await wirecall.connect(url) as client:
        results = await asyncio.gather(
            *(client.call("Calculator.Add", Args(A=i, B=i)) for i in range(100)))
        assert results == [2 * i for i in range(100)]
        conn = await client.pool.get()
        assert isinstance(conn, HttpConnection)
        connector = conn._session.connector
        assert connector is not None and len(connector._conns) >= 1  # kept alive, pooled


async def test_batch(url: str) -> None:
    async with await wirecall.connect(url) as client:
        out = await http.batch(client, [
            ("Calculator.Add", [{"A": 1, "B": 2}]),
            BatchCall("notify_hello", [7], notify=True),
            ("subtract", {"minuend": 5, "subtrahend": 3}),
            ("nope.nope", []),
            BatchCall("get_data", None, result_type=tuple[str, int]),
            ("Calculator.Divide", [{"A": 1, "B": 0}]),
        ])
        assert out[0] == 3 and out[1] is None and out[2] == 2
        assert isinstance(out[3], Unimplemented)
        assert out[4] == ("hello", 5)
        assert isinstance(out[5], InvalidArgument) and out[5].message == "除数不能为零"
        # only notifications: the server answers 204 and nothing is returned
        assert await http.batch(client, [BatchCall("notify_hello", [1], notify=True)]) == [None]
        assert await http.batch(client, []) == []


async def test_notify(url: str) -> None:
    conn = await http.connect(wirecall.transport.base.parse_url(url))
    assert isinstance(conn, HttpConnection)
    await conn.notify("notify_hello", [3])
    await conn.aclose()


async def test_connect_error_names_the_url() -> None:
    from conftest import free_port

    port = free_port()
    async with await wirecall.connect(f"http://127.0.0.1:{port}/jsonrpc") as client:
        with pytest.raises(wirecall.Unavailable, match=str(port)):
            await client.call("x.y")


@pytest.fixture
async def go_server() -> AsyncIterator[str]:
    """A server answering the way Go's net/rpc/jsonrpc behind the tutorial's handler does."""

    async def handler(request: web.Request) -> web.Response:
        req = await request.json()
        if req["method"] == "Calculator.Add":
            a = req["params"][0]
            body = {"id": req["id"], "result": a["A"] + a["B"], "error": None}
        else:
            body = {"id": req["id"], "result": None,
                    "error": f"rpc: can't find method {req['method']}"}
        import json

        return web.Response(text=json.dumps(body) + "\n", content_type="text/plain")

    app = web.Application()
    app.router.add_post("/jsonrpc", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/jsonrpc"
    await runner.cleanup()


async def test_client_accepts_go_style_responses(go_server: str) -> None:
    async with await wirecall.connect(go_server) as client:
        assert await client.call("Calculator.Add", Args(A=10, B=5)) == 15
        with pytest.raises(Unimplemented, match=r"can.t find method Calculator\.Nope"):
            await client.call("Calculator.Nope", Args(A=1, B=1))


async def test_http_error_statuses_become_rpc_errors(url: str) -> None:
    conn = HttpConnection(wirecall.transport.base.parse_url(url + "/nope"))
    with pytest.raises(wirecall.NotFound, match="404"):
        await conn.call("get_data", None)
    await conn.aclose()


# -- batches as a Client / SyncClient feature --------------------------------------------

_BATCH = [
    ("Calculator.Add", [{"A": 1, "B": 2}]),
    BatchCall("notify_hello", [7], notify=True),
    ("nope.nope", []),
    ("get_data", None, tuple[str, int]),
    ("Extra.Meta", []),
]


def _check_batch(out: list[object]) -> None:
    assert out[0] == 3 and out[1] is None
    assert isinstance(out[2], Unimplemented)
    assert out[3] == ("hello", 5)
    assert out[4] == {"tenant": "acme", "trace": "t1"}  # client metadata + per-batch metadata


@pytest.mark.parametrize("scheme", ["http", "ws"])
async def test_client_batch(url: str, scheme: str) -> None:
    target = url if scheme == "http" else url.replace("http://", "ws://") + "/ws"
    async with await wirecall.connect(target, metadata={"tenant": "acme"}) as client:
        _check_batch(await client.batch(_BATCH, metadata={"trace": "t1"}))
        assert await client.batch([]) == []
        with pytest.raises(DeadlineExceeded):
            await client.batch([("Extra.Sleep", [2])], timeout=0.2)
        # the module-level helper still works
        assert await http.batch(client, [("subtract", [3, 1])]) == [2]


async def test_client_batch_on_a_transport_without_batches() -> None:
    server = wirecall.Server()
    server.register(Calculator())
    [u] = await server.start("tcp://127.0.0.1:0")
    async with await wirecall.connect(u) as client:
        with pytest.raises(Unimplemented, match=r"tcp:// transport"):
            await client.batch([("Calculator.Add", [{"A": 1, "B": 2}])])
    await server.close(drain_timeout=1)


@pytest.mark.parametrize("scheme", ["http", "ws"])
async def test_sync_client_batch(url: str, scheme: str) -> None:
    import wirecall.sync

    target = url if scheme == "http" else url.replace("http://", "ws://") + "/ws"

    def blocking() -> list[object]:
        with wirecall.sync.connect(target, metadata={"tenant": "acme"}) as client:
            return client.batch(_BATCH, metadata={"trace": "t1"})

    _check_batch(await asyncio.wait_for(asyncio.to_thread(blocking), 10))


async def test_sync_client_batch_on_the_native_transport() -> None:
    import wirecall.sync

    server = wirecall.Server()
    server.register(Calculator())
    [u] = await server.start("tcp://127.0.0.1:0")

    def blocking() -> None:
        with wirecall.sync.connect(u) as client, pytest.raises(Unimplemented, match="tcp://"):
            client.batch([("Calculator.Add", [{"A": 1, "B": 2}])])

    await asyncio.wait_for(asyncio.to_thread(blocking), 10)
    await server.close(drain_timeout=1)
