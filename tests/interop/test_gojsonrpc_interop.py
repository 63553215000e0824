"""Go JSON-RPC 1.0 both ways: jsonrpc.Dial / jsonrpc.ServeConn over TCP against wirecall,
byte-for-byte answers compared with Go's own server, and the tutorial's HTTP+JSON handler
(2.2.1) semantics compared with the Go program answering the Python requests client (2.2.2).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator

import msgspec
import pytest
import requests

import wirecall
from interop import goharness
from interop.gotypes import Args, Rich, rich_full
from interop.pyservices import Calculator, Echo
from wirecall import RpcError, Status, Unimplemented
from wirecall.transport.base import parse_url
from wirecall.transport.jsonrpc import connect, handle_http_body


@pytest.fixture
async def py_server() -> AsyncIterator[tuple[wirecall.Server, str]]:
    srv = wirecall.Server()
    srv.register(Calculator())
    srv.register(Echo())
    (url,) = await srv.start("jsonrpc://127.0.0.1:0")
    try:
        yield srv, url.split("//", 1)[1]
    finally:
        await srv.close(drain_timeout=1)


@pytest.fixture
def go_jsonrpc() -> Iterator[str]:
    with goharness.go_server("calcserver", "-mode", "jsonrpc") as srv:
        yield srv.addr


# -- Go client -> wirecall ---------------------------------------------------------------------


async def test_go_client_basic(py_server: tuple[wirecall.Server, str]) -> None:
    r = await goharness.run_go_client(py_server[1], "jsonrpc", "basic")
    assert r["add"]["result"] == 15 and r["add"]["error"] is None
    assert r["divide"]["result"] == 2 and r["divide"]["error"] is None
    assert r["divide0"]["error"] == "除数不能为零"
    assert r["unknown_method"]["error"] == "rpc: can't find method Calculator.Nope"
    assert r["unknown_service"]["error"] == "rpc: can't find service Nope.Add"
    assert r["add_after_errors"]["result"] == -3


async def test_go_client_pool_concurrency_rich(py_server: tuple[wirecall.Server, str]) -> None:
    addr = py_server[1]
    r = await goharness.run_go_client(addr, "jsonrpc", "pool")
    assert r["pool"]["bad"] == 0
    r = await goharness.run_go_client(addr, "jsonrpc", "concurrent")
    assert r["concurrent"]["bad"] == 0
    r = await goharness.run_go_client(addr, "jsonrpc", "rich")
    assert r["rich"]["equal"] is True, r["rich"]
    assert r["rich_zero"]["equal"] is True, r["rich_zero"]


# -- wirecall client -> Go ---------------------------------------------------------------------


async def test_wirecall_client_against_go(go_jsonrpc: str) -> None:
    conn = await connect(parse_url(f"jsonrpc://{go_jsonrpc}"))
    try:
        assert await conn.call("Calculator.Add", [Args(10, 5)], 5, None, int) == 15
        assert await conn.call("Calculator.Divide", [Args(10, 4)], 5, None, float) == 2.5
        with pytest.raises(RpcError) as ei:
            await conn.call("Calculator.Divide", [Args(1, 0)], 5, None, float)
        assert ei.value.message == "除数不能为零" and ei.value.status == Status.UNKNOWN
        with pytest.raises(Unimplemented):
            await conn.call("Calculator.Nope", [Args(1, 0)], 5, None, float)
        results = await asyncio.gather(
            *(conn.call("Calculator.Add", [Args(i, 1)], 10, None, int) for i in range(300))
        )
        assert results == [i + 1 for i in range(300)]
        # Go prints a float32 with float32 precision in JSON: F32 comes back as 0.1
        full_no_any = msgspec.structs.replace(rich_full(), Any=None)
        echoed = await conn.call("Echo.Rich", [full_no_any], 5, None, Rich)
        assert echoed == full_no_any
        zero = await conn.call("Echo.Rich", [Rich()], 5, None, Rich)  # nulls -> zero values
        assert zero == Rich()
    finally:
        await conn.aclose()


async def test_client_api_over_jsonrpc_url(go_jsonrpc: str) -> None:
    client = await wirecall.connect(f"jsonrpc://{go_jsonrpc}")
    try:
        assert await client.call("Calculator.Add", Args(10, 5), result_type=int) == 15
        assert await client.go("Calculator.Divide", A=9, B=3) == 3
    finally:
        await client.close()


# -- byte-for-byte against Go's server -------------------------------------------------------

REQUESTS = [
    b'{"method":"Calculator.Add","params":[{"A":10,"B":5}],"id":1}\n',
    b'{"method":"Calculator.Divide","params":[{"a":10,"b":4}],"id":"x"}\n',
    b'{"method":"Calculator.Divide","params":[{"A":1}],"id":[1,2]}\n',
    b'{"method":"Calculator.Add","id":3}\n',
    b'{"method":"Calculator.Add","params":null,"id":4}\n',
    b'{"method":"Calculator.Nope","params":[{}],"id":5}\n',
    b'{"method":"Nope.Add","params":[{}],"id":6}\n',
    b'{"method":"Calculator.Add","params":[],"id":7}\n',
    b'{"method":"Calculator.Add","params":{"A":1},"id":8}\n',
    b'{"method":"Calculator.Add","params":[{"A":1,"B":null,"C":3}]}\n',
    b'{"method":"Calculator.Add","params":[{"A":10,"B":5}],"id":1,"jsonrpc":"2.0"}\n',
    b'  {"method": "Calculator.Divide",\n "params": [{"A": 1, "B": 8}], "id": 12}  ',
    b'{"method":"Echo.Rich","params":[{"S":"<&>\xe2\x80\xa8","F":1e-7,"F32":1e21}],"id":13}\n',
]


def _ask_each(addr: str) -> list[bytes]:
    host, port = addr.rsplit(":", 1)
    out = []
    with socket.create_connection((host, int(port)), timeout=5) as s:
        f = s.makefile("rb")
        for req in REQUESTS:
            s.sendall(req)
            out.append(f.readline())
    return out


async def test_same_bytes_as_go_jsonrpc_server(
    py_server: tuple[wirecall.Server, str], go_jsonrpc: str
) -> None:
    loop = asyncio.get_running_loop()
    go = await loop.run_in_executor(None, _ask_each, go_jsonrpc)
    ours = await loop.run_in_executor(None, _ask_each, py_server[1])
    assert go[0] == b'{"id":1,"result":15,"error":null}\n'
    for req, g, o in zip(REQUESTS, go, ours, strict=True):
        assert o == g, f"request {req!r}: Go {g!r}, wirecall {o!r}"


async def test_garbage_closes_only_that_connection(py_server: tuple[wirecall.Server, str]) -> None:
    addr = py_server[1]
    host, port = addr.rsplit(":", 1)
    loop = asyncio.get_running_loop()

    def garbage() -> bytes:
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(b"12 not json\n")
            return s.recv(100)

    assert await loop.run_in_executor(None, garbage) == b""
    conn = await connect(parse_url(f"jsonrpc://{addr}"))
    try:
        assert await conn.call("Calculator.Add", [Args(1, 2)], 5, None, int) == 3
    finally:
        await conn.aclose()


# -- HTTP + JSON (tutorial 2.2.1 / 2.2.2) ----------------------------------------------------


def _tutorial_python_client(url: str) -> tuple[bytes, object]:
    """The tutorial's 2.2.2 client, verbatim apart from the URL."""
    headers = {"Content-Type": "application/json"}
    payload = {
        "method": "Calculator.Add",
        "params": [{"A": 10, "B": 5}],
        "id": 1,
        "jsonrpc": "2.0",
    }
    response = requests.post(url, headers=headers, data=json.dumps(payload), timeout=5)
    return response.content, response.json()


async def test_http_body_handler_matches_go_httpjson() -> None:
    srv = wirecall.Server()
    srv.register(Calculator())
    srv.register(Echo())
    loop = asyncio.get_running_loop()
    with goharness.go_server("calcserver", "-mode", "httpjson") as go:
        raw, parsed = await loop.run_in_executor(
            None, _tutorial_python_client, f"http://{go.addr}/jsonrpc"
        )
        assert parsed == {"id": 1, "result": 15, "error": None}
        body = json.dumps(
            {"method": "Calculator.Add", "params": [{"A": 10, "B": 5}], "id": 1, "jsonrpc": "2.0"}
        ).encode()
        assert await handle_http_body(srv, body) == raw
        for req in REQUESTS:
            go_body = await loop.run_in_executor(
                None,
                lambda r=req: requests.post(f"http://{go.addr}/jsonrpc", data=r, timeout=5).content,
            )
            assert await handle_http_body(srv, req) == go_body, req


async def test_wirecall_http_client_calls_the_tutorials_go_http_json_server() -> None:
    """Tutorial 2.2.1's Go server (rpc + jsonrpc.ServeConn over POST /jsonrpc), called by
    wirecall's http:// client: Go answers the 1.0 way and the client reads it."""
    with goharness.go_server("calcserver", "-mode", "httpjson") as go:
        client = await wirecall.connect(f"http://{go.addr}/jsonrpc", timeout=5)
        try:
            assert await client.call("Calculator.Add", {"A": 10, "B": 5}) == 15
            with pytest.raises(RpcError) as ei:
                await client.call("Calculator.Divide", {"A": 1, "B": 0})
            assert ei.value.message == "除数不能为零"
            got = await asyncio.gather(
                *(client.call("Calculator.Add", {"A": i, "B": i}) for i in range(50))
            )
            assert got == [2 * i for i in range(50)]
        finally:
            await client.close()
