"""The main demo: serve the tutorial's Calculator and call it every way wirecall offers.

Run: ``python -m wirecall.tutorial.demo`` (or ``wirecall demo``). Each line says what was done
and what came back; the process exits non-zero if any step did not behave as documented.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import wirecall
import wirecall.sync
from wirecall import Context, RpcError, Server, Status
from wirecall.tutorial.calculator import DIVIDE_BY_ZERO, Args, Calculator, CalculatorAPI

OK = True


def readable(value: Any) -> str:
    """An outcome as a reader wants it: errors as ``STATUS: message``, floats rounded,
    tuples and lists as comma-separated items."""
    if isinstance(value, RpcError):
        return f"{value.status.name}: {value.message}"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:.1f}"
    if isinstance(value, tuple):
        return ", ".join(readable(v) for v in value)
    if isinstance(value, list):
        return "[" + ", ".join(readable(v) for v in value) + "]"
    return str(value)


def show(step: str, outcome: Any, expect: Callable[[Any], bool] | None = None) -> None:
    global OK
    good = True if expect is None else expect(outcome)
    OK = OK and good
    print(f"{'ok ' if good else 'BAD'} {step:<62} -> {readable(outcome)}")


class Slow:
    """A service to show deadlines and cancellation."""

    def __init__(self) -> None:
        self.cancelled = 0

    async def Sleep(self, seconds: float, ctx: Context) -> str:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return f"slept {seconds}s"

    async def Remaining(self, ctx: Context) -> float | None:
        return ctx.time_remaining()


class Numbers:
    """Streaming: the mode comes from the type hints."""

    async def Range(self, n: int) -> AsyncIterator[int]:  # server stream
        for i in range(n):
            yield i

    async def Sum(self, nums: AsyncIterator[int]) -> int:  # client stream
        return sum([n async for n in nums])

    async def Square(self, nums: AsyncIterator[int]) -> AsyncIterator[int]:  # bidirectional
        async for n in nums:
            yield n * n


async def every_wire(server: Server) -> None:
    """The same Calculator over every wire wirecall speaks, each called by wirecall's client."""
    wires = ["gob://127.0.0.1:0", "jsonrpc://127.0.0.1:0", "http://127.0.0.1:0",
             "grpc://127.0.0.1:0", "any://127.0.0.1:0"]
    try:
        urls = await server.start(*wires)
    except RuntimeError as exc:  # an extra is missing: say which, and go on
        show("other wires", f"skipped: {exc}", lambda r: True)
        return
    for url in urls:
        scheme = url.split("://")[0]
        targets = [url]
        if scheme == "http":  # JSON-RPC 2.0, Go's JSON-RPC over HTTP, Go's HTTP+gob CONNECT
            targets = [f"{url}/rpc", f"{url}/jsonrpc", f"{url}/_goRPC_"]
        if scheme == "any":  # one port: the native protocol and HTTP JSON-RPC on it
            port = url.rsplit(":", 1)[1]
            targets = [f"tcp://127.0.0.1:{port}", f"http://127.0.0.1:{port}/rpc",
                       f"gob://127.0.0.1:{port}", f"grpc://127.0.0.1:{port}"]
        for target in targets:
            async with await wirecall.connect(target, timeout=2) as c:
                got = await c.call("Calculator.Add", Args(10, 5))
                try:
                    await c.call("Calculator.Divide", Args(1, 0))
                    err = "no error"
                except RpcError as exc:
                    err = exc.message
            tscheme, _, rest = target.partition("://")
            path = rest[rest.find("/"):] if "/" in rest else ""
            show(f"{scheme}:// listener, {tscheme} client {path}: Add / Divide by 0",
                 (got, err), lambda r: r == (15, DIVIDE_BY_ZERO))


async def streaming(url: str) -> None:
    async with await wirecall.connect(url) as c:
        rng = [i async for i in c.stream("Numbers.Range", [5], result_type=int)]
        total = await c.stream("Numbers.Sum", iter([1, 2, 3, 4]), result_type=int).result()
        sq = c.stream("Numbers.Square", result_type=int)
        squares = []
        for n in (3, 4, 5):
            await sq.send(n)
            squares.append(await sq.recv())
        await sq.done_writing()
    show(f"streams on {url.split('://')[0]}://: Range(5), Sum(1..4), Square(3,4,5)",
         (rng, total, squares), lambda r: r == ([0, 1, 2, 3, 4], 10, [9, 16, 25]))


async def websocket(server: Server) -> None:
    """ws://: calls and streams over one WebSocket; the deadline travels."""
    try:
        [url] = await server.start("ws://127.0.0.1:0/ws")
    except RuntimeError as exc:
        show("ws://", f"skipped: {exc}", lambda r: True)
        return
    async with await wirecall.connect(url, timeout=2) as c:
        show(f"{url}: Calculator.Add(Args(20, 22))",
             await c.call("Calculator.Add", Args(20, 22)), lambda r: r == 42)
        rem = await c.call("Slow.Remaining", timeout=3.0)
        show("ws:// carries the deadline: handler's time_remaining()", rem,
             lambda r: r is not None and 2.0 < r <= 3.0)
    await streaming(url)


async def json_rpc_batch(server: Server) -> None:
    """A JSON-RPC 2.0 batch over HTTP: three calls in one POST, one of them failing."""
    from wirecall.transport import http

    url = next((u for u in server.urls if u.startswith("http://")), None)
    if url is None:
        return
    async with await wirecall.connect(f"{url}/rpc") as c:
        results = await http.batch(c, [
            ("Calculator.Add", [{"A": 1, "B": 2}]),
            ("Calculator.Divide", [{"A": 9, "B": 3}]),
            ("Calculator.Divide", [{"A": 1, "B": 0}]),
        ])
    show("JSON-RPC 2.0 batch: Add(1,2), Divide(9,3), Divide(1,0)", results,
         lambda r: r[:2] == [3, 3.0] and isinstance(r[2], RpcError))


async def tls(server: Server) -> None:
    """grpcs://: gRPC over TLS with a self-signed certificate made for the demo (openssl)."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        show("grpcs:// (TLS)", "skipped: no openssl command to make a certificate", lambda r: True)
        return
    d = tempfile.mkdtemp(prefix="wirecall-demo-tls-")
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    [url] = await server.start("grpcs://127.0.0.1:0", certfile=cert, keyfile=key)
    async with await wirecall.connect(url, cafile=cert, timeout=2) as c:
        got = await c.call("Calculator.Add", Args(40, 2))
    show(f"{url} (TLS, the demo's own CA): Calculator.Add(Args(40, 2))", got,
         lambda r: r == 42)


async def health(server: Server) -> None:
    """The standard gRPC health service: probed over the network, changed only locally."""
    try:
        from wirecall.observability.health import NOT_SERVING, enable_health, health_pb2
    except ImportError as exc:
        show("health", f"skipped: {exc}", lambda r: True)
        return
    svc = enable_health(server)
    url = next(u for u in server.urls if u.startswith("grpc://"))
    req = health_pb2.HealthCheckRequest(service="")
    async with await wirecall.connect(url, timeout=2) as c:
        async def check() -> str:
            reply = await c.call("grpc.health.v1.Health.Check", req,
                                 result_type=health_pb2.HealthCheckResponse)
            return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

        show("health: grpc.health.v1.Health/Check", await check(), lambda r: r == "SERVING")
        try:
            await c.call("grpc.health.v1.Health.set", "", NOT_SERVING)
            refused: Any = "accepted"
        except RpcError as exc:
            refused = exc
        show("health: Health.set over the network is refused", refused,
             lambda r: isinstance(r, RpcError) and r.status == Status.UNIMPLEMENTED)
        svc.set("", NOT_SERVING)  # the server's own code may
        show("health: after health.set('', NOT_SERVING) in the server", await check(),
             lambda r: r == "NOT_SERVING")


async def amain() -> int:
    server = Server()
    server.register(Calculator())
    slow = Slow()
    server.register(slow)
    server.register(Numbers())
    sock = os.path.join(tempfile.mkdtemp(prefix="wirecall-demo-"), "calc.sock")
    tcp_url, unix_url = await server.start("tcp://127.0.0.1:0", f"unix://{sock}")
    print(f"serving Calculator on {tcp_url} and {unix_url}")

    client = await wirecall.connect(tcp_url, timeout=2.0)
    show("call Calculator.Add(Args(A=10, B=5))",
         await client.call("Calculator.Add", Args(A=10, B=5)), lambda r: r == 15)
    show("call Calculator.Add({'A': 10, 'B': 5})",
         await client.call("Calculator.Add", {"A": 10, "B": 5}), lambda r: r == 15)
    div = client.go("Calculator.Divide", Args(10, 5))
    show("go Calculator.Divide(10, 5), then await the Call", await div, lambda r: r == 2.0)
    try:
        await client.call("Calculator.Divide", Args(10, 0))
        show("call Calculator.Divide(10, 0)", "no error", lambda r: False)
    except RpcError as exc:
        show("call Calculator.Divide(10, 0)", exc,
             lambda r: r.status == Status.INVALID_ARGUMENT and r.message == DIVIDE_BY_ZERO)
    try:
        await client.call("Calculator.Add", {"A": "ten", "B": 5})
    except RpcError as exc:
        show("call Calculator.Add with A='ten'", exc,
             lambda r: r.status == Status.INVALID_ARGUMENT and "$.A" in str(r))
    try:
        await client.call("Calculator.Multiply", Args(1, 2))
    except RpcError as exc:
        show("call Calculator.Multiply (not registered)", exc,
             lambda r: r.status == Status.UNIMPLEMENTED)
    calc = client.stub(CalculatorAPI)
    show("typed stub: await calc.Add(Args(2, 3))", await calc.Add(Args(2, 3)), lambda r: r == 5)
    try:
        await client.call("Slow.Sleep", 5.0, timeout=0.2)
    except RpcError as exc:
        await asyncio.sleep(0.05)
        show("call Slow.Sleep(5) with timeout=0.2", (exc.status.name, "handler cancelled",
             slow.cancelled), lambda r: r == ("DEADLINE_EXCEEDED", "handler cancelled", 1))
    rem = await client.call("Slow.Remaining", timeout=3.0)
    show("the deadline travels: handler's time_remaining()", rem, lambda r: 2.0 < r <= 3.0)
    results = await asyncio.gather(
        *(client.call("Calculator.Add", Args(i, i)) for i in range(1000))
    )
    show("1000 concurrent calls on one connection", f"sum={sum(results)}",
         lambda r: sum(results) == 999000)
    pooled = await wirecall.connect(tcp_url, pool_size=4)
    got = await asyncio.gather(*(pooled.call("Calculator.Add", Args(i, 1)) for i in range(100)))
    show("pool of 4 connections, 100 calls", f"{len(pooled.pool.connections)} connections, "
         f"sum={sum(got)}", lambda r: sum(got) == 5050 and len(pooled.pool.connections) == 4)
    await pooled.close()
    unix = await wirecall.connect(unix_url)
    show("call over unix socket", await unix.call("Calculator.Add", Args(1, 1)), lambda r: r == 2)
    await unix.close()
    try:
        await wirecall.connect("tcp://127.0.0.1:1", timeout=1.0)
    except wirecall.ConnectError as exc:
        show("dial a closed port (dial timeout 1s)", exc, lambda r: True)

    def blocking_part() -> None:
        with wirecall.sync.connect(tcp_url, timeout=2.0) as sc:
            show("sync: call Calculator.Add", sc.call("Calculator.Add", Args(7, 8)),
                 lambda r: r == 15)
            fut = sc.go("Calculator.Divide", Args(9, 3))
            show("sync: go -> concurrent.futures.Future", fut.result(2), lambda r: r == 3.0)
            with concurrent.futures.ThreadPoolExecutor(16) as ex:
                outs = list(ex.map(lambda i: sc.call("Calculator.Add", Args(i, 0)), range(200)))
            show("sync: 16 threads share one client, 200 calls", f"sum={sum(outs)}",
                 lambda r: sum(outs) == 19900)

    await asyncio.get_running_loop().run_in_executor(None, blocking_part)

    await streaming(tcp_url)
    await every_wire(server)
    for url in server.urls:
        if url.startswith("grpc://"):
            await streaming(url)
    await websocket(server)
    await json_rpc_batch(server)
    await tls(server)
    await health(server)

    inflight = client.go("Slow.Sleep", 0.3)
    await asyncio.sleep(0.05)
    t0 = time.monotonic()
    await server.close(drain_timeout=5)
    show("graceful shutdown waits for the in-flight call", await inflight,
         lambda r: r == "slept 0.3s")
    print(f"server closed after {time.monotonic() - t0:.2f}s")
    await client.close()
    print("demo", "passed" if OK else "FAILED")
    return 0 if OK else 1


def main() -> int:
    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.run(amain())
    return asyncio.run(amain())


if __name__ == "__main__":
    threading.excepthook = lambda args: None
    raise SystemExit(main())
