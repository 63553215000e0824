"""gRPC side by side: wirecall (server + client) on each HTTP/2 backend (``wirecall``: ngh2,
``wirecall-h2``: h2) vs grpcio asyncio vs grpclib vs a bare ngh2 loop (``ngh2-bare``: the
same calls on ngh2 + uvloop with no framework, written here: the Python limit for gRPC), one
run.

Unary ``Calculator.Add`` (protobuf, ``benchmarks/protos/benchcalc.proto``) sequential and with
64 calls in flight on one connection, and a server stream of small messages (messages/s).
Each server runs in its own process (wirecall and grpclib on uvloop, grpcio on its own
loop); the client runs here. Rounds are interleaved; medians are reported with ratios.

    .venv/bin/python benchmarks/bench_grpc.py --rounds 5 --seconds 1.5
    .venv/bin/python benchmarks/bench_grpc.py --peers wirecall,grpcio,grpclib,wirecall-h2,ngh2-bare
    .venv/bin/python benchmarks/bench_grpc.py --profile wirecall   # pyinstrument, if installed
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from wirecall.gen import load_proto  # noqa: E402

pb, wc = load_proto(HERE / "protos" / "benchcalc.proto")
assert wc is not None
STREAM_N = 20000


# -- servers (run with --serve NAME in a subprocess) --------------------------------------


async def serve_wirecall(backend: str = "ngh2") -> None:
    from wirecall import Server

    class Calc(wc.CalculatorBase):  # type: ignore[misc,name-defined]
        async def Add(self, request: Any, context: Any) -> Any:
            return pb.AddReply(sum=request.a + request.b)

        async def Count(self, request: Any, context: Any) -> AsyncIterator[Any]:
            for i in range(request.n):
                yield pb.Tick(i=i)

    server = Server()
    server.register(Calc())
    [url] = await server.start("grpc://127.0.0.1:0", http2_backend=backend)
    print(url.rsplit(":", 1)[1], flush=True)
    await server.serve_forever()


def _frame(payload: bytes) -> bytes:
    return b"\0" + len(payload).to_bytes(4, "big") + payload


def _messages(buf: bytes) -> list[bytes]:
    out, i = [], 0
    while i + 5 <= len(buf):
        n = int.from_bytes(buf[i + 1:i + 5], "big")
        out.append(buf[i + 5:i + 5 + n])
        i += 5 + n
    return out


_RESP = [(b":status", b"200"), (b"content-type", b"application/grpc")]
_OK = [(b"grpc-status", b"0")]


class BareNgh2Server(asyncio.Protocol):
    """gRPC Add and Count on ngh2 with nothing else: the bare loop."""

    def connection_made(self, transport: Any) -> None:
        import ngh2

        self.ngh2 = ngh2
        self.t = transport
        self.c = ngh2.Connection(ngh2.Role.SERVER)
        self.c.initiate_connection({3: 1000})
        self.paths: dict[int, bytes] = {}
        self.bufs: dict[int, bytes] = {}
        transport.write(self.c.data_to_send())

    def data_received(self, data: bytes) -> None:
        ng, c = self.ngh2, self.c
        c.receive_data(data)
        for ev in c.events():
            t = type(ev)
            if t is ng.RequestReceived:
                self.paths[ev.stream_id] = dict(ev.headers)[b":path"]
            elif t is ng.DataReceived:
                sid = ev.stream_id
                buf = self.bufs.get(sid, b"") + ev.data
                if not ev.end_stream:
                    self.bufs[sid] = buf
                    continue
                self.bufs.pop(sid, None)
                path = self.paths.pop(sid)
                [msg] = _messages(buf)
                c.send_response(sid, _RESP)
                if path.endswith(b"/Add"):
                    req = pb.AddRequest.FromString(msg)
                    c.send_data(sid, _frame(pb.AddReply(sum=req.a + req.b).SerializeToString()))
                else:
                    n = pb.CountRequest.FromString(msg).n
                    c.send_data(sid, b"".join(
                        _frame(pb.Tick(i=i).SerializeToString()) for i in range(n)))
                c.send_trailers(sid, _OK)
        self.t.write(c.data_to_send())


async def serve_ngh2_bare() -> None:
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(BareNgh2Server, "127.0.0.1", 0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await srv.serve_forever()


async def serve_grpcio() -> None:
    import grpc

    async def add(req: Any, ctx: Any) -> Any:
        return pb.AddReply(sum=req.a + req.b)

    async def count(req: Any, ctx: Any) -> AsyncIterator[Any]:
        for i in range(req.n):
            yield pb.Tick(i=i)

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("benchcalc.Calculator", {
        "Add": grpc.unary_unary_rpc_method_handler(
            add, request_deserializer=pb.AddRequest.FromString,
            response_serializer=pb.AddReply.SerializeToString),
        "Count": grpc.unary_stream_rpc_method_handler(
            count, request_deserializer=pb.CountRequest.FromString,
            response_serializer=pb.Tick.SerializeToString),
    }),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


async def serve_grpclib() -> None:
    from grpclib.const import Cardinality, Handler
    from grpclib.server import Server as GServer

    class Calc:
        async def Add(self, stream: Any) -> None:
            req = await stream.recv_message()
            await stream.send_message(pb.AddReply(sum=req.a + req.b))

        async def Count(self, stream: Any) -> None:
            req = await stream.recv_message()
            for i in range(req.n):
                await stream.send_message(pb.Tick(i=i))

        def __mapping__(self) -> dict[str, Any]:
            return {
                "/benchcalc.Calculator/Add": Handler(
                    self.Add, Cardinality.UNARY_UNARY, pb.AddRequest, pb.AddReply),
                "/benchcalc.Calculator/Count": Handler(
                    self.Count, Cardinality.UNARY_STREAM, pb.CountRequest, pb.Tick),
            }

    server = GServer([Calc()])
    await server.start("127.0.0.1", 0)
    port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(port, flush=True)
    await server.wait_closed()


SERVERS: dict[str, Callable[[], Awaitable[None]]] = {
    "wirecall": serve_wirecall, "wirecall-h2": lambda: serve_wirecall("h2"),
    "grpcio": serve_grpcio, "grpclib": serve_grpclib, "ngh2-bare": serve_ngh2_bare}


# -- clients --------------------------------------------------------------------------------


class Peer:
    name = ""

    async def open(self, port: int) -> None: ...
    async def add(self, a: int, b: int) -> int: ...
    async def count(self, n: int) -> int: ...
    async def close(self) -> None: ...


class WirecallPeer(Peer):
    name = "wirecall"
    backend = "ngh2"

    async def open(self, port: int) -> None:
        from wirecall.transport import grpc as tg
        from wirecall.transport.base import parse_url

        self.conn = await tg.connect(parse_url(f"grpc://127.0.0.1:{port}"),
                                     http2_backend=self.backend)

    async def add(self, a: int, b: int) -> int:
        r = await self.conn.call("benchcalc.Calculator.Add", [pb.AddRequest(a=a, b=b)],
                                 None, None, pb.AddReply)
        return int(r.sum)

    async def count(self, n: int) -> int:
        k = 0
        async for _ in self.conn.open_stream("benchcalc.Calculator.Count",
                                             [pb.CountRequest(n=n)], None, None, pb.Tick):
            k += 1
        return k

    async def close(self) -> None:
        await self.conn.aclose()


class WirecallH2Peer(WirecallPeer):
    name = "wirecall-h2"
    backend = "h2"


class BareNgh2Client(asyncio.Protocol):
    def __init__(self) -> None:
        import ngh2

        self.ngh2 = ngh2
        self.c = ngh2.Connection(ngh2.Role.CLIENT)
        self.c.initiate_connection()
        self.waiting: dict[int, asyncio.Future[bytes]] = {}
        self.bufs: dict[int, bytes] = {}
        self.flush_due = False

    def connection_made(self, transport: Any) -> None:
        self.t = transport
        transport.write(self.c.data_to_send())

    def flush(self) -> None:
        self.flush_due = False
        self.t.write(self.c.data_to_send())

    def request(self, path: bytes, msg: bytes) -> asyncio.Future[bytes]:
        sid = self.c.send_request([
            (b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
            (b":authority", b"bench"), (b"te", b"trailers"),
            (b"content-type", b"application/grpc")])
        self.c.send_data(sid, _frame(msg), end_stream=True)
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiting[sid] = fut
        if not self.flush_due:
            self.flush_due = True
            asyncio.get_running_loop().call_soon(self.flush)
        return fut

    def data_received(self, data: bytes) -> None:
        ng, c = self.ngh2, self.c
        c.receive_data(data)
        for ev in c.events():
            t = type(ev)
            if t is ng.DataReceived:
                self.bufs[ev.stream_id] = self.bufs.get(ev.stream_id, b"") + ev.data
            elif t is ng.TrailersReceived:
                self.waiting.pop(ev.stream_id).set_result(self.bufs.pop(ev.stream_id, b""))
        if c.want_write:
            self.t.write(c.data_to_send())


class BareNgh2Peer(Peer):
    name = "ngh2-bare"

    async def open(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.t, self.p = await loop.create_connection(BareNgh2Client, "127.0.0.1", port)

    async def add(self, a: int, b: int) -> int:
        buf = await self.p.request(b"/benchcalc.Calculator/Add",
                                   pb.AddRequest(a=a, b=b).SerializeToString())
        [msg] = _messages(buf)
        return int(pb.AddReply.FromString(msg).sum)

    async def count(self, n: int) -> int:
        buf = await self.p.request(b"/benchcalc.Calculator/Count",
                                   pb.CountRequest(n=n).SerializeToString())
        return sum(1 for m in _messages(buf) if pb.Tick.FromString(m) is not None)

    async def close(self) -> None:
        self.t.close()


class GrpcioPeer(Peer):
    name = "grpcio"

    async def open(self, port: int) -> None:
        import grpc

        self.ch = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self._add = self.ch.unary_unary(
            "/benchcalc.Calculator/Add", request_serializer=pb.AddRequest.SerializeToString,
            response_deserializer=pb.AddReply.FromString)
        self._count = self.ch.unary_stream(
            "/benchcalc.Calculator/Count", request_serializer=pb.CountRequest.SerializeToString,
            response_deserializer=pb.Tick.FromString)

    async def add(self, a: int, b: int) -> int:
        return int((await self._add(pb.AddRequest(a=a, b=b))).sum)

    async def count(self, n: int) -> int:
        k = 0
        async for _ in self._count(pb.CountRequest(n=n)):
            k += 1
        return k

    async def close(self) -> None:
        await self.ch.close()


class GrpclibPeer(Peer):
    name = "grpclib"

    async def open(self, port: int) -> None:
        from grpclib.client import Channel, UnaryStreamMethod, UnaryUnaryMethod

        self.ch = Channel("127.0.0.1", port)
        self._add = UnaryUnaryMethod(self.ch, "/benchcalc.Calculator/Add", pb.AddRequest,
                                     pb.AddReply)
        self._count = UnaryStreamMethod(self.ch, "/benchcalc.Calculator/Count",
                                        pb.CountRequest, pb.Tick)

    async def add(self, a: int, b: int) -> int:
        return int((await self._add(pb.AddRequest(a=a, b=b))).sum)

    async def count(self, n: int) -> int:
        return len(await self._count(pb.CountRequest(n=n)))

    async def close(self) -> None:
        self.ch.close()


PEERS: dict[str, type[Peer]] = {"wirecall": WirecallPeer, "grpcio": GrpcioPeer,
                                "grpclib": GrpclibPeer, "wirecall-h2": WirecallH2Peer,
                                "ngh2-bare": BareNgh2Peer}


async def sequential(peer: Peer, seconds: float) -> float:
    n = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        for _ in range(50):
            assert await peer.add(n, 1) == n + 1
            n += 1
        if time.perf_counter() >= end:
            break
    return n / (time.perf_counter() - t0)


async def inflight(peer: Peer, seconds: float, width: int = 64) -> float:
    done = 0
    t0 = time.perf_counter()
    end = t0 + seconds

    async def worker(w: int) -> None:
        nonlocal done
        while time.perf_counter() < end:
            assert await peer.add(w, 1) == w + 1
            done += 1

    await asyncio.gather(*(worker(w) for w in range(width)))
    return done / (time.perf_counter() - t0)


async def stream(peer: Peer, seconds: float) -> float:
    t0 = time.perf_counter()
    assert await peer.count(STREAM_N) == STREAM_N
    return STREAM_N / (time.perf_counter() - t0)


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process (Linux /proc), to report CPU per call."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(name: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", name],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"{name} server did not start")
    return proc, int(line)


async def run(args: argparse.Namespace) -> None:
    names = args.peers.split(",")
    procs = {n: start_server(n) for n in names}
    peers: dict[str, Peer] = {}
    try:
        for n in names:
            p = PEERS[n]()
            await p.open(procs[n][1])
            await p.add(0, 0)
            peers[n] = p
        tests: dict[str, Callable[[Peer, float], Awaitable[float]]] = {
            "sequential": sequential, "64 in flight": inflight, "server stream msgs": stream}
        results: dict[tuple[str, str], list[float]] = {}
        cpu: dict[tuple[str, str], list[float]] = {}
        me = os.getpid()
        for r in range(args.rounds):
            for tname, fn in tests.items():
                for n in (names if r % 2 == 0 else names[::-1]):  # interleaved
                    if tname == "server stream msgs" and n == "grpclib" and not args.all_stream:
                        continue
                    pid = procs[n][0].pid
                    s0, c0, t0 = cpu_seconds(pid), cpu_seconds(me), time.perf_counter()
                    v = await fn(peers[n], args.seconds)
                    ops = v * (time.perf_counter() - t0)
                    results.setdefault((tname, n), []).append(v)
                    cpu.setdefault((tname, n), []).append(
                        1e6 * (cpu_seconds(pid) - s0 + cpu_seconds(me) - c0) / ops)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        print(f"\n| test (medians of {args.rounds} rounds, calls/s or msgs/s) | "
              + " | ".join(names) + " | " + " | ".join(f"wirecall / {n}" for n in names[1:])
              + " |")
        print("|---" * (1 + 2 * len(names) - 1) + "|")
        for tname in tests:
            med = {n: statistics.median(results[(tname, n)]) for n in names
                   if (tname, n) in results}
            cells = [f"{med[n]:,.0f}" if n in med else "-" for n in names]
            ratios = [f"{med['wirecall'] / med[n]:.2f}x" if n in med else "-" for n in names[1:]]
            print(f"| {tname} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
        print("\n| CPU µs per call/message, server + client (medians) | " + " | ".join(names)
              + " |")
        print("|---" * (1 + len(names)) + "|")
        for tname in tests:
            cells = [f"{statistics.median(cpu[(tname, n)]):.0f}" if (tname, n) in cpu else "-"
                     for n in names]
            print(f"| {tname} | " + " | ".join(cells) + " |")
    finally:
        for p in peers.values():
            await p.close()
        for proc, _ in procs.values():
            proc.terminate()
            proc.wait(5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", choices=list(SERVERS))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--peers", default="wirecall,grpcio,grpclib,wirecall-h2,ngh2-bare")
    ap.add_argument("--all-stream", action="store_true", help="also stream with grpclib")
    ap.add_argument("--profile", choices=["server", "client"], default=None)
    args = ap.parse_args()
    if args.serve:
        if args.serve != "grpcio":  # (wirecall: ngh2 or h2 per its name)
            try:
                import uvloop

                uvloop.install()
            except ImportError:
                pass
        if args.serve == "wirecall" and os.environ.get("WIRECALL_PROFILE"):
            import pyinstrument

            prof = pyinstrument.Profiler(interval=0.0005)
            prof.start()
            import atexit
            import signal

            def dump(*_: Any) -> None:
                prof.stop()
                Path(os.environ["WIRECALL_PROFILE"]).write_text(prof.output_text(unicode=False))
                os._exit(0)

            signal.signal(signal.SIGTERM, dump)
            atexit.register(dump)
        asyncio.run(SERVERS[args.serve]())
        return
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
