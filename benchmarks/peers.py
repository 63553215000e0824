"""Benchmark peers: the raw reference (length-prefixed msgspec), grpcio, and their clients.

Run as a program: ``python peers.py server raw|grpcio ADDR`` serves; ``python peers.py client
KIND URL MODE SECONDS`` runs one measurement and prints one JSON line
``{"calls": N, "seconds": S, "bytes": B}``. Every client checks every reply.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import sys
import time
from typing import Any

import msgspec

LEN = struct.Struct("!I")
ECHO_SIZE = 64 * 1024


def _uvloop_run(coro: Any) -> Any:
    import uvloop

    return uvloop.run(coro)


# -- the raw reference: [id, method, args] / [id, result], 4-byte length prefix ---------------


class RawServer(asyncio.Protocol):
    """Decodes every complete frame it has, answers all of them with one write."""

    enc = msgspec.msgpack.Encoder()
    dec = msgspec.msgpack.Decoder()

    def connection_made(self, transport: Any) -> None:
        self.t = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        off, n, out = 0, len(buf), []
        enc, dec = self.enc.encode, self.dec.decode
        while n - off >= 4:
            (ln,) = LEN.unpack_from(buf, off)
            if n - off - 4 < ln:
                break
            cid, method, args = dec(buf[off + 4 : off + 4 + ln])
            off += 4 + ln
            res = args["A"] + args["B"] if method == "Calculator.Add" else args
            body = enc([cid, res])
            out.append(LEN.pack(len(body)))
            out.append(body)
        self.buf = buf[off:]
        if out:
            self.t.write(b"".join(out))


class RawClient(asyncio.Protocol):
    """Pending-futures table, frames written in one loop iteration coalesced into one write."""

    def __init__(self) -> None:
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.next = 0
        self.out: list[bytes] = []
        self.buf = b""
        self.enc = msgspec.msgpack.Encoder()
        self.dec = msgspec.msgpack.Decoder()
        self.loop = asyncio.get_event_loop()

    def connection_made(self, transport: Any) -> None:
        self.t = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        off, n = 0, len(buf)
        while n - off >= 4:
            (ln,) = LEN.unpack_from(buf, off)
            if n - off - 4 < ln:
                break
            cid, res = self.dec.decode(buf[off + 4 : off + 4 + ln])
            off += 4 + ln
            self.pending.pop(cid).set_result(res)
        self.buf = buf[off:]

    def flush(self) -> None:
        self.t.write(b"".join(self.out))
        self.out.clear()

    async def call(self, method: str, args: Any) -> Any:
        self.next += 1
        cid = self.next
        body = self.enc.encode([cid, method, args])
        if not self.out:
            self.loop.call_soon(self.flush)
        self.out.append(LEN.pack(len(body)))
        self.out.append(body)
        fut = self.loop.create_future()
        self.pending[cid] = fut
        return await fut


def raw_blocking(host: str, port: int, seconds: float) -> dict[str, Any]:
    s = socket.create_connection((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    enc, dec = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder()
    calls = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    args = {"A": 10, "B": 5}
    while time.perf_counter() < end:
        body = enc.encode([calls, "Calculator.Add", args])
        s.sendall(LEN.pack(len(body)) + body)
        hdr = s.recv(4, socket.MSG_WAITALL)
        (ln,) = LEN.unpack(hdr)
        cid, res = dec.decode(s.recv(ln, socket.MSG_WAITALL))
        assert res == 15 and cid == calls
        calls += 1
    return {"calls": calls, "seconds": time.perf_counter() - t0}


def wire_floor(host: str, port: int, seconds: float) -> dict[str, Any]:
    """The cheapest possible blocking client of wirecall's *server*: its framing by hand, no
    thread safety, no pending table, no checks beyond the answer. Not a usable client: the
    bound any sync client can reach against the wirecall server (see README)."""
    hdr = struct.Struct("!IBBHI")
    s = socket.create_connection((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(struct.pack("!4sBBHI", b"WRPC", 1, 1, 0, 1 << 22))
    s.recv(12, socket.MSG_WAITALL)
    enc, dec = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder()
    prefix = b"\x00\x0eCalculator.Add"
    args = {"A": 10, "B": 5}
    calls = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        body = prefix + enc.encode([args])
        s.sendall(hdr.pack(len(body), 1, 0, 0, calls + 1) + body)
        ln, _ftype, _flags, _res, cid = hdr.unpack(s.recv(12, socket.MSG_WAITALL))
        res = dec.decode(s.recv(ln, socket.MSG_WAITALL))
        assert res == 15 and cid == calls + 1
        calls += 1
    return {"calls": calls, "seconds": time.perf_counter() - t0}


# -- grpcio asyncio, generic handler with msgpack bodies -----------------------------------------


def _grpc_handlers() -> Any:
    import grpc

    def add(req: Any, ctx: Any) -> Any:
        return req["A"] + req["B"]

    async def aadd(req: Any, ctx: Any) -> Any:
        return req["A"] + req["B"]

    handler = grpc.unary_unary_rpc_method_handler(
        aadd, request_deserializer=msgspec.msgpack.decode,
        response_serializer=msgspec.msgpack.encode,
    )
    del add
    return grpc.method_handlers_generic_handler("Calculator", {"Add": handler})


async def grpc_server(addr: str) -> None:
    import grpc

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_grpc_handlers(),))
    port = server.add_insecure_port(addr)
    await server.start()
    print(f"listening on grpc://127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


async def raw_server(addr: str) -> None:
    host, port = addr.rsplit(":", 1)
    srv = await asyncio.get_running_loop().create_server(RawServer, host, int(port))
    print(f"listening on tcp://127.0.0.1:{srv.sockets[0].getsockname()[1]}", flush=True)
    await srv.serve_forever()


# -- measurement loops ---------------------------------------------------------------------------


async def _loop_clients(call: Any, mode: str, seconds: float, payload: Any,
                        check: Any) -> dict[str, Any]:
    workers = 64 if mode == "inflight64" else 1
    calls = 0
    end = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal calls
        while time.perf_counter() < end:
            r = await call(payload)
            if not check(r):
                raise SystemExit(f"bad reply {r!r}")
            calls += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return {"calls": calls, "seconds": time.perf_counter() - t0}


async def client(kind: str, url: str, mode: str, seconds: float) -> dict[str, Any]:
    hostport = url.split("://", 1)[1]
    host, port = hostport.rsplit(":", 1)
    echo = mode == "echo64k"
    payload: Any = b"x" * ECHO_SIZE if echo else {"A": 10, "B": 5}

    def check(r: Any) -> bool:
        return (len(r) == ECHO_SIZE) if echo else r == 15

    if kind == "raw":
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(RawClient, host, int(port))
        method = "Echo" if echo else "Calculator.Add"
        res = await _loop_clients(lambda p: proto.call(method, p), mode, seconds, payload, check)
    elif kind == "grpcio":
        import grpc

        ch = grpc.aio.insecure_channel(hostport)
        stub = ch.unary_unary("/Calculator/Add", request_serializer=msgspec.msgpack.encode,
                              response_deserializer=msgspec.msgpack.decode)
        res = await _loop_clients(stub, mode, seconds, payload, check)
        await ch.close()
    elif kind == "wirecall":
        import wirecall
        from wirecall.tutorial.calculator import Args

        c = await wirecall.connect(url)
        if echo:
            res = await _loop_clients(lambda p: c.call("Bench.Echo", p), mode, seconds, payload,
                                      check)
        else:
            args = Args(10, 5)
            call = c.call
            res = await _loop_clients(lambda p: call("Calculator.Add", args), mode, seconds,
                                      payload, check)
        await c.close()
    else:
        raise SystemExit(f"unknown client {kind}")
    if echo:
        res["bytes"] = res["calls"] * ECHO_SIZE * 2
    return res


def sync_client(kind: str, url: str, seconds: float) -> dict[str, Any]:
    if kind == "wire-floor":
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        return wire_floor(host, int(port), seconds)
    if kind == "raw-blocking":
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        return raw_blocking(host, int(port), seconds)
    import wirecall.sync
    from wirecall.tutorial.calculator import Args

    c = wirecall.sync.connect(url)
    args = Args(10, 5)
    calls = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        assert c.call("Calculator.Add", args) == 15
        calls += 1
    c.close()
    return {"calls": calls, "seconds": time.perf_counter() - t0}


def main(argv: list[str]) -> None:
    if argv[0] == "server":
        kind, addr = argv[1], argv[2]
        _uvloop_run(raw_server(addr) if kind == "raw" else grpc_server(addr))
    elif argv[0] == "client":
        kind, url, mode, secs = argv[1], argv[2], argv[3], float(argv[4])
        if kind in ("raw-blocking", "wirecall-sync", "wire-floor"):
            res = sync_client(kind, url, secs)
        elif kind == "grpcio":
            res = asyncio.run(client(kind, url, mode, secs))  # grpc.aio brings its own loop
        else:
            res = _uvloop_run(client(kind, url, mode, secs))
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
