"""Every wire behaves the same (issue #10): a stream called as a unary call (and the other
way round) is one clear UNIMPLEMENTED naming the method's mode; an unexpected handler
exception is an opaque INTERNAL with a reference the server logs; administrative methods
(``Health.set``) are not on the network; unknown options are errors naming them."""

from __future__ import annotations

import asyncio
import logging
import re
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

import wirecall
from support.services import Calc
from wirecall import Internal, Status, Unimplemented

# wire -> (listen address, streams supported by the client)
WIRES = {
    "tcp": ("tcp://127.0.0.1:0", True),
    "unix": ("unix://{tmp}/s.sock", True),
    "http": ("http://127.0.0.1:0", False),
    "ws": ("ws://127.0.0.1:0", True),
    "grpc": ("grpc://127.0.0.1:0", True),
    "any": ("any://127.0.0.1:0", True),
}
# Go's wires (one argument per call, no streams), where the case applies
GO_WIRES = {"gob": ("gob://127.0.0.1:0", False), "jsonrpc": ("jsonrpc://127.0.0.1:0", False)}


class Secret:
    async def Leak(self) -> None:
        raise ValueError("secret internal detail")


@pytest.fixture
async def on_wire(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    servers: list[wirecall.Server] = []
    clients: list[wirecall.Client] = []
    tmp = tempfile.TemporaryDirectory()

    async def start(wire: str, *services: Any, **kw: Any) -> wirecall.Client:
        server = wirecall.Server(**kw)
        for s in services:
            server.register(s)
        servers.append(server)
        [url] = await server.start({**WIRES, **GO_WIRES}[wire][0].format(tmp=tmp.name))
        client = await wirecall.connect(url)
        clients.append(client)
        start.server = server  # type: ignore[attr-defined]
        return client

    yield start
    for c in clients:
        await c.close()
    for s in servers:
        await s.close(drain_timeout=1)
    tmp.cleanup()


@pytest.mark.parametrize("wire", [*WIRES, "gob", "jsonrpc"])
async def test_a_stream_called_as_unary_names_its_mode(on_wire: Any, wire: str) -> None:
    c = await on_wire(wire, Calc())
    with pytest.raises(Unimplemented) as ei:
        await c.call("Calc.Count", 3, timeout=5)
    assert "Calc.Count is a" in ei.value.message and "client.stream()" in ei.value.message
    if wire != "grpc":  # gRPC carries no mode on the wire: the client infers "a stream"
        assert "server stream" in ei.value.message
    # the connection still serves
    if wire not in GO_WIRES:  # (Go's wires pass one argument)
        assert await c.call("Calc.Add", 2, 3, timeout=5) == 5


@pytest.mark.parametrize("wire", [w for w, (_, streams) in WIRES.items() if streams])
async def test_a_client_stream_called_as_unary_names_its_mode(on_wire: Any, wire: str) -> None:
    c = await on_wire(wire, Calc())
    with pytest.raises(wirecall.RpcError) as ei:
        await c.call("Calc.Double", timeout=5)
    # gRPC has no call mode on the wire: a wirecall client marks its unary calls
    # (wirecall-call: unary) and the server answers a streaming method with its mode
    assert ei.value.status == Status.UNIMPLEMENTED
    assert "Calc.Double is a bidi stream: call it with client.stream()" in ei.value.message


@pytest.mark.parametrize("wire", ["tcp", "unix", "ws", "any", "grpc"])
async def test_a_unary_method_opened_as_a_stream_names_its_mode(on_wire: Any, wire: str) -> None:
    c = await on_wire(wire, Calc())
    with pytest.raises(Unimplemented, match=r"method Calc\.Add is unary: call it with "
                                            r"client\.call\(\)"):
        async for _ in c.stream("Calc.Add", [1, 2], timeout=5):
            pass
    assert await c.call("Calc.Add", 2, 3, timeout=5) == 5


@pytest.mark.parametrize("wire", list(WIRES))
async def test_unexpected_exceptions_are_opaque_with_a_logged_reference(
    on_wire: Any, wire: str, caplog: pytest.LogCaptureFixture
) -> None:
    c = await on_wire(wire, Secret())
    with caplog.at_level(logging.ERROR, logger="wirecall.server"), \
            pytest.raises(Internal) as ei:
        await c.call("Secret.Leak", timeout=5)
    assert "secret" not in ei.value.message and "ValueError" not in ei.value.message
    m = re.fullmatch(r"internal error \(ref ([0-9a-f]{12})\)", ei.value.message)
    assert m, ei.value.message
    logged = [r for r in caplog.records if f"ref={m.group(1)}" in r.getMessage()]
    assert logged and "secret internal detail" in logged[0].getMessage()


@pytest.mark.parametrize("wire", ["tcp", "http", "ws"])
async def test_debug_keeps_the_detail(on_wire: Any, wire: str) -> None:
    c = await on_wire(wire, Secret(), debug=True)
    with pytest.raises(Internal, match="ValueError: secret internal detail"):
        await c.call("Secret.Leak", timeout=5)


@pytest.mark.parametrize("wire", list(WIRES))
async def test_health_cannot_be_changed_from_the_network(on_wire: Any, wire: str) -> None:
    from wirecall.observability.health import NOT_SERVING, enable_health

    c = await on_wire(wire, Calc())
    health = enable_health(on_wire.server)
    with pytest.raises(Unimplemented):
        await c.call("grpc.health.v1.Health.set", "", int(NOT_SERVING), timeout=5)
    with pytest.raises(Unimplemented):
        await c.call("Health.set", "", int(NOT_SERVING), timeout=5)
    desc = await c.call("rpc.describe", timeout=5)
    names = {m["name"] for methods in desc.values() for m in methods}
    assert "Health.Check" in names and not any(n.endswith(".set") for n in names)
    health.set("", NOT_SERVING)  # the local API still works
    assert health._get("") == NOT_SERVING



async def test_grpc_names_an_unknown_method_of_a_known_service(on_wire: Any) -> None:
    from wirecall.tutorial.greeter import Greeter

    c = await on_wire("grpc", Greeter())
    with pytest.raises(Unimplemented) as ei:
        await c.call("helloworld.Greeter.Nope", timeout=5)
    assert "unknown method 'Nope'" in ei.value.message and "service" in ei.value.message
    assert "unknown service" not in ei.value.message
    with pytest.raises(Unimplemented, match="unknown service"):
        await c.call("helloworld.Nobody.Nope", timeout=5)


@pytest.mark.parametrize("wire", list(WIRES))
async def test_every_wire_names_an_unknown_method_or_service(on_wire: Any, wire: str) -> None:
    c = await on_wire(wire, Calc())
    with pytest.raises(Unimplemented, match="unknown method"):
        await c.call("Calc.Nope", timeout=5)
    with pytest.raises(Unimplemented, match="unknown service"):
        await c.call("Nobody.Nope", timeout=5)


# -- options: every unknown or inapplicable one is an error naming it ----------------------


@pytest.mark.parametrize("wire", list(WIRES))
async def test_unknown_server_options_are_errors_naming_them(wire: str, tmp_path: Path) -> None:
    server = wirecall.Server()
    url = WIRES[wire][0].format(tmp=tmp_path)
    with pytest.raises(ValueError, match=r"does not accept option 'bogus_option'; accepted: "):
        await server.start(url, bogus_option=1)
    assert server.listeners == []
    await server.close()


# (any:// takes a certificate since issue #15: it then also speaks TLS, tests/security)
@pytest.mark.parametrize("wire", ["tcp", "http", "ws", "grpc"])
async def test_tls_options_on_a_plaintext_wire_are_refused(wire: str, tmp_path: Path) -> None:
    server = wirecall.Server()
    with pytest.raises(ValueError, match=r"'certfile', 'keyfile' \(TLS is not available"):
        await server.start(WIRES[wire][0], certfile="c.pem", keyfile="k.pem")
    assert server.listeners == []  # nothing served in plaintext
    await server.close()


@pytest.mark.parametrize("wire", list(WIRES))
async def test_unknown_client_options_are_errors_naming_them(on_wire: Any, wire: str) -> None:
    c = await on_wire(wire, Calc())
    url = on_wire.server.urls[0]
    with pytest.raises(ValueError, match=r"does not accept option 'timout'; accepted: .*timeout"):
        await wirecall.connect(url, timout=3)
    assert await c.call("Calc.Add", 1, 1, timeout=5) == 2


@pytest.mark.parametrize("wire", ["tcp", "http", "ws", "grpc", "any", "gob", "jsonrpc"])
async def test_reuse_port_on_every_tcp_wire(wire: str) -> None:
    first, second = wirecall.Server(), wirecall.Server()
    for s in (first, second):
        s.register(Calc())
    addr = "ws://127.0.0.1:0/ws" if wire == "ws" else f"{wire}://127.0.0.1:0"
    [url] = await first.start(addr, reuse_port=True)
    port = url.split("://", 1)[1].split("/")[0].rsplit(":", 1)[1]
    again = addr.replace(":0", f":{port}")
    [url2] = await second.start(again, reuse_port=True)  # the same port, a second listener
    assert f":{port}" in url2
    third = wirecall.Server()
    with pytest.raises(OSError):  # without reuse_port the port is taken
        await third.start(again)
    for s in (first, second, third):
        await s.close()


# -- more calls than the connection's limit: they wait for a slot, on every wire -------------


class Slow:
    async def Nap(self, i: int) -> int:
        await asyncio.sleep(0.05)
        return i


@pytest.mark.parametrize("wire", list(WIRES))
async def test_2000_concurrent_calls_on_one_connection_all_succeed(on_wire: Any,
                                                                   wire: str) -> None:
    c = await on_wire(wire, Slow())
    got = await asyncio.gather(*(c.call("Slow.Nap", i, timeout=30) for i in range(2000)))
    assert got == list(range(2000))


@pytest.mark.parametrize("wire", ["tcp", "ws", "grpc", "http"])
async def test_a_call_waiting_for_a_slot_keeps_its_deadline(on_wire: Any, wire: str) -> None:
    await on_wire(wire, Slow())
    c = await wirecall.connect(on_wire.server.urls[0], max_in_flight=4)
    try:
        busy = [asyncio.ensure_future(c.call("Slow.Nap", i, timeout=5)) for i in range(4)]
        await asyncio.sleep(0)
        with pytest.raises(wirecall.DeadlineExceeded, match="calls were in flight"):
            await c.call("Slow.Nap", 99, timeout=0.01)
        assert await c.call("Slow.Nap", 5, timeout=5) == 5  # waits for a slot, then runs
        assert await asyncio.gather(*busy) == [0, 1, 2, 3]
    finally:
        await c.close()


# -- deadlines travel on every wire ---------------------------------------------------------


class Deadline:
    def __init__(self) -> None:
        self.seen: list[float | None] = []
        self.finished = 0

    async def Remaining(self, ctx: wirecall.Context) -> float | None:
        return ctx.time_remaining()

    async def Long(self, ctx: wirecall.Context) -> None:
        self.seen.append(ctx.time_remaining())
        await asyncio.sleep(1.5)
        self.finished += 1


@pytest.mark.parametrize("wire", list(WIRES))
async def test_the_deadline_reaches_the_handler(on_wire: Any, wire: str) -> None:
    svc = Deadline()
    c = await on_wire(wire, svc)
    left = await c.call("Deadline.Remaining", timeout=2)
    assert left is not None and 1.0 < left <= 2
    with pytest.raises(wirecall.DeadlineExceeded):
        await c.call("Deadline.Long", timeout=0.3)
    await asyncio.sleep(1.6)
    assert svc.seen and svc.seen[0] is not None and svc.seen[0] <= 0.3
    assert svc.finished == 0  # the handler was stopped at the deadline, not run to its end
    assert await c.call("Deadline.Remaining") is None  # no deadline: none on the server


@pytest.mark.parametrize("wire", ["tcp", "ws", "grpc", "http"])
async def test_the_peer_is_host_and_port(on_wire: Any, wire: str) -> None:
    class Peer:
        async def Who(self, ctx: wirecall.Context) -> str:
            return ctx.peer

    c = await on_wire(wire, Peer())
    peer = await c.call("Peer.Who", timeout=5)
    host, _, port = peer.rpartition(":")
    assert host == "127.0.0.1" and port.isdigit() and int(port) > 0


# -- the tutorial's JSON-RPC over HTTP: Go's replies on /jsonrpc, 2.0 on /rpc ----------------


class Inventory:
    async def Empty(self, args: dict[str, int]) -> Stock:
        return Stock(name="none", items=[], tags={})


class Stock(msgspec.Struct):
    name: str
    items: list[int]
    tags: dict[str, str]


@pytest.mark.parametrize("listen", ["http://127.0.0.1:0", "any://127.0.0.1:0"])
async def test_the_tutorials_python_client_gets_gos_replies_on_jsonrpc(listen: str) -> None:
    import aiohttp

    from wirecall.tutorial.calculator import Calculator

    server = wirecall.Server()
    server.register(Calculator())
    [url] = await server.start(listen)
    base = "http://" + url.split("://", 1)[1]
    payload = {"method": "Calculator.Add", "params": [{"A": 10, "B": 5}], "id": 1,
               "jsonrpc": "2.0"}  # the tutorial's requests payload, verbatim
    try:
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{base}/jsonrpc", json=payload) as r:
                assert await r.json() == {"id": 1, "result": 15, "error": None}
            bad = dict(payload, params=[{"A": 1, "B": 0}], method="Calculator.Divide")
            async with s.post(f"{base}/jsonrpc", json=bad) as r:
                assert await r.json() == {"id": 1, "result": None, "error": "除数不能为零"}
            async with s.post(f"{base}/rpc", json=payload) as r:  # JSON-RPC 2.0's own path
                assert await r.json() == {"jsonrpc": "2.0", "result": 15, "id": 1}
            batch = [dict(payload, id=1), dict(payload, id=2)]
            async with s.post(f"{base}/rpc", json=batch) as r:
                assert sorted(x["id"] for x in await r.json()) == [1, 2]
    finally:
        await server.close()


async def test_the_http_client_decodes_gos_null_for_an_empty_slice_or_map() -> None:
    server = wirecall.Server()
    server.register(Inventory())
    [url] = await server.start("http://127.0.0.1:0")
    try:
        # /jsonrpc answers the Go way, which writes an empty slice or map as null
        async with await wirecall.connect(url + "/jsonrpc") as c:
            raw = await c.call("Inventory.Empty", {"n": 1}, timeout=5)
            assert raw == {"name": "none", "items": None, "tags": None}
            got = await c.call("Inventory.Empty", {"n": 1}, timeout=5, result_type=Stock)
            assert got == Stock(name="none", items=[], tags={})
    finally:
        await server.close()


@pytest.mark.parametrize("wire", ["tcp", "unix"])
async def test_a_protobuf_message_on_msgpack_names_the_fix(on_wire: Any, wire: str) -> None:
    from wirecall.tutorial.greeter import Greeter, helloworld_pb2

    c = await on_wire(wire, Greeter())
    with pytest.raises(wirecall.InvalidArgument, match=r"HelloRequest with msgpack: it is a "
                       r"protobuf message; connect with codec='proto'"):
        await c.call("Greeter.SayHello", helloworld_pb2.HelloRequest(name="x"), timeout=5)
    async with await wirecall.connect(on_wire.server.urls[0], codec="proto") as proto:
        reply = await proto.call("Greeter.SayHello", helloworld_pb2.HelloRequest(name="x"),
                                 result_type=helloworld_pb2.HelloReply, timeout=5)
        assert reply.message == "Hello, x"


@pytest.mark.parametrize("wire", ["tcp", "ws", "grpc"])
async def test_the_blocking_client_refuses_unknown_options_too(on_wire: Any, wire: str) -> None:
    import wirecall.sync

    await on_wire(wire, Calc())
    url = on_wire.server.urls[0]

    def dial() -> None:
        wirecall.sync.connect(url, timout=3)

    with pytest.raises(ValueError, match=r"'timout'; accepted: .*timeout"):
        await asyncio.to_thread(dial)
