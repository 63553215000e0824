"""Go net/rpc (gob) both ways: the tutorial's Go client against a wirecall server, and a
wirecall client against the tutorial's Go server, over TCP (rpc.Dial / rpc.ServeConn) and
HTTP (rpc.DialHTTP / rpc.HandleHTTP)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest

import wirecall
from interop import goharness
from interop.gotypes import Args, Inner, Rich
from interop.pyservices import Calculator, Echo, rich_full_as_go_sees_it
from wirecall import RpcError, Status, Unimplemented
from wirecall.transport.base import parse_url
from wirecall.transport.gob import connect, connect_http


@pytest.fixture
async def gob_server() -> AsyncIterator[str]:
    srv = wirecall.Server()
    srv.register(Calculator())
    srv.register(Echo())
    (url,) = await srv.start("gob://127.0.0.1:0")
    try:
        yield url.split("//", 1)[1]
    finally:
        await srv.close(drain_timeout=1)


# -- Go client -> wirecall server ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["tcp", "http"])
async def test_go_client_basic(gob_server: str, mode: str) -> None:
    r = await goharness.run_go_client(gob_server, mode, "basic")
    assert r["add"] == {"case": "add", "result": 15, "error": None}
    assert r["divide"] == {"case": "divide", "result": 2, "error": None}  # via client.Go + Done
    assert r["divide0"]["error"] == "除数不能为零"  # exactly the tutorial's error string
    assert r["unknown_method"]["error"] == "rpc: can't find method Calculator.Nope"
    assert r["unknown_service"]["error"] == "rpc: can't find service Nope.Add"
    assert r["add_after_errors"] == {"case": "add_after_errors", "result": -3, "error": None}


@pytest.mark.parametrize("mode", ["tcp", "http"])
async def test_go_client_pool_and_concurrency(gob_server: str, mode: str) -> None:
    r = await goharness.run_go_client(gob_server, mode, "pool")
    assert r["pool"]["bad"] == 0 and r["pool"]["calls"] == 200
    r = await goharness.run_go_client(gob_server, mode, "concurrent")
    assert r["concurrent"]["bad"] == 0 and r["concurrent"]["calls"] == 600


@pytest.mark.parametrize("mode", ["tcp", "http"])
async def test_go_client_rich_structs(gob_server: str, mode: str) -> None:
    r = await goharness.run_go_client(gob_server, mode, "rich")
    assert r["rich"]["error"] is None and r["rich"]["equal"] is True, r["rich"]
    assert r["rich_zero"]["error"] is None and r["rich_zero"]["equal"] is True, r["rich_zero"]


# -- wirecall client -> Go server ------------------------------------------------------------


@pytest.fixture(params=["tcp", "http"])
def go_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    with goharness.go_server("calcserver", "-mode", request.param) as srv:
        yield srv.addr, request.param


async def _dial(addr: str, mode: str) -> wirecall.transport.gob.GobClientConnection:
    url = parse_url(f"gob://{addr}")
    return await (connect_http(url) if mode == "http" else connect(url))


async def test_wirecall_client_calculator(go_server: tuple[str, str]) -> None:
    addr, mode = go_server
    conn = await _dial(addr, mode)
    try:
        assert await conn.call("Calculator.Add", [Args(10, 5)], 5, None, int) == 15
        assert await conn.call("Calculator.Divide", [Args(10, 4)], 5, None, float) == 2.5
        with pytest.raises(RpcError) as ei:
            await conn.call("Calculator.Divide", [Args(1, 0)], 5, None, float)
        assert ei.value.message == "除数不能为零" and ei.value.status == Status.UNKNOWN
        with pytest.raises(Unimplemented, match=r"can't find method Calculator\.Nope"):
            await conn.call("Calculator.Nope", [Args(1, 2)], 5, None, int)
        # a dict argument is sent as an anonymous struct: Go matches fields by name
        assert await conn.call("Calculator.Add", {"A": 2, "B": 3}, 5, None, int) == 5
        assert not conn.closed
    finally:
        await conn.aclose()


async def test_wirecall_client_many_in_flight_out_of_order(go_server: tuple[str, str]) -> None:
    addr, mode = go_server
    conn = await _dial(addr, mode)
    try:
        order: list[int] = []

        async def sleep(ms: int) -> int:
            r: int = await conn.call("Echo.Sleep", [ms], 5, None, int)
            order.append(r)
            return r

        slow = asyncio.ensure_future(sleep(400))
        await asyncio.sleep(0.05)
        assert await sleep(5) == 5
        assert await slow == 400
        assert order == [5, 400]  # the reply to the later call came back first
        results = await asyncio.gather(
            *(conn.call("Calculator.Add", [Args(i, i)], 10, None, int) for i in range(500))
        )
        assert results == [2 * i for i in range(500)]
    finally:
        await conn.aclose()


async def test_wirecall_client_rich_structs(go_server: tuple[str, str]) -> None:
    addr, mode = go_server
    conn = await _dial(addr, mode)
    try:
        full = rich_full_as_go_sees_it()
        # Go compares what it decoded with its own richFull(): every field, exactly
        assert await conn.call("Echo.Check", [full], 5, None, str) == "equal"
        assert await conn.call("Echo.Rich", [full], 5, None, Rich) == full
        zero = await conn.call("Echo.Rich", [Rich()], 5, None, Rich)
        assert zero == Rich() and zero.P is None
        untyped = await conn.call("Echo.Rich", [Rich(P=Inner(Name="n"))], 5, None, None)
        assert untyped["P"] == {"Name": "n", "Tags": []} and untyped["U"] == 0
    finally:
        await conn.aclose()


async def test_client_api_over_gob_url(go_server: tuple[str, str]) -> None:
    addr, mode = go_server
    url = f"gob://{addr}" + ("/_goRPC_" if mode == "http" else "")
    client = await wirecall.connect(url)
    try:
        assert await client.call("Calculator.Add", Args(10, 5), result_type=int) == 15
        call = client.go("Calculator.Divide", Args(10, 5), result_type=float)
        assert await call == 2.0
    finally:
        await client.close()


# -- robustness ---------------------------------------------------------------------------------


def _raw(addr: str, payload: bytes, until: bytes | None = None) -> bytes:
    """Send ``payload``; read until the server closes (or ``until`` has arrived)."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(payload)
        data = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (until and until in data):
            b = s.recv(65536)
            if not b:
                break
            data += b
        return data


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x05\xff\x81\xff\xff\xff",  # a type definition that is not one
        b"\x03\x7f\x00\x00",  # a value of an undefined type id
        b"\xf9" + b"\xff" * 8,  # a 9-byte length prefix
        b"\xfc\x7f\xff\xff\xff" + b"x" * 100,  # a 2 GiB message: refused before buffering
    ],
)
async def test_malformed_gob_closes_only_that_connection(gob_server: str, garbage: bytes) -> None:
    loop = asyncio.get_running_loop()
    reply = await loop.run_in_executor(None, _raw, gob_server, garbage)
    assert reply == b""  # closed without an answer
    conn = await connect(parse_url(f"gob://{gob_server}"))
    try:
        assert await conn.call("Calculator.Add", [Args(1, 2)], 5, None, int) == 3
    finally:
        await conn.aclose()


async def test_http_connect_wrong_path_is_refused(gob_server: str) -> None:
    loop = asyncio.get_running_loop()
    reply = await loop.run_in_executor(None, _raw, gob_server, b"CONNECT /nope HTTP/1.0\n\n")
    assert reply.startswith(b"HTTP/1.0 404")
    reply = await loop.run_in_executor(
        None, _raw, gob_server, b"CONNECT /_goRPC_ HTTP/1.0\r\nHost: x\r\n\r\n", b"\n\n"
    )
    assert reply == b"HTTP/1.0 200 Connected to Go RPC\n\n"


async def test_wrong_argument_type_is_an_error_reply_not_a_crash(gob_server: str) -> None:
    conn = await connect(parse_url(f"gob://{gob_server}"))
    try:
        with pytest.raises(RpcError, match="type mismatch"):
            await conn.call("Calculator.Add", ["not args"], 5, None, int)
        assert await conn.call("Calculator.Add", [Args(1, 2)], 5, None, int) == 3
    finally:
        await conn.aclose()


@pytest.mark.parametrize(
    ("listen", "mode"),
    [("http", "http"), ("any", "tcp"), ("any", "http"), ("any", "jsonrpc")],
)
async def test_go_client_through_http_and_sniffing_listeners(listen: str, mode: str) -> None:
    """The HTTP listener hands CONNECT /_goRPC_ to the gob protocol; the one-port listener
    recognises gob, HTTP CONNECT and Go JSON-RPC."""
    srv = wirecall.Server()
    srv.register(Calculator())
    (url,) = await srv.start(f"{listen}://127.0.0.1:0")
    try:
        addr = url.split("//", 1)[1].split("/", 1)[0]
        r = await goharness.run_go_client(addr, mode, "basic")
        assert r["add"]["result"] == 15 and r["divide"]["result"] == 2
        assert r["divide0"]["error"] == "除数不能为零"
    finally:
        await srv.close(drain_timeout=1)
