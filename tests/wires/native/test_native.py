"""End to end over the native protocol: real sockets on 127.0.0.1 (and a unix socket)."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
import typing
from typing import Any

import msgspec
import pytest

import wirecall
from support.services import Box, Point, Probe, Relay
from wirecall import (
    Cancelled,
    ConnectError,
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    ResourceExhausted,
    RpcError,
    Status,
    Unavailable,
    Unimplemented,
)
from wirecall.interceptors import ClientCall, ServerCall
from wirecall.protocol import frames as fr
from wirecall.tutorial.calculator import DIVIDE_BY_ZERO, Args, Calculator, CalculatorAPI


async def test_call_go_and_stub_on_the_tutorial_calculator(serve: Any) -> None:
    url = await serve(Calculator())
    async with await wirecall.connect(url, timeout=2) as client:
        assert await client.call("Calculator.Add", Args(A=10, B=5)) == 15
        assert await client.call("Calculator.Add", {"A": 10, "B": 5}) == 15
        div = client.go("Calculator.Divide", Args(10, 5))
        seen: list[Any] = []
        div.add_done_callback(lambda c: seen.append(c.reply))
        assert await div == 2.0
        await asyncio.sleep(0)
        assert div.done() and div.error is None and seen == [2.0]
        with pytest.raises(InvalidArgument) as ei:
            await client.call("Calculator.Divide", Args(10, 0))
        assert ei.value.message == DIVIDE_BY_ZERO
        calc = client.stub(CalculatorAPI)
        assert await calc.Add(Args(2, 3)) == 5
        with pytest.raises(TypeError, match=r"Calculator\.Add"):
            calc.Add(1, 2, 3)


async def test_unix_socket(serve: Any, tmp_path: Any) -> None:
    url = await serve(Calculator(), url=f"unix://{tmp_path}/c.sock")
    assert url == f"unix://{tmp_path}/c.sock"
    async with await wirecall.connect(url) as client:
        assert await client.call("Calculator.Add", Args(1, 2)) == 3


async def test_errors_map_to_statuses(serve: Any) -> None:
    url = await serve(Probe())
    async with await wirecall.connect(url) as c:
        with pytest.raises(Unimplemented, match="unknown service 'Nope'"):
            await c.call("Nope.X")
        with pytest.raises(Unimplemented, match=r"unknown method 'Probe\.Nope'"):
            await c.call("Probe.Nope")
        with pytest.raises(InvalidArgument, match=r"'box'.*\$\.corners\[0\]\.x"):
            await c.call("Probe.Shape", {"name": "b", "corners": [{"x": "1", "y": 2}]},
                         {"scale": 1.0, "label": ""})
        with pytest.raises(RpcError) as ei:
            await c.call("Probe.Fail", "rpc")
        assert ei.value.status == Status.FAILED_PRECONDITION and ei.value.message == "not now"
        with pytest.raises(Internal) as ei2:
            await c.call("Probe.Fail", "value")
        assert ei2.value.message.startswith("internal error (ref ")  # opaque (issue #10)
        assert "boom" not in ei2.value.message and "boom" not in repr(ei2.value.details)
        # the connection still serves after all of that
        assert await c.call("Probe.Echo", [1, "two", {"3": 4.5}]) == [1, "two", {"3": 4.5}]


async def test_debug_server_sends_the_traceback(serve: Any) -> None:
    url = await serve(Probe(), debug=True)
    async with await wirecall.connect(url) as c:
        with pytest.raises(Internal) as ei:
            await c.call("Probe.Fail", "key")
        assert "Traceback" in ei.value.details and "KeyError" in ei.value.details


async def test_rich_types_named_params_and_bytes(serve: Any) -> None:
    url = await serve(Probe())
    async with await wirecall.connect(url) as c:
        out = await c.call("Probe.Shape", Box("b", [Point(1, 2), Point(3, 4)]),
                           {"scale": 2.5, "label": "l"})
        assert out == {"name": "b", "n": 2, "scale": 2.5, "sum": 10}
        assert await c.call("Probe.Named", a=1, c="z") == [1, 10, "z"]
        assert await c.call("Probe.Bytes", b"\x00\x01\xff") == b"\xff\x01\x00"
        typed = await c.call("Probe.Echo", {"x": 1, "y": 2}, result_type=Point)
        assert typed == Point(1, 2)
        with pytest.raises(InvalidArgument, match="cannot decode the reply"):
            await c.call("Probe.Echo", {"x": "no"}, result_type=Point)


async def test_json_codec_connection(serve: Any) -> None:
    url = await serve(Calculator())
    async with await wirecall.connect(url, codec="json") as c:
        assert await c.call("Calculator.Add", Args(4, 5)) == 9


async def test_thousand_calls_in_flight_on_one_connection_answered_out_of_order(
    serve: Any,
) -> None:
    url = await serve(Probe())
    async with await wirecall.connect(url) as c:
        order: list[int] = []

        async def one(i: int) -> int:
            r: int = await c.call("Probe.RandomDelay", i)
            order.append(r)
            return r

        results = await asyncio.gather(*(one(i) for i in range(1000)))
        assert results == list(range(1000))
        assert order != sorted(order)  # replies came back out of order, matched by id
        assert len(c.pool.connections) == 1


async def test_deadline_cancels_the_handler_and_reports_deadline_exceeded(serve: Any) -> None:
    probe = Probe()
    url = await serve(probe)
    async with await wirecall.connect(url) as c:
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await c.call("Probe.Sleep", 5, "deadline", timeout=0.2)
        assert time.monotonic() - t0 < 1.0
        for _ in range(50):
            if probe.cancelled:
                break
            await asyncio.sleep(0.02)
        assert probe.cancelled == ["deadline"]  # the handler saw it


async def test_server_enforces_the_deadline_itself(serve: Any) -> None:
    """A raw client sends a 0.1 s timeout and never gives up: the server answers 4."""
    probe = Probe()
    url = await serve(probe)
    host, port = url[6:].rsplit(":", 1)
    r, w = await asyncio.open_connection(host, int(port))
    conn = fr.FrameConnection(client=True)
    conn.initiate()
    conn.send_request(1, "Probe.Sleep", msgspec.msgpack.encode([5, "srv"]), timeout=0.1)
    w.write(conn.data_to_send())
    events: list[fr.Event] = []
    while not any(isinstance(e, fr.ErrorReceived) for e in events):
        events += conn.receive_data(await asyncio.wait_for(r.read(65536), 3))
    err = next(e for e in events if isinstance(e, fr.ErrorReceived))
    assert err.status == Status.DEADLINE_EXCEEDED
    assert probe.cancelled == ["srv"]
    w.close()


async def test_cancelling_the_caller_cancels_the_handler(serve: Any) -> None:
    probe = Probe()
    url = await serve(probe)
    async with await wirecall.connect(url) as c:
        task = asyncio.ensure_future(c.call("Probe.Sleep", 5, "cancel-me"))
        while probe.entered == 0:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(50):
            if probe.cancelled:
                break
            await asyncio.sleep(0.02)
        assert probe.cancelled == ["cancel-me"]
        g = c.go("Probe.Sleep", 5, "go-cancel")
        await asyncio.sleep(0.05)
        g.cancel()
        await asyncio.sleep(0.1)
        assert g.cancelled() and "go-cancel" in probe.cancelled


async def test_metadata_and_deadline_are_inherited_by_onward_calls(serve: Any) -> None:
    backend = await serve(Probe())
    front = await serve(Relay(backend))
    async with await wirecall.connect(front) as c:
        out = await c.call("Relay.Forward", timeout=5.0, metadata={"trace-id": "abc"})
        assert out["metadata"] == {"trace-id": "abc"}
        assert 3.0 < out["remaining"] <= 5.0  # the backend saw the front's remaining deadline
        assert out["method"] == "Probe.Meta"


async def test_interceptors_see_method_metadata_args_and_result(serve: Any) -> None:
    seen: list[tuple[str, Any]] = []

    async def server_icpt(call: ServerCall, proceed: Any) -> Any:
        seen.append(("server-in", (call.method, dict(call.metadata), call.args)))
        if call.metadata.get("deny"):
            raise RpcError(Status.PERMISSION_DENIED, "denied by interceptor")
        result = await proceed(call)
        seen.append(("server-out", result))
        return result * 10 if isinstance(result, int) else result

    async def client_icpt(call: ClientCall, proceed: Any) -> Any:
        call.metadata["who"] = "client-icpt"
        seen.append(("client-in", call.method))
        result = await proceed(call)
        seen.append(("client-out", result))
        return result

    url = await serve(Calculator(), interceptors=[server_icpt])
    async with await wirecall.connect(url, interceptors=[client_icpt]) as c:
        assert await c.call("Calculator.Add", Args(1, 2)) == 30
        with pytest.raises(RpcError, match="denied by interceptor") as ei:
            await c.call("Calculator.Add", Args(1, 2), metadata={"deny": "1"})
        assert ei.value.status == Status.PERMISSION_DENIED
    assert seen[0] == ("client-in", "Calculator.Add")
    assert seen[1] == ("server-in", ("Calculator.Add", {"who": "client-icpt"}, [Args(1, 2)]))
    assert seen[2] == ("server-out", 3)
    assert seen[3] == ("client-out", 30)


async def test_plain_def_runs_in_a_worker_thread_inline_on_the_loop(serve: Any) -> None:
    probe = Probe()
    url = await serve(probe)
    loop_thread = threading.current_thread().name
    async with await wirecall.connect(url) as c:
        # three 0.3 s blocking handlers at once: in threads they overlap
        t0 = time.monotonic()
        names = await asyncio.gather(*(c.call("Probe.Blocking", 0.3) for _ in range(3)))
        assert time.monotonic() - t0 < 0.8
        assert all(n.startswith("wirecall") for n in names)
        assert await c.call("Probe.Inline") == loop_thread


async def raw_connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url[6:].rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x00" * 64, "bad preface"),
        (fr.PREFACE.pack(b"WRPC", 1, 1, 0, 0) + fr.HEADER.pack(0, 0x42, 0, 0, 1),
         "unknown frame type"),
        (fr.PREFACE.pack(b"WRPC", 2, 1, 0, 0), "unsupported protocol version"),
        (fr.PREFACE.pack(b"WRPC", 1, 1, 0, 0) + fr.HEADER.pack(2**31, 1, 0, 0, 1),
         "far beyond the limit"),
    ],
)
async def test_garbage_closes_only_that_connection(serve: Any, payload: bytes, reason: str) -> None:
    url = await serve(Calculator())
    async with await wirecall.connect(url) as good:
        r, w = await raw_connect(url)
        w.write(payload)
        data = await asyncio.wait_for(r.read(), 5)  # read to EOF: the server closed it
        assert reason.encode() in data or data == b""  # GOAWAY names the reason when it can
        if payload.startswith(b"WRPC"):
            assert reason.encode() in data
        w.close()
        assert await good.call("Calculator.Add", Args(2, 2)) == 4


async def test_undecodable_body_is_invalid_argument_and_connection_survives(serve: Any) -> None:
    url = await serve(Calculator())
    r, w = await raw_connect(url)
    conn = fr.FrameConnection(client=True)
    conn.initiate()
    conn.send_request(1, "Calculator.Add", b"\xc1\xc1\xc1")  # 0xc1 is never valid msgpack
    conn.send_request(2, "Calculator.Add", msgspec.msgpack.encode([{"A": 1, "B": 1}]))
    w.write(conn.data_to_send())
    events: list[fr.Event] = []
    while sum(isinstance(e, (fr.ErrorReceived, fr.ResponseReceived)) for e in events) < 2:
        events += conn.receive_data(await asyncio.wait_for(r.read(65536), 3))
    err = next(e for e in events if isinstance(e, fr.ErrorReceived))
    ok = next(e for e in events if isinstance(e, fr.ResponseReceived))
    assert err.call_id == 1 and err.status == Status.INVALID_ARGUMENT
    assert "cannot decode params of Calculator.Add" in err.message
    assert ok.call_id == 2 and msgspec.msgpack.decode(ok.body) == 2
    w.close()


async def test_oversized_request_refused_and_connection_keeps_working(serve: Any) -> None:
    url = await serve(Probe(), max_message_size=64 * 1024)
    async with await wirecall.connect(url) as c:
        with pytest.raises(ResourceExhausted, match="exceeds the peer's limit of 65536"):
            await c.call("Probe.Echo", b"x" * 100_000)  # refused locally: server announced 64 KiB
        assert await c.call("Probe.Echo", "small") == "small"
    # a client that ignores the announced limit: the server skips the bytes and answers 8
    r, w = await raw_connect(url)
    conn = fr.FrameConnection(client=True)
    conn.initiate()
    conn.peer_max_frame_size = 10**9
    conn.send_request(1, "Probe.Echo", msgspec.msgpack.encode([b"y" * 200_000]))
    conn.send_request(2, "Probe.Echo", msgspec.msgpack.encode(["after"]))
    w.write(conn.data_to_send())
    events: list[fr.Event] = []
    while sum(isinstance(e, (fr.ErrorReceived, fr.ResponseReceived)) for e in events) < 2:
        events += conn.receive_data(await asyncio.wait_for(r.read(65536), 3))
    err = next(e for e in events if isinstance(e, fr.ErrorReceived))
    assert err.status == Status.RESOURCE_EXHAUSTED and "exceeds the server limit" in err.message
    ok = next(e for e in events if isinstance(e, fr.ResponseReceived))
    assert msgspec.msgpack.decode(ok.body) == "after"
    w.close()


@pytest.mark.parametrize("inline", [False, True], ids=["task", "fast-lane"])
async def test_reply_over_the_client_limit_is_resource_exhausted(
    serve: Any, inline: bool
) -> None:
    class Big:
        @wirecall.method(inline=True)
        def Inline(self, n: int) -> bytes:
            return b"x" * n

    url = await serve(Probe(), Big())
    name = "Big.Inline" if inline else "Probe.Big"
    async with await wirecall.connect(url, max_message_size=10_000) as c:
        with pytest.raises(ResourceExhausted, match="exceeds the client's limit of 10000"):
            await c.call(name, 50_000)
        assert await c.call(name, 10) == b"x" * 10


async def test_compression_over_threshold(serve: Any) -> None:
    url = await serve(Probe())
    async with await wirecall.connect(url, compress_threshold=1024) as c:
        blob = b"abc" * 100_000
        assert await c.call("Probe.Echo", blob) == blob


async def test_graceful_shutdown_drains_in_flight_calls(serve: Any) -> None:
    url = await serve(Probe())
    server = serve.server
    c = await wirecall.connect(url)
    calls = [c.go("Probe.Sleep", 0.3, f"t{i}") for i in range(5)]
    await asyncio.sleep(0.1)
    closing = asyncio.ensure_future(server.close(drain_timeout=5))
    await asyncio.sleep(0.05)
    with pytest.raises(Unavailable):  # after GOAWAY: no new calls on this connection
        await c.call("Probe.Echo", 1)
    assert [await x for x in calls] == ["slept 0.3"] * 5
    await closing
    with pytest.raises(ConnectError):
        await wirecall.connect(url, timeout=1)
    await c.close()


async def test_drain_timeout_cancels_what_is_left(serve: Any) -> None:
    probe = Probe()
    url = await serve(probe)
    c = await wirecall.connect(url)
    call = c.go("Probe.Sleep", 30, "long")
    await asyncio.sleep(0.1)
    t0 = time.monotonic()
    await serve.server.close(drain_timeout=0.3)
    assert time.monotonic() - t0 < 2
    with pytest.raises((Unavailable, Cancelled)):
        await call
    assert probe.cancelled == ["long"]
    await c.close()


async def test_dial_timeout_when_the_server_never_answers() -> None:
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)  # accepts TCP, never speaks the protocol
    port = lsock.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(ConnectError, match=r"timed out after 0\.3s"):
        await wirecall.connect(f"tcp://127.0.0.1:{port}", timeout=0.3)
    assert time.monotonic() - t0 < 2
    lsock.close()


async def test_killed_server_fails_pending_calls_fast_and_pool_reconnects(
    server_process: Any,
) -> None:
    from conftest import free_port

    port = free_port()
    proc = server_process("support.services:Probe", f"tcp://127.0.0.1:{port}")
    url = proc.start()
    c = await wirecall.connect(url, pool_size=2)
    assert await c.call("Probe.Echo", 1) == 1
    pending = [c.go("Probe.Sleep", 30) for _ in range(10)]
    await asyncio.sleep(0.2)
    t0 = time.monotonic()
    proc.kill()
    for p in pending:
        with pytest.raises(Unavailable):
            await p
    assert time.monotonic() - t0 < 2.0  # failed fast, no hang
    with pytest.raises(Unavailable):
        await c.call("Probe.Echo", 2)
    proc2 = server_process("support.services:Probe", f"tcp://127.0.0.1:{port}")
    proc2.start()
    deadline = time.monotonic() + 10
    while True:
        try:
            assert await c.call("Probe.Echo", 3) == 3
            break
        except Unavailable:
            assert time.monotonic() < deadline, "pool did not reconnect"
            await asyncio.sleep(0.1)
    await c.close()


async def test_idle_timeout_closes_quiet_connections_and_client_reconnects(serve: Any) -> None:
    url = await serve(Calculator(), idle_timeout=0.3)
    c = await wirecall.connect(url)
    first = c.pool.connections[0]
    assert await c.call("Calculator.Add", Args(1, 1)) == 2
    await asyncio.sleep(1.0)
    assert first.closed
    assert await c.call("Calculator.Add", Args(2, 2)) == 4  # a fresh connection
    assert c.pool.connections[0] is not first
    await c.close()


async def test_keepalive_ping_detects_a_silent_peer() -> None:
    """A peer that completes the handshake, then never answers pings, is dropped."""
    got_ping = asyncio.Event()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        conn = fr.FrameConnection(client=False)
        while True:
            data = await r.read(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, fr.PingReceived):
                    got_ping.set()
            out = conn.data_to_send()
            # answer the preface only, swallow ping acks
            if out.startswith(b"WRPC"):
                w.write(out[: fr.PREFACE.size])

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    c = await wirecall.connect(f"tcp://127.0.0.1:{port}", keepalive=0.2)
    pending = c.go("Any.Thing")
    with pytest.raises(Unavailable):
        await asyncio.wait_for(pending, 3)
    assert got_ping.is_set()
    await c.close()
    srv.close()


async def test_ping_round_trip(serve: Any) -> None:
    url = await serve(Calculator())
    async with await wirecall.connect(url) as c:
        assert 0 <= await c.ping() < 1


def test_header_layout_is_what_the_docs_say() -> None:
    assert fr.HEADER.size == 12 and fr.PREFACE.size == 12
    assert struct.unpack("!IBBHI", fr.HEADER.pack(1, 2, 3, 0, 5)) == (1, 2, 3, 0, 5)


async def test_client_idle_timeout_closes_and_the_pool_redials(serve: Any) -> None:
    url = await serve(Calculator())
    c = await wirecall.connect(url, idle_timeout=0.2)
    first = c.pool.connections[0]
    assert await c.call("Calculator.Add", Args(1, 1)) == 2
    await asyncio.sleep(0.8)
    assert first.closed  # closed by the client for being idle, not by the server
    assert await c.call("Calculator.Add", Args(2, 2)) == 4
    assert c.pool.connections[0] is not first
    await c.close()


async def test_a_client_that_never_reads_stops_the_server_reading(serve: Any) -> None:
    """Write backpressure: replies pile up only as far as the transport's high-water mark
    and the calls already admitted; the server stops reading requests, and when the client
    finally reads, every reply arrives (nothing lost, nothing deadlocked)."""
    admitted = 0

    class Big:
        async def Get(self, n: int) -> bytes:
            nonlocal admitted
            admitted += 1
            return b"x" * n

    url = await serve(Big())
    host, port = url[6:].rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.setblocking(False)
    fc = fr.FrameConnection(client=True)
    fc.initiate()
    total = 400
    body = msgspec.msgpack.encode([256 * 1024])
    loop = asyncio.get_running_loop()
    for i in range(1, total + 1):
        fc.send_request(i, "Big.Get", body)
        await loop.sock_sendall(sock, fc.data_to_send())
        if i % 40 == 0:
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    assert admitted < total  # the server stopped taking requests from this client
    [proto] = serve.server.listeners[0].connections
    assert proto.transport.get_write_buffer_size() <= admitted * (256 * 1024 + 64)
    # another client is served meanwhile
    async with await wirecall.connect(url) as other:
        assert len(await other.call("Big.Get", 10)) == 10
    # now read everything: all replies come, and the server resumed reading
    got = 0
    deadline = time.monotonic() + 30
    while got < total and time.monotonic() < deadline:
        data = await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 10)
        got += sum(isinstance(e, fr.ResponseReceived) for e in fc.receive_data(data))
    assert got == total and admitted == total + 1
    sock.close()


async def test_too_many_calls_in_flight_are_refused_not_queued(serve: Any) -> None:
    url = await serve(Probe(), max_concurrent_calls=8)
    async with await wirecall.connect(url) as c:
        calls = [c.go("Probe.Sleep", 0.3) for _ in range(12)]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        refused = [o for o in outcomes if isinstance(o, ResourceExhausted)]
        assert len(refused) == 4 and "limit 8" in refused[0].message
        assert outcomes.count("slept 0.3") == 8
        assert await c.call("Probe.Echo", 1) == 1  # the connection is fine afterwards


async def test_server_idle_timeout_ignores_keepalive_pings(serve: Any) -> None:
    """Idle means no call: a client pinging every 0.1 s is still closed after 0.4 s idle."""
    url = await serve(Calculator(), idle_timeout=0.4)
    c = await wirecall.connect(url, keepalive=0.1)
    first = c.pool.connections[0]
    assert await c.call("Calculator.Add", Args(1, 1)) == 2
    for _ in range(40):
        if first.closed:
            break
        await asyncio.sleep(0.05)
    assert first.closed
    assert await c.call("Calculator.Add", Args(2, 2)) == 4
    await c.close()


async def test_deadline_sets_ctx_cancelled_for_a_thread_handler(serve: Any) -> None:
    seen: list[bool] = []

    class Worker:
        def Poll(self, ctx: wirecall.Context) -> str:  # a plain def: runs in a worker thread
            t0 = time.monotonic()
            while time.monotonic() - t0 < 3:
                if ctx.cancelled:
                    seen.append(True)
                    return "stopped"
                time.sleep(0.01)
            seen.append(False)
            return "ran to the end"

    url = await serve(Worker())
    async with await wirecall.connect(url) as c:
        with pytest.raises(DeadlineExceeded):
            await c.call("Worker.Poll", timeout=0.2)
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.02)
    assert seen == [True]


@pytest.mark.parametrize("bad", [float("nan"), -1.0, "soon"])
async def test_bad_timeouts_are_invalid_argument(serve: Any, bad: Any) -> None:
    url = await serve(Calculator())
    async with await wirecall.connect(url) as c:
        with pytest.raises(InvalidArgument, match="timeout must be None or seconds"):
            await c.call("Calculator.Add", Args(1, 1), timeout=bad)
        # an infinite or absurd timeout means no deadline
        assert await c.call("Calculator.Add", Args(1, 1), timeout=float("inf")) == 2
        assert await c.call("Calculator.Add", Args(1, 1), timeout=1e14) == 2


async def test_truncated_frame_then_eof_closes_only_that_connection(serve: Any) -> None:
    url = await serve(Calculator())
    async with await wirecall.connect(url) as good:
        r, w = await raw_connect(url)
        conn = fr.FrameConnection(client=True)
        conn.initiate()
        conn.send_request(1, "Calculator.Add", msgspec.msgpack.encode([{"A": 1, "B": 2}]))
        data = conn.data_to_send()
        w.write(data[:-3])  # the request minus its last bytes, then EOF
        await w.drain()
        w.write_eof()
        rest = await asyncio.wait_for(r.read(), 5)  # the server closes; no reply for call 1
        evs = fr.FrameConnection(client=True).receive_data(rest)
        assert isinstance(evs[0], fr.PrefaceReceived)
        assert not any(isinstance(e, fr.ResponseReceived) for e in evs)
        w.close()
        assert await good.call("Calculator.Add", Args(2, 2)) == 4


async def test_pool_health_check_drops_dead_connections(serve: Any) -> None:
    url = await serve(Calculator())
    c = await wirecall.connect(url, pool_size=3)
    assert await c.pool.check() == 3
    victim = c.pool.connections[0]
    victim.transport.abort()  # type: ignore[attr-defined]
    await asyncio.sleep(0.05)
    assert await c.pool.check() == 2
    # calls keep working and the pool fills the empty slot again
    await asyncio.gather(*(c.call("Calculator.Add", Args(i, i)) for i in range(30)))
    assert len(c.pool.connections) == 3
    await c.close()


async def test_pool_backs_off_while_the_server_is_down() -> None:
    from conftest import free_port

    port = free_port()
    c = wirecall.Client(f"tcp://127.0.0.1:{port}", connect_timeout=1)
    with pytest.raises(ConnectError):
        await c.call("Calculator.Add", Args(1, 1))
    t0 = time.monotonic()
    with pytest.raises(Unavailable, match="reconnecting in"):  # fails fast, no redial storm
        await c.call("Calculator.Add", Args(1, 1))
    assert time.monotonic() - t0 < 0.05
    server = wirecall.Server().register(Calculator())
    await server.start(f"tcp://127.0.0.1:{port}")
    deadline = time.monotonic() + 10
    while True:
        try:
            assert await c.call("Calculator.Add", Args(1, 1)) == 2
            break
        except Unavailable:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    await c.close()
    await server.close()


class CalculatorProto(typing.Protocol):
    __wirecall_service__ = "Calculator"

    async def Add(self, args: Args) -> int: ...


async def test_stub_from_a_typing_protocol(serve: Any) -> None:
    url = await serve(Calculator())
    async with await wirecall.connect(url) as c:
        calc = c.stub(CalculatorProto)  # type: ignore[type-abstract]
        assert await calc.Add(Args(20, 22)) == 42
