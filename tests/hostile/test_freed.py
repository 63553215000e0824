"""A closed connection is freed by reference counting alone (issue #18): no reference cycle
between a connection's objects, so its buffers go the moment it closes, not whenever the
cyclic garbage collector runs.

In-process: the server runs on this test's loop with the cyclic GC disabled; a raw client
leaves an unfinished frame (or value) of 256 KiB, closes, and a weak reference to the
server's connection object (found in its listener) must die without ``gc.collect()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import struct
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

import wirecall
from hostile.peers import GOB_REQUEST_TYPEDEF, H2_PREFACE, h2_frame, native_preface

HELD = 256 * 1024


class Svc:
    @wirecall.method(inline=True)
    def Echo(self, x: Any) -> Any:
        return x


@contextlib.contextmanager
def gc_disabled() -> Iterator[None]:
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _unfinished(scheme: str) -> bytes:
    """A valid start, then an unfinished frame/value of about HELD bytes."""
    if scheme == "tcp":
        return (native_preface() + struct.pack("!IBBHI", HELD + 100, 1, 0, 0, 1)
                + b"\0\x08Svc.Echo" + b"a" * HELD)
    if scheme == "gob":
        return GOB_REQUEST_TYPEDEF + bytes([256 - 4]) + (HELD + 100).to_bytes(4, "big") \
            + b"a" * HELD
    if scheme == "jsonrpc":
        return b'{"method":"Svc.Echo","params":["' + b"a" * HELD
    if scheme == "http":
        return (b"POST /jsonrpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % (HELD + 100)) + b"[" + b"1," * (HELD // 2)
    assert scheme == "grpc"
    return H2_PREFACE + h2_frame(4, 0, 0) + h2_frame(0, 0, 1, b"a" * 16000)[:12000]


def _connections(server: wirecall.Server) -> list[Any]:
    out: list[Any] = []
    for lst in server.listeners:
        for attr in ("connections", "_connections"):
            conns = getattr(lst, attr, None)
            if conns is None:
                svc = getattr(lst, "service", None) or getattr(lst, "svc", None)
                conns = getattr(svc, attr, None)
            if conns:
                out.extend(conns)
    return out


@pytest.mark.parametrize("scheme", ["tcp", "gob", "jsonrpc", "http", "grpc"])
async def test_closed_connection_is_freed_without_the_cyclic_gc(scheme: str) -> None:
    server = wirecall.Server()
    server.register(Svc(), name="Svc")
    [url] = await server.start(f"{scheme}://127.0.0.1:0")
    host, port = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
    loop = asyncio.get_running_loop()
    try:
        with gc_disabled():
            sock = socket.create_connection((host, int(port)))
            sock.setblocking(False)
            await loop.sock_sendall(sock, _unfinished(scheme))
            conns: list[Any] = []
            for _ in range(100):
                await asyncio.sleep(0.02)
                conns = _connections(server)
                if conns:
                    break
            assert len(conns) == 1, f"cannot find the server's connection object: {conns}"
            ref = weakref.ref(conns[0])
            del conns
            await asyncio.sleep(0.2)  # the server has read (and buffered) what was sent
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            for _ in range(50):
                await asyncio.sleep(0.02)
                if ref() is None:
                    break
            obj = ref()
            if obj is not None:
                holders = [type(r).__name__ for r in gc.get_referrers(obj)]
                del obj
                pytest.fail(f"the closed {scheme}:// connection is still alive without the "
                            f"cyclic GC (referred to by {holders})")
    finally:
        await server.close()
