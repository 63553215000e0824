"""JSON-RPC 2.0 over HTTP keep-alive: wirecall's HTTP server against plain aiohttp.

Both servers answer ``POST /jsonrpc`` with ``Calculator.Add`` (``{"A": 10, "B": 5}`` -> 15):

* **wirecall**: ``Server().register(Calculator())`` listening on ``http://127.0.0.1:0``;
* **aiohttp**: the plain way, one ``web.Application`` handler using the ``json`` module.

Both run in their own process on uvloop. One load generator drives them in interleaved
rounds: ``seq`` is one connection, one call at a time; ``c8`` is 8 keep-alive connections, each
one call at a time. The load generator is ``benchmarks/go/httpload`` (Go, built offline with
Debian's golang-go; it costs a few microseconds per call, so the servers are what is measured)
or, with ``--py-load`` or without Go, a minimal keep-alive client on uvloop in Python. Every
reply is parsed and checked. Medians of the rounds and the wirecall/aiohttp ratios are printed.

    python benchmarks/bench_http.py [--rounds 5] [--seconds 2] [--py-load]
    python benchmarks/bench_http.py --client-e2e      # also wirecall's client vs aiohttp's
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
BODY = b'{"jsonrpc":"2.0","method":"Calculator.Add","params":[{"A":10,"B":5}],"id":1}'
REQUEST = (
    b"POST /jsonrpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
)


# -- servers ---------------------------------------------------------------------------


async def wirecall_server() -> None:
    import wirecall
    from wirecall.tutorial.calculator import Calculator

    server = wirecall.Server()
    server.register(Calculator())
    [url] = await server.start("http://127.0.0.1:0")
    print(url.rsplit(":", 1)[1].split("/")[0], flush=True)
    await server.serve_forever(handle_signals=True)


async def aiohttp_server() -> None:
    from aiohttp import web

    def add(args: dict[str, int]) -> int:
        return args["A"] + args["B"]

    methods = {"Calculator.Add": add}

    async def handle(request: web.Request) -> web.Response:
        req = json.loads(await request.read())
        try:
            result = methods[req["method"]](*req.get("params", []))
            resp = {"jsonrpc": "2.0", "result": result, "id": req.get("id")}
        except KeyError:
            resp = {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"},
                    "id": req.get("id")}
        return web.Response(body=json.dumps(resp).encode(), content_type="application/json")

    app = web.Application()
    app.router.add_post("/jsonrpc", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()


# -- load generator --------------------------------------------------------------------


class KeepAliveClient(asyncio.Protocol):
    """One keep-alive connection: one request at a time, every reply parsed and checked."""

    def __init__(self, deadline: float, done: asyncio.Future[None]) -> None:
        self.deadline = deadline
        self.done = done
        self.calls = 0
        self.buf = b""
        import msgspec

        self.decode = msgspec.json.decode

    def connection_made(self, transport: Any) -> None:
        import socket

        self.t = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write(REQUEST)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end]
            i = head.lower().find(b"content-length:")
            n = int(head[i + 15 : head.find(b"\r\n", i) if head.find(b"\r\n", i) > 0 else None])
            if len(buf) < end + 4 + n:
                break
            body = buf[end + 4 : end + 4 + n]
            buf = buf[end + 4 + n :]
            if not head.startswith(b"HTTP/1.1 200") or self.decode(body)["result"] != 15:
                raise AssertionError(f"bad reply: {head!r} {body!r}")
            self.calls += 1
            if time.perf_counter() >= self.deadline:
                self.t.close()
                if not self.done.done():
                    self.done.set_result(None)
                return
            self.t.write(REQUEST)
        self.buf = buf

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def load(port: int, conns: int, seconds: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    # warm up: a short run, not counted
    for dur, counted in ((0.3, False), (seconds, True)):
        t0 = time.perf_counter()
        deadline = t0 + dur
        protos = []
        futs = []
        for _ in range(conns):
            fut: asyncio.Future[None] = loop.create_future()
            _t, p = await loop.create_connection(
                lambda f=fut, d=deadline: KeepAliveClient(d, f), "127.0.0.1", port)
            protos.append(p)
            futs.append(fut)
        await asyncio.gather(*futs)
        elapsed = time.perf_counter() - t0
        if counted:
            calls = sum(p.calls for p in protos)
            return {"calls": calls, "seconds": elapsed, "rate": calls / elapsed}
    raise AssertionError("unreachable")


async def e2e_load(kind: str, port: int, conns: int, seconds: float) -> dict[str, Any]:
    """The clients too: wirecall's HTTP client, or aiohttp's ClientSession posting json."""
    calls = 0
    if kind == "wirecall":
        import wirecall
        from wirecall.tutorial.calculator import Args

        client = await wirecall.connect(f"http://127.0.0.1:{port}/jsonrpc")

        async def one() -> None:
            r = await client.call("Calculator.Add", Args(A=10, B=5))
            assert r == 15

        close: Any = client.close
    else:
        import aiohttp

        session = aiohttp.ClientSession()
        n = [0]

        async def one() -> None:
            n[0] += 1
            payload = {"jsonrpc": "2.0", "method": "Calculator.Add",
                       "params": [{"A": 10, "B": 5}], "id": n[0]}
            async with session.post(f"http://127.0.0.1:{port}/jsonrpc",
                                    data=json.dumps(payload),
                                    headers={"Content-Type": "application/json"}) as r:
                assert json.loads(await r.read())["result"] == 15

        close = session.close

    async def worker(deadline: float) -> int:
        c = 0
        while time.perf_counter() < deadline:
            await one()
            c += 1
        return c

    await asyncio.gather(*(worker(time.perf_counter() + 0.3) for _ in range(conns)))
    t0 = time.perf_counter()
    counts = await asyncio.gather(*(worker(t0 + seconds) for _ in range(conns)))
    elapsed = time.perf_counter() - t0
    calls = sum(counts)
    await close()
    return {"calls": calls, "seconds": elapsed, "rate": calls / elapsed}


# -- orchestration ---------------------------------------------------------------------


def start(kind: str) -> tuple[subprocess.Popen[str], int]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, __file__, "server", kind], stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.strip().isdigit():
        proc.kill()
        raise RuntimeError(f"{kind} server did not start: {line!r}")
    return proc, int(line)


def build_go_load() -> str | None:
    go = shutil.which("go")
    if go is None:
        return None
    tmp = tempfile.mkdtemp(prefix="wirecall-bench-http-")
    out = os.path.join(tmp, "httpload")
    env = dict(os.environ, GO111MODULE="off", GOPATH=os.path.join(tmp, "gopath"),
               GOCACHE=os.path.join(tmp, "gocache"), GOFLAGS="", CGO_ENABLED="0")
    subprocess.run([go, "build", "-o", out, os.path.join(HERE, "go", "httpload", "main.go")],
                   check=True, env=env, capture_output=True, timeout=300)
    return out


def measure(*args: str, go_load: str | None = None) -> float:
    cmd = [sys.executable, __file__, *args]
    if go_load is not None and args[0] == "load":
        cmd = [go_load, "-addr", f"127.0.0.1:{args[1]}", "-c", args[2], "-t", args[3]]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["rate"])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--client-e2e", action="store_true",
                    help="also measure each stack with its own client")
    ap.add_argument("--py-load", action="store_true",
                    help="use the Python load generator even when Go is available")
    a = ap.parse_args()
    go_load = None if a.py_load else build_go_load()
    print(f"load generator: {'Go (benchmarks/go/httpload)' if go_load else 'Python (uvloop)'}",
          file=sys.stderr)
    servers = {k: start(k) for k in ("wirecall", "aiohttp")}
    modes = {"seq": 1, "c8": 8}
    results: dict[tuple[str, str], list[float]] = {}
    try:
        for r in range(a.rounds):
            for mode, conns in modes.items():
                order = list(servers) if r % 2 == 0 else list(reversed(servers))
                for kind in order:
                    rate = measure("load", str(servers[kind][1]), str(conns), str(a.seconds),
                                   go_load=go_load)
                    results.setdefault((kind, mode), []).append(rate)
                    if a.client_e2e:
                        rate = measure("e2e", kind, str(servers[kind][1]), str(conns),
                                       str(a.seconds))
                        results.setdefault((kind, mode + "-e2e"), []).append(rate)
            print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(10)
    mode_names = sorted({m for _, m in results}, key=lambda m: (m.endswith("e2e"), m))
    print(f"\nJSON-RPC 2.0 over HTTP keep-alive, Calculator.Add, medians of {a.rounds} rounds "
          f"x {a.seconds:.1f}s (calls/s), load: {'Go' if go_load else 'Python'}\n")
    print(f"{'mode':<10}{'wirecall':>12}{'aiohttp':>12}{'ratio':>8}")
    for mode in mode_names:
        w = statistics.median(results[("wirecall", mode)])
        h = statistics.median(results[("aiohttp", mode)])
        print(f"{mode:<10}{w:>12,.0f}{h:>12,.0f}{w / h:>7.2f}x")
    return 0


def _run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "server":
        _run(wirecall_server() if sys.argv[2] == "wirecall" else aiohttp_server())
    elif len(sys.argv) > 1 and sys.argv[1] == "load":
        res = _run(load(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
        print(json.dumps(res))
    elif len(sys.argv) > 1 and sys.argv[1] == "e2e":
        res = _run(e2e_load(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
                            float(sys.argv[5])))
        print(json.dumps(res))
    else:
        sys.exit(main())
