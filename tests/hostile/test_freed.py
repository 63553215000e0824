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


async def assert_freed(ref: weakref.ref[Any], what: str) -> None:
    """Wait (bounded) for ``ref`` to die; fail naming what still holds it."""
    for _ in range(50):
        await asyncio.sleep(0.02)
        if ref() is None:
            return
    obj = ref()
    if obj is not None:
        holders = [type(r).__name__ for r in gc.get_referrers(obj)]
        del obj
        pytest.fail(f"{what} is still alive without the cyclic GC (referred to by {holders})")


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


async def _connection_ref(server: wirecall.Server) -> weakref.ref[Any]:
    """A weak reference to the server's one connection object, once it has one (2 s)."""
    conns: list[Any] = []
    for _ in range(100):
        await asyncio.sleep(0.02)
        conns = _connections(server)
        if conns:
            break
    assert len(conns) == 1, f"cannot find the server's connection object: {conns}"
    return weakref.ref(conns[0])


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
            ref = await _connection_ref(server)
            await asyncio.sleep(0.2)  # the server has read (and buffered) what was sent
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            await assert_freed(ref, f"the closed {scheme}:// connection")
    finally:
        await server.close()


async def test_http_connection_handed_to_websocket_is_freed_without_the_cyclic_gc() -> None:
    """The HTTP/1.1 connection object that hands a socket to the WebSocket server drops its
    parser (which holds its bound callbacks) at the hand-off, as it does when it closes.
    (aiohttp's own objects for the WebSocket keep cycles among themselves: docs/limits.md.)"""
    server = wirecall.Server()
    server.register(Svc(), name="Svc")
    [url] = await server.start("ws://127.0.0.1:0/ws")
    host, port = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
    loop = asyncio.get_running_loop()
    try:
        with gc_disabled():
            sock = socket.create_connection((host, int(port)))
            sock.setblocking(False)
            await loop.sock_sendall(sock, b"GET /ws HTTP/1.1\r\nHost: x\r\n")
            ref = await _connection_ref(server)
            await loop.sock_sendall(sock, b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                    b"Sec-WebSocket-Version: 13\r\n\r\n")
            answer = await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
            assert answer.startswith(b"HTTP/1.1 101"), answer[:80]
            sock.close()
            await assert_freed(ref, "the handed-off HTTP connection")
    finally:
        await server.close()


async def test_a_finished_call_task_and_its_result_are_freed_without_the_cyclic_gc() -> None:
    """A call served on a task (an async handler) is freed when it ends: its Context no
    longer holds the task (the task's contextvars hold the Context), so the task and the
    result it keeps (a 3 MB reply here) do not wait for the cyclic GC."""
    tasks: list[weakref.ref[asyncio.Task[Any]]] = []

    class Big:
        async def Blob(self, n: int) -> bytes:
            task = asyncio.current_task()
            assert task is not None
            tasks.append(weakref.ref(task))
            return b"x" * n

    server = wirecall.Server()
    server.register(Big(), name="Big")
    [url] = await server.start("tcp://127.0.0.1:0")
    client = await wirecall.connect(url)
    try:
        with gc_disabled():
            for _ in range(4):
                assert len(await client.call("Big.Blob", 3_000_000, timeout=10)) == 3_000_000
            await asyncio.sleep(0.05)
            alive = [r for r in tasks if r() is not None]
            assert len(tasks) == 4 and not alive, f"{len(alive)} finished call tasks alive"
    finally:
        await client.close()
        await server.close()
