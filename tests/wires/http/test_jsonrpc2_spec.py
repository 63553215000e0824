"""Every example of the JSON-RPC 2.0 specification (section 7), over HTTP POST /rpc
(``/jsonrpc`` answers as Go's server does: docs/http.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from support.jsonrpc import NOTIFIED, loads, post, spec_server
from wirecall.transport.base import parse_url


@pytest.fixture
async def port() -> AsyncIterator[int]:
    server = spec_server()
    [url] = await server.start("http://127.0.0.1:0")
    yield parse_url(url).port
    await server.close(drain_timeout=1)


async def rpc(port: int, body: str) -> tuple[int, Any]:
    status, _h, data = await post(port, body)
    return status, loads(data)


def by_id(replies: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {repr(r["id"]): r for r in replies}


async def test_positional_parameters(port: int) -> None:
    st, r = await rpc(port, '{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}')
    assert st == 200
    assert r == {"jsonrpc": "2.0", "result": 19, "id": 1}
    _, r = await rpc(port, '{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}')
    assert r == {"jsonrpc": "2.0", "result": -19, "id": 2}


async def test_named_parameters(port: int) -> None:
    _, r = await rpc(
        port,
        '{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42},'
        ' "id": 3}',
    )
    assert r == {"jsonrpc": "2.0", "result": 19, "id": 3}
    _, r = await rpc(
        port,
        '{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23},'
        ' "id": 4}',
    )
    assert r == {"jsonrpc": "2.0", "result": 19, "id": 4}


async def test_notifications(port: int) -> None:
    NOTIFIED.clear()
    st, r = await rpc(port, '{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}')
    assert (st, r) == (204, None)
    st, r = await rpc(port, '{"jsonrpc": "2.0", "method": "foobar"}')
    assert (st, r) == (204, None)
    assert ("update", (1, 2, 3, 4, 5)) in NOTIFIED  # the handler still ran


async def test_non_existent_method(port: int) -> None:
    _, r = await rpc(port, '{"jsonrpc": "2.0", "method": "foobar", "id": "1"}')
    assert r["jsonrpc"] == "2.0" and r["id"] == "1" and "result" not in r
    assert r["error"]["code"] == -32601
    assert r["error"]["data"]["status"] == "UNIMPLEMENTED"
    assert isinstance(r["error"]["message"], str) and r["error"]["message"]


async def test_invalid_json(port: int) -> None:
    st, r = await rpc(port, '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]')
    assert st == 200
    assert r["id"] is None and r["jsonrpc"] == "2.0"
    assert r["error"]["code"] == -32700


async def test_invalid_request_object(port: int) -> None:
    _, r = await rpc(port, '{"jsonrpc": "2.0", "method": 1, "params": "bar"}')
    assert r["id"] is None
    assert r["error"]["code"] == -32600


async def test_batch_invalid_json(port: int) -> None:
    _, r = await rpc(
        port,
        '[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
        '{"jsonrpc": "2.0", "method"]',
    )
    assert isinstance(r, dict)
    assert r["id"] is None and r["error"]["code"] == -32700


async def test_empty_array(port: int) -> None:
    _, r = await rpc(port, "[]")
    assert isinstance(r, dict)
    assert r["id"] is None and r["error"]["code"] == -32600


async def test_invalid_batch_not_empty(port: int) -> None:
    _, r = await rpc(port, "[1]")
    assert isinstance(r, list) and len(r) == 1
    assert r[0]["id"] is None and r[0]["error"]["code"] == -32600


async def test_invalid_batch(port: int) -> None:
    _, r = await rpc(port, "[1,2,3]")
    assert isinstance(r, list) and len(r) == 3
    for item in r:
        assert item["jsonrpc"] == "2.0"
        assert item["id"] is None and item["error"]["code"] == -32600


async def test_mixed_batch(port: int) -> None:
    NOTIFIED.clear()
    _, r = await rpc(
        port,
        """[
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
    ]""",
    )
    assert isinstance(r, list) and len(r) == 5
    assert all(x["jsonrpc"] == "2.0" for x in r)
    ok = {x["id"]: x["result"] for x in r if "result" in x}
    assert ok == {"1": 7, "2": 19, "9": ["hello", 5]}
    errors = sorted((repr(x["id"]), x["error"]["code"]) for x in r if "error" in x)
    assert errors == [("'5'", -32601), ("None", -32600)]
    assert ("notify_hello", (7,)) in NOTIFIED


async def test_all_notifications_batch(port: int) -> None:
    NOTIFIED.clear()
    st, r = await rpc(
        port,
        '[{"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},'
        '{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}]',
    )
    assert (st, r) == (204, None)
    assert ("notify_hello", (7,)) in NOTIFIED


async def test_batch_runs_calls_concurrently_in_any_order(port: int) -> None:
    body = "[" + ",".join(
        f'{{"jsonrpc":"2.0","method":"subtract","params":[{i},1],"id":{i}}}' for i in range(50)
    ) + "]"
    _, r = await rpc(port, body)
    assert {x["id"]: x["result"] for x in r} == {i: i - 1 for i in range(50)}


async def test_concurrent_requests(port: int) -> None:
    bodies = [
        f'{{"jsonrpc":"2.0","method":"subtract","params":[{i},{i}],"id":{i}}}' for i in range(20)
    ]
    results = await asyncio.gather(*(rpc(port, b) for b in bodies))
    assert [r for _, r in results] == [{"jsonrpc": "2.0", "result": 0, "id": i} for i in range(20)]
