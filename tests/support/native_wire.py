"""Native-wire helpers for tests that speak the frames by hand: a service whose methods all
take the fast lane, raw client prefaces and requests, a blocking reader of replies, and a peer
that completes the handshake and then never answers."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import msgspec

from wirecall import method
from wirecall.protocol import frames as fr

__all__ = [
    "DEC",
    "ENC",
    "Hot",
    "client_preface",
    "raw_requests",
    "read_replies",
    "server_preface",
    "silent_server",
]

ENC = msgspec.msgpack.encode
DEC = msgspec.msgpack.decode


class Hot:
    """Inline handlers: all served by the fast lane."""

    @method(inline=True)
    def Echo(self, s: str) -> str:
        return s

    @method(inline=True)
    def Blob(self, n: int) -> bytes:
        return b"x" * n

    @method(inline=True)
    def Add(self, a: int, b: int) -> int:
        return a + b


def server_preface(codec: int = 1) -> bytes:
    return fr.PREFACE.pack(fr.MAGIC, fr.VERSION, codec, fr.P_ZLIB, fr.DEFAULT_MAX_FRAME)


def raw_requests(calls: list[tuple[int, str, Any]]) -> bytes:
    c = fr.FrameConnection(client=True)
    c.initiate()
    c.data_to_send()
    for cid, m, params in calls:
        c.send_request(cid, m, ENC(params))
    return c.data_to_send()


def client_preface() -> bytes:
    c = fr.FrameConnection(client=True)
    c.initiate()
    return c.data_to_send()


def read_replies(sock: socket.socket, want: int, timeout: float = 10.0) -> list[fr.Event]:
    """Read the server's preface and frames until ``want`` replies/errors arrived."""
    reader = fr.FrameConnection(client=True, max_frame_size=64 * 1024 * 1024)
    reader.initiate()
    got: list[fr.Event] = []
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while sum(isinstance(e, (fr.ResponseReceived, fr.ErrorReceived)) for e in got) < want:
        assert time.monotonic() < deadline, f"only {len(got)} events in time"
        data = sock.recv(1 << 20)
        assert data, "server closed the connection"
        got.extend(reader.receive_data(data))
    return got


def silent_server() -> tuple[socket.socket, list[socket.socket], threading.Thread]:
    """Completes the handshake, then reads and discards everything, never answering."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    held: list[socket.socket] = []

    def run() -> None:
        with_timeout = time.monotonic() + 15
        lsock.settimeout(15)
        try:
            s, _ = lsock.accept()
        except OSError:
            return
        held.append(s)
        conn = fr.FrameConnection(client=False)
        conn.receive_data(s.recv(12))
        s.sendall(conn.data_to_send()[: fr.PREFACE.size])
        s.settimeout(0.5)
        while time.monotonic() < with_timeout:
            try:
                if not s.recv(65536):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return lsock, held, t
