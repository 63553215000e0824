"""JSON-RPC over HTTP beyond the spec's examples: bad input, limits, timeouts, Go 1.0, probes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import requests

import wirecall
from support.jsonrpc import Args, Calculator, loads, post, read_response, spec_server
from wirecall import Context, RpcError, Status
from wirecall.transport.base import parse_url


class Errors:
    async def Fail(self, status: str) -> None:
        raise RpcError(Status[status], f"failed with {status}")

    async def Crash(self) -> None:
        raise ValueError("boom")

    async def Meta(self, ctx: Context) -> dict[str, Any]:
        return {"metadata": dict(ctx.metadata), "remaining": ctx.time_remaining(),
                "transport": ctx.transport, "peer": ctx.peer}

    async def Sleep(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    async def Bytes(self) -> set[int]:
        return {1}

    async def Unencodable(self) -> Any:
        return object()


@pytest.fixture
async def srv() -> AsyncIterator[wirecall.Server]:
    server = spec_server()
    server.register(Calculator())
    server.register(Errors())
    await server.start("http://127.0.0.1:0")
    yield server
    await server.close(drain_timeout=1)


def port_of(server: wirecall.Server) -> int:
    return parse_url(server.urls[0]).port


async def rpc(server: wirecall.Server, body: str | bytes, **kw: Any) -> tuple[int, Any]:
    st, _h, data = await post(port_of(server), body, **kw)
    return st, loads(data)


# -- the tutorial's Python client, verbatim ---------------------------------------------


def tutorial_client(url: str) -> Any:
    import json

    import requests

    headers = {"Content-Type": "application/json"}

    # 发送 JSON-RPC 请求
    payload = {
        "method": "Calculator.Add",
        "params": [{"A": 10, "B": 5}],
        "id": 1,
        "jsonrpc": "2.0"
    }

    response = requests.post(url, headers=headers, data=json.dumps(payload))

    print("服务器响应:", response.json())
    return response.json()


async def test_tutorial_requests_client(srv: wirecall.Server) -> None:
    url = f"http://localhost:{port_of(srv)}/jsonrpc"
    reply = await asyncio.to_thread(tutorial_client, url)
    # /jsonrpc answers as the tutorial's Go server does, "jsonrpc": "2.0" or not (issue #10)
    assert reply == {"id": 1, "result": 15, "error": None}
    reply = await asyncio.to_thread(tutorial_client, url.replace("/jsonrpc", "/rpc"))
    assert reply == {"jsonrpc": "2.0", "result": 15, "id": 1}  # JSON-RPC 2.0: its own path


async def test_requests_session_keepalive_and_rpc_alias(srv: wirecall.Server) -> None:
    def run() -> list[Any]:
        with requests.Session() as s:
            out = []
            for i, path in enumerate(["/jsonrpc", "/rpc", "/jsonrpc"]):  # Go's and 2.0's
                r = s.post(f"http://127.0.0.1:{port_of(srv)}{path}",
                           json={"jsonrpc": "2.0", "method": "Calculator.Add",
                                 "params": [{"A": i, "B": 1}], "id": i})
                out.append((r.status_code, r.headers["Content-Type"], r.json()["result"]))
            return out

    assert await asyncio.to_thread(run) == [(200, "application/json", i + 1) for i in range(3)]


# -- status mapping ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("NOT_FOUND", -32005),
        ("CANCELLED", -32001),
        ("UNAUTHENTICATED", -32016),
        ("PERMISSION_DENIED", -32007),
        ("INVALID_ARGUMENT", -32602),
        ("UNIMPLEMENTED", -32601),
        ("INTERNAL", -32603),
    ],
)
async def test_status_mapping(srv: wirecall.Server, status: str, code: int) -> None:
    _, r = await rpc(srv, json.dumps(
        {"jsonrpc": "2.0", "method": "Errors.Fail", "params": [status], "id": 7}))
    assert r["error"]["code"] == code
    assert r["error"]["data"]["status"] == status
    assert r["error"]["message"] == f"failed with {status}"


async def test_divide_by_zero_is_invalid_params(srv: wirecall.Server) -> None:
    _, r = await rpc(srv, '{"jsonrpc":"2.0","method":"Calculator.Divide",'
                          '"params":[{"A":1,"B":0}],"id":1}')
    assert r["error"] == {"code": -32602, "message": "除数不能为零",
                          "data": {"status": "INVALID_ARGUMENT"}}


async def test_wrong_params_name_the_field(srv: wirecall.Server) -> None:
    _, r = await rpc(srv, '{"jsonrpc":"2.0","method":"Calculator.Add",'
                          '"params":[{"A":"x","B":0}],"id":1}')
    assert r["error"]["code"] == -32602
    assert "A" in r["error"]["message"]
    _, r = await rpc(srv, '{"jsonrpc":"2.0","method":"subtract","params":[1],"id":1}')
    assert r["error"]["code"] == -32602 and "subtrahend" in r["error"]["message"]
    _, r = await rpc(srv, '{"jsonrpc":"2.0","method":"subtract","params":[1,2,3],"id":1}')
    assert r["error"]["code"] == -32602


async def test_handler_crash_is_internal_error(srv: wirecall.Server) -> None:
    _, r = await rpc(srv, '{"jsonrpc":"2.0","method":"Errors.Crash","id":1}')
    assert r["error"]["code"] == -32603
    # opaque by default (issue #10): a reference, the text stays in the server's log
    assert "boom" not in str(r["error"]) and "internal error (ref " in r["error"]["message"]


async def test_unencodable_result_is_internal_error(srv: wirecall.Server) -> None:
    _, r = await rpc(srv, '{"jsonrpc":"2.0","method":"Errors.Unencodable","id":1}')
    assert r["error"]["code"] == -32603
    _, r = await rpc(srv, '[{"jsonrpc":"2.0","method":"Errors.Unencodable","id":1},'
                          '{"jsonrpc":"2.0","method":"Errors.Bytes","id":2}]')
    got = {x["id"]: x for x in r}
    assert got[1]["error"]["code"] == -32603 and got[2]["result"] == [1]


# -- malformed input and wrong member types ---------------------------------------------


@pytest.mark.parametrize(
    "body",
    ["", "{", "nul", '{"jsonrpc": "2.0",}', "\xff\xfe", '[1] [2]', "[1, 2", '"a" {}'],
)
async def test_malformed_json(srv: wirecall.Server, body: str) -> None:
    st, r = await rpc(srv, body.encode("latin-1"))
    assert st == 200
    assert r["error"]["code"] == -32700 and r["id"] is None


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("jsonrpc", "1.0"),
        ("jsonrpc", 2.0),
        ("method", 5),
        ("method", None),
        ("method", ["a"]),
        ("params", "bar"),
        ("params", 3),
        ("params", None),
        ("params", True),
        ("id", {"a": 1}),
        ("id", [1]),
        ("id", True),
    ],
)
async def test_wrong_member_types(srv: wirecall.Server, member: str, value: Any) -> None:
    req: dict[str, Any] = {"jsonrpc": "2.0", "method": "subtract", "params": [2, 1], "id": 1}
    req[member] = value
    _, r = await rpc(srv, json.dumps(req))
    assert r["error"]["code"] == -32600, r
    assert r["jsonrpc"] == "2.0"
    assert r["id"] == (None if member == "id" else 1)
    assert member in r["error"]["message"] or member == "id"


async def test_missing_method_and_non_object(srv: wirecall.Server) -> None:
    _, r = await rpc(srv, '{"jsonrpc":"2.0","id":4}')
    assert r["error"]["code"] == -32600 and r["id"] == 4
    for body in ('"text"', "42", "null", "true"):
        _, r = await rpc(srv, body)
        assert r["error"]["code"] == -32600 and r["id"] is None


async def test_ids_string_number_null(srv: wirecall.Server) -> None:
    for id in ("abc", 12, -3, 1.5, None, "", 2**53):
        _, r = await rpc(srv, json.dumps(
            {"jsonrpc": "2.0", "method": "subtract", "params": [3, 1], "id": id}))
        assert r == {"jsonrpc": "2.0", "result": 2, "id": id}


async def test_deep_nesting_is_refused(srv: wirecall.Server) -> None:
    depth = 100_000
    body = '{"jsonrpc":"2.0","method":"subtract","params":' + "[" * depth + "]" * depth + ',"id":1}'
    st, r = await rpc(srv, body)
    assert st == 200 and r["error"]["code"] == -32700
    assert "deep" in r["error"]["message"]
    # ... and the server still answers
    _, r = await rpc(srv, '{"jsonrpc":"2.0","method":"subtract","params":[2,1],"id":1}')
    assert r["result"] == 1


# -- Go's JSON-RPC 1.0 on the same endpoint ---------------------------------------------


async def test_go_style_request(srv: wirecall.Server) -> None:
    go_req = '{"method":"Calculator.Add","params":[{"A":10,"B":5}],"id":1}'
    st, _h, data = await post(port_of(srv), go_req)
    assert st == 200
    assert data.endswith(b"\n")
    assert json.loads(data) == {"id": 1, "result": 15, "error": None}


async def test_go_style_stream_of_requests_in_one_body(srv: wirecall.Server) -> None:
    """Go's handler runs jsonrpc.ServeConn over the body: every request in it is answered."""
    body = ('{"method":"Calculator.Add","params":[{"A":1,"B":2}],"id":1}\n'
            '{"method":"Calculator.Add","params":[{"a":3,"b":4}],"id":2}')
    st, _h, data = await post(port_of(srv), body)
    assert st == 200
    replies = sorted((json.loads(line) for line in data.splitlines()), key=lambda r: r["id"])
    # Go's encoding/json matches field names case-insensitively
    assert replies == [{"id": 1, "result": 3, "error": None},
                       {"id": 2, "result": 7, "error": None}]


async def test_go_style_errors(srv: wirecall.Server) -> None:
    _, r = await rpc(srv, '{"method":"Calculator.Divide","params":[{"A":1,"B":0}],"id":2}')
    assert r == {"id": 2, "result": None, "error": "除数不能为零"}
    _, r = await rpc(srv, '{"method":"Calculator.Nope","params":[{}],"id":3}')
    assert r == {"id": 3, "result": None, "error": "rpc: can't find method Calculator.Nope"}
    _, r = await rpc(srv, '{"method":"Nope.Add","params":[{}],"id":3}')
    assert r == {"id": 3, "result": None, "error": "rpc: can't find service Nope.Add"}
    _, r = await rpc(srv, '{"method":"Calculator.Add","id":"x"}')
    assert r == {"id": "x", "result": None, "error": "jsonrpc: request body missing params"}
    _, r = await rpc(srv, '{"method":"Calculator.Add","params":[{"A":1,"B":2}]}')
    assert r == {"id": None, "result": 3, "error": None}  # Go answers even without an id


# -- HTTP: content types, methods, paths ------------------------------------------------


@pytest.mark.parametrize(
    "ctype", ["text/plain", "application/x-www-form-urlencoded", "application/xml",
              "application/json; charset=latin-1"],
)
async def test_wrong_content_type_is_415(srv: wirecall.Server, ctype: str) -> None:
    st, _h, body = await post(port_of(srv), '{"jsonrpc":"2.0","method":"get_data","id":1}',
                             content_type=ctype)
    assert st == 415
    assert b"application/json" in body or b"UTF-8" in body


@pytest.mark.parametrize(
    "ctype", [None, "application/json", "application/json; charset=utf-8",
              "Application/JSON", "application/json-rpc", "application/jsonrequest"],
)
async def test_accepted_content_types(srv: wirecall.Server, ctype: str | None) -> None:
    st, h, body = await post(port_of(srv), '{"jsonrpc":"2.0","method":"get_data","id":1}',
                             content_type=ctype)
    assert st == 200 and h["content-type"] == "application/json"
    assert json.loads(body)["result"] == ["hello", 5]


async def raw(port: int, data: bytes, timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        return await asyncio.wait_for(read_response(reader), timeout)
    finally:
        writer.close()


async def test_wrong_method_is_405(srv: wirecall.Server) -> None:
    st, h, _ = await raw(port_of(srv), b"GET /rpc HTTP/1.1\r\nHost: x\r\n\r\n")
    assert st == 405 and h["allow"] == "POST"
    st, h, _ = await raw(port_of(srv), b"PUT /rpc HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert st == 405
    st, h, _ = await raw(port_of(srv), b"POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert st == 405 and "GET" in h["allow"]


async def test_unknown_path_is_404(srv: wirecall.Server) -> None:
    st, _, body = await raw(port_of(srv), b"POST /nope HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
    assert st == 404 and b"/nope" in body


async def test_garbage_is_400_and_server_keeps_serving(srv: wirecall.Server) -> None:
    st, h, _ = await raw(port_of(srv), b"\x00\x01\x02 not http\r\n\r\n")
    assert st == 400 and h["connection"] == "close"
    _, r = await rpc(srv, '{"jsonrpc":"2.0","method":"get_data","id":1}')
    assert r["result"] == ["hello", 5]


async def test_pipelined_requests_answer_in_order(srv: wirecall.Server) -> None:
    reqs = b""
    # the first one is slow: its answer must still come first
    bodies = [b'{"jsonrpc":"2.0","method":"Errors.Sleep","params":[0.2],"id":0}'] + [
        b'{"jsonrpc":"2.0","method":"subtract","params":[%d,0],"id":%d}' % (i, i)
        for i in range(1, 6)
    ]
    for b in bodies:
        reqs += b"POST /rpc HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(b), b)
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(srv))
    writer.write(reqs)
    got = []
    for _ in bodies:
        _st, _h, data = await asyncio.wait_for(read_response(reader), 5)
        got.append(json.loads(data)["id"])
    writer.close()
    assert got == [0, 1, 2, 3, 4, 5]


async def test_metadata_and_timeout_headers_reach_the_context(srv: wirecall.Server) -> None:
    _, r = await rpc(srv, '{"jsonrpc":"2.0","method":"Errors.Meta","id":1}',
                     extra_headers={"Wirecall-Meta-Tenant": "acme", "Wirecall-Timeout": "5"})
    res = r["result"]
    assert res["metadata"] == {"tenant": "acme"}
    assert 3 < res["remaining"] <= 5
    assert res["transport"] == "http" and res["peer"].startswith("127.0.0.1:")
    _, r = await rpc(srv, '{"jsonrpc":"2.0","method":"Errors.Sleep","params":[2],"id":1}',
                     extra_headers={"Wirecall-Timeout": "0.1"})
    assert r["error"]["data"]["status"] == "DEADLINE_EXCEEDED"


# -- limits and slow clients ------------------------------------------------------------


@pytest.fixture
async def small() -> AsyncIterator[wirecall.Server]:
    server = spec_server()
    server.register(Errors())
    await server.start("http://127.0.0.1:0")
    # a second listener with small limits and short timeouts
    server.listeners.clear()
    from wirecall.transport import http

    lst = await http.serve(server, parse_url("http://127.0.0.1:0"), max_body=1000,
                           header_timeout=0.5, body_timeout=0.5, keepalive_timeout=0.5,
                           max_header_size=2048)
    server.listeners.append(lst)
    yield server
    await server.close(drain_timeout=1)


async def test_huge_content_length_refused_before_reading(small: wirecall.Server) -> None:
    port = port_of(small)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.monotonic()
    writer.write(b"POST /rpc HTTP/1.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100000000\r\n\r\n" + b"[" * 100)
    st, h, body = await asyncio.wait_for(read_response(reader), 5)
    assert st == 413 and h["connection"] == "close"
    assert b"100000000" in body
    assert time.monotonic() - t0 < 2  # answered at once, not after 100 MB
    writer.close()


async def test_chunked_body_over_limit_is_413(small: wirecall.Server) -> None:
    port = port_of(small)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /rpc HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(5):
        writer.write(b"1f4\r\n" + b" " * 500 + b"\r\n")
    st, _h, body = await asyncio.wait_for(read_response(reader), 5)
    assert st == 413 and b"1000" in body
    writer.close()


async def test_chunked_body_under_limit_is_served(small: wirecall.Server) -> None:
    body = b'{"jsonrpc":"2.0","method":"get_data","id":1}'
    half = len(body) // 2
    a, b = body[:half], body[half:]
    chunks = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(a), a, len(b), b)
    st, _, data = await raw(port_of(small), b"POST /rpc HTTP/1.1\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
    assert st == 200 and json.loads(data)["result"] == ["hello", 5]


async def test_huge_headers_are_431(small: wirecall.Server) -> None:
    st, _, _ = await raw(port_of(small), b"POST /rpc HTTP/1.1\r\nX-Big: "
                         + b"a" * 5000 + b"\r\n\r\n")
    assert st == 431


async def test_slow_client_cannot_hold_the_connection(small: wirecall.Server) -> None:
    """One byte every 0.2s: the header timeout (0.5s) ends it; others are served meanwhile."""
    port = port_of(small)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = b"POST /rpc HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"
    t0 = time.monotonic()

    async def dribble() -> None:
        for b in request:
            if writer.is_closing():
                return
            writer.write(bytes([b]))
            await asyncio.sleep(0.2)

    task = asyncio.create_task(dribble())
    # meanwhile a normal client is served at once
    _, r = await rpc(small, '{"jsonrpc":"2.0","method":"get_data","id":1}')
    assert r["result"] == ["hello", 5]
    st, h, body = await asyncio.wait_for(read_response(reader), 5)
    elapsed = time.monotonic() - t0
    assert st == 408 and b"headers" in body and h["connection"] == "close"
    assert elapsed < 3
    assert await asyncio.wait_for(reader.read(), 3) == b""  # closed by the server
    task.cancel()
    writer.close()

    # pipelined: a slow call (longer than the header timeout), then half a second request
    # and silence. The half request's clock starts when the first answer is out.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    b = b'{"jsonrpc":"2.0","method":"Errors.Sleep","params":[1.0],"id":1}'
    writer.write(b"POST /rpc HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(b), b))
    await asyncio.sleep(0.05)
    writer.write(b"POST /rpc HTTP/1.1\r\nCont")
    st, _, body = await asyncio.wait_for(read_response(reader), 5)
    assert st == 200 and loads(body)["result"] == "done"
    t1 = time.monotonic()
    st, h, body = await asyncio.wait_for(read_response(reader), 5)
    assert st == 408 and b"headers" in body and h["connection"] == "close"
    assert time.monotonic() - t1 < 3
    assert await asyncio.wait_for(reader.read(), 3) == b""
    writer.close()

    # the same with half a body
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /rpc HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(b), b))
    await asyncio.sleep(0.05)
    writer.write(b"POST /rpc HTTP/1.1\r\nContent-Length: 50\r\n\r\n{")
    st, _, _ = await asyncio.wait_for(read_response(reader), 5)
    assert st == 200
    st, _, body = await asyncio.wait_for(read_response(reader), 5)
    assert st == 408 and b"body" in body
    assert await asyncio.wait_for(reader.read(), 3) == b""
    writer.close()


async def test_slow_body_is_408(small: wirecall.Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(small))
    writer.write(b"POST /rpc HTTP/1.1\r\nContent-Length: 50\r\n\r\n{")
    st, _, body = await asyncio.wait_for(read_response(reader), 5)
    assert st == 408 and b"body" in body
    writer.close()


async def test_idle_keepalive_connection_is_closed(small: wirecall.Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(small))
    b = b'{"jsonrpc":"2.0","method":"get_data","id":1}'
    writer.write(b"POST /rpc HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(b), b))
    st, _, _ = await asyncio.wait_for(read_response(reader), 5)
    assert st == 200
    t0 = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert 0.3 < time.monotonic() - t0 < 3
    writer.close()


# -- liveness and readiness -------------------------------------------------------------


async def test_health_and_readiness_during_graceful_shutdown() -> None:
    server = spec_server(drain_timeout=5)
    server.register(Errors())
    [url] = await server.start("http://127.0.0.1:0")
    port = parse_url(url).port
    st, _, body = await raw(port, b"GET /healthz HTTP/1.1\r\n\r\n")
    assert (st, body) == (200, b"ok\n")
    st, _, _ = await raw(port, b"GET /readyz HTTP/1.1\r\n\r\n")
    assert st == 200
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"HEAD /readyz HTTP/1.1\r\nConnection: close\r\n\r\n")
    head = await asyncio.wait_for(reader.read(), 5)  # the server closes after the headers
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
    writer.close()

    # an idle kept-alive connection (as a load balancer keeps) and a slow call in flight
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    slow = asyncio.create_task(
        post(port, '{"jsonrpc":"2.0","method":"Errors.Sleep","params":[0.6],"id":1}'))
    await asyncio.sleep(0.1)
    closing = asyncio.create_task(server.close())
    # the idle connection is closed at once (GOAWAY for HTTP/1.1) ...
    assert await asyncio.wait_for(reader.read(), 2) == b""
    # ... the call in flight is drained, not dropped, and told the connection ends
    st, h, data = await slow
    assert st == 200 and json.loads(data)["result"] == "done"
    assert h["connection"] == "close"
    await asyncio.wait_for(closing, 5)
    writer.close()


async def test_drain_delay_keeps_serving_while_not_ready() -> None:
    server = spec_server()
    [url] = await server.start("http://127.0.0.1:0?drain_delay=0.5")
    port = parse_url(url).port
    closing = asyncio.create_task(server.close())
    await asyncio.sleep(0.1)
    st, _, _ = await raw(port, b"GET /readyz HTTP/1.1\r\n\r\n")
    assert st == 503
    st, _, _ = await raw(port, b"GET /healthz HTTP/1.1\r\n\r\n")
    assert st == 200
    _, r = await rpc_port(port, '{"jsonrpc":"2.0","method":"get_data","id":1}')
    assert r["result"] == ["hello", 5]
    await asyncio.wait_for(closing, 5)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def rpc_port(port: int, body: str) -> tuple[int, Any]:
    st, _h, data = await post(port, body)
    return st, loads(data)


async def test_calls_after_shutdown_started_get_503() -> None:
    server = spec_server(drain_timeout=5)
    server.register(Errors())
    [url] = await server.start("http://127.0.0.1:0")
    port = parse_url(url).port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    slow = b'{"jsonrpc":"2.0","method":"Errors.Sleep","params":[0.5],"id":1}'
    writer.write(b"POST /rpc HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(slow), slow))
    await asyncio.sleep(0.1)
    closing = asyncio.create_task(server.close())
    await asyncio.sleep(0.1)
    # a request arriving on a busy connection after shutdown started is refused with 503
    b = b'{"jsonrpc":"2.0","method":"get_data","id":2}'
    writer.write(b"POST /rpc HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(b), b))
    st, h, data = await asyncio.wait_for(read_response(reader), 5)
    assert st == 200 and json.loads(data)["result"] == "done"
    st, h, data = await asyncio.wait_for(read_response(reader), 5)
    assert st == 503 and h["connection"] == "close"
    assert json.loads(data)["error"]["data"]["status"] == "UNAVAILABLE"
    assert json.loads(data)["error"]["code"] == -32014
    await asyncio.wait_for(closing, 5)
    writer.close()


def test_args_struct_is_the_tutorials() -> None:
    assert Args(A=1, B=2).A == 1


async def test_half_closed_client_still_gets_its_answer(srv: wirecall.Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(srv))
    b = b'{"jsonrpc":"2.0","method":"Errors.Sleep","params":[0.1],"id":1}'
    writer.write(b"POST /rpc HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(b), b))
    writer.write_eof()  # the client is done sending (shutdown(SHUT_WR))
    st, _h, data = await asyncio.wait_for(read_response(reader), 5)
    assert st == 200 and json.loads(data)["result"] == "done"
    assert await asyncio.wait_for(reader.read(), 2) == b""  # then the server closes
    writer.close()


# -- Expect: 100-continue, absolute-form targets -----------------------------------------

_CALL = b'{"jsonrpc":"2.0","method":"subtract","params":[42,23],"id":1}'


async def test_expect_100_continue(srv: wirecall.Server) -> None:
    """A client that waits for ``100 Continue`` before sending its body gets it at once."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(srv))
    writer.write(b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(_CALL))
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(_CALL)
    st, _, body = await asyncio.wait_for(read_response(reader), 5)
    assert st == 200 and loads(body)["result"] == 19
    # pipelined behind a slow call: the 100 comes after the first answer, not before it
    slow = b'{"jsonrpc":"2.0","method":"Errors.Sleep","params":[0.3],"id":2}'
    writer.write(b"POST /rpc HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(slow), slow))
    writer.write(b"POST /rpc HTTP/1.1\r\nExpect: 100-continue\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(_CALL))
    st, _, body = await asyncio.wait_for(read_response(reader), 5)
    assert st == 200 and loads(body)["result"] == "done"
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(_CALL)
    st, _, body = await asyncio.wait_for(read_response(reader), 5)
    assert st == 200 and loads(body)["result"] == 19
    writer.close()


async def test_expect_100_continue_refused_or_http10(small: wirecall.Server) -> None:
    # over the body limit: the final 413 instead of 100
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(small))
    writer.write(b"POST /rpc HTTP/1.1\r\nExpect: 100-continue\r\n"
                 b"Content-Length: 5000\r\n\r\n")
    st, h, _ = await asyncio.wait_for(read_response(reader), 5)
    assert st == 413 and h["connection"] == "close"
    writer.close()
    # HTTP/1.0 clients never get a 1xx (RFC 9110 §15.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(small))
    writer.write(b"POST /rpc HTTP/1.0\r\nExpect: 100-continue\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(_CALL))
    await asyncio.sleep(0.1)
    writer.write(_CALL)
    st, _, body = await asyncio.wait_for(read_response(reader), 5)
    assert st == 200 and loads(body)["result"] == 19
    writer.close()


@pytest.mark.parametrize("target", [b"http://x/rpc", b"HTTP://example.com:8080/rpc",
                                    b"http://x/rpc?a=1", b"https://x/rpc"])
async def test_absolute_form_request_target(srv: wirecall.Server, target: bytes) -> None:
    """RFC 9112 §3.2.2: a server must accept absolute-form targets (what proxies send)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(srv))
    writer.write(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                 % (target, len(_CALL), _CALL))
    st, _, body = await asyncio.wait_for(read_response(reader), 5)
    assert st == 200 and loads(body)["result"] == 19
    writer.write(b"GET http://x/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    st, _, body = await asyncio.wait_for(read_response(reader), 5)
    assert st == 200 and body == b"ok\n"
    writer.write(b"GET http://x HTTP/1.1\r\nHost: x\r\n\r\n")  # no path: "/"
    st, _, body = await asyncio.wait_for(read_response(reader), 5)
    assert st == 404 and b"no such endpoint: /\n" in body
    writer.close()
