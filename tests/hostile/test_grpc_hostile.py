"""Hostile peers on gRPC (``grpc://``, raw HTTP/2 frames), issue #18: the budgets for an
unfinished frame (``limits.frame_timeout``) and for replies a peer leaves unsent
(``limits.max_unsent_bytes``), on both HTTP/2 backends of the gRPC core (ngh2, h2).

Each test runs the server in a subprocess (``hostile.peers.ServerProc``) with a well-behaved
gRPC client calling every 50 ms alongside (``Prober``) and one attacker speaking raw HTTP/2
(frames from RFC 9113, header blocks as HPACK literals without Huffman coding, RFC 7541).
"""

from __future__ import annotations

import contextlib
import struct
import time
from collections.abc import Callable

import pytest

from hostile.peers import (
    H2_ENHANCE_YOUR_CALM,
    H2_GOAWAY,
    H2_HEADERS,
    H2_PING,
    H2_PREFACE,
    H2_SETTINGS,
    H2_WINDOW_UPDATE,
    MiB,
    Prober,
    ServerProc,
    SocketReader,
    assert_served,
    h2_frame,
    msgpack_array,
    parse_h2,
    raw_connect,
    read_until_closed,
)

GRPC = "grpc://127.0.0.1:0"
BACKENDS = ["ngh2", "h2"]
H2_DATA, H2_CONTINUATION = 0, 9
F_END_STREAM, F_END_HEADERS = 0x1, 0x4
#: the server's ``limits.frame_timeout`` in these tests (default 10 s)
FRAME_TIMEOUT = 1.0
#: the server's ``limits.max_unsent_bytes`` in these tests (default 128 MiB)
MAX_UNSENT = 4 * MiB
#: the server's RSS may grow at most this much while one connection misbehaves
ATTACK_RSS_GROWTH = 64 * MiB
#: after the offender has gone, RSS must come back within this of where it started
RSS_MARGIN = 32 * MiB


def _literal(name: bytes, value: bytes) -> bytes:
    """An HPACK literal header field without indexing, new name, no Huffman (< 127 bytes)."""
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def _request_block(method: str) -> bytes:
    return b"".join(_literal(k, v) for k, v in [
        (b":method", b"POST"), (b":scheme", b"http"), (b":path", f"/Svc/{method}".encode()),
        (b":authority", b"127.0.0.1"), (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ])


def _message(payload: bytes, length: int | None = None) -> bytes:
    """A gRPC length-prefixed message (``length``: what the prefix claims)."""
    return b"\x00" + struct.pack("!I", len(payload) if length is None else length) + payload


def _goaway(data: bytes) -> tuple[int, str] | None:
    """(error code, debug text) of the first GOAWAY in ``data`` (after the server's frames
    start: the server sends no preface of its own besides SETTINGS)."""
    for ftype, _, _, payload in parse_h2(data):
        if ftype == H2_GOAWAY and len(payload) >= 8:
            return int(struct.unpack_from("!I", payload, 4)[0]), payload[8:].decode("latin-1")
    return None


def _server(backend: str, **limits: float) -> ServerProc:
    return ServerProc(GRPC, limits=limits, options={"http2_backend": backend})


#: what each unfinishing attacker of the frame-timeout test leaves unfinished
UNFINISHED = ("frame", "header block", "message")


def _unfinished_start(kind: str) -> tuple[bytes, Callable[[], bytes] | None]:
    """The first bytes of an attacker leaving ``kind`` unfinished, and what it trickles
    every 0.25 s (None: nothing, it sits in the middle of a header block)."""
    start = H2_PREFACE + h2_frame(H2_SETTINGS, 0, 0)
    if kind == "header block":  # HEADERS without END_HEADERS; the CONTINUATION never comes
        return start + h2_frame(H2_HEADERS, 0, 1, _request_block("Echo")[:20]), None
    start += h2_frame(H2_HEADERS, F_END_HEADERS, 1, _request_block("Echo"))
    if kind == "frame":  # half a DATA frame, then one byte at a time
        frame = h2_frame(H2_DATA, F_END_STREAM, 1, _message(b"\0" * 9000))
        rest = iter(frame[5000:])
        return start + frame[:5000], lambda: bytes([next(rest)])
    # a message announcing 50,000 bytes, then complete 1-byte DATA frames
    return (start + h2_frame(H2_DATA, 0, 1, _message(b"\x91\x01", length=50_000)),
            lambda: h2_frame(H2_DATA, 0, 1, b"x"))


def _progressing_schedule() -> list[bytes]:
    """A peer that is always in the middle of something but finishes each message within
    half the time limit: unary calls on streams 1, 3, 5, each message sent in two
    halves 0.45 time limits apart (what it sends at each step)."""
    msg = _message(msgpack_array(7))
    steps = [H2_PREFACE + h2_frame(H2_SETTINGS, 0, 0)]
    for sid in (1, 3, 5):
        steps[-1] += (h2_frame(H2_HEADERS, F_END_HEADERS, sid, _request_block("Echo"))
                      + h2_frame(H2_DATA, 0, sid, msg[:3]))
        steps.append(h2_frame(H2_DATA, F_END_STREAM, sid, msg[3:]))
    return steps


@pytest.mark.parametrize("backend", BACKENDS)
def test_grpc_unfinished_frame_has_a_time_limit(backend: str) -> None:
    """Three peers start something and never finish it, while trickling bytes so that they
    are never idle: half a DATA frame then one byte every 0.25 s ("frame"), a HEADERS
    frame without END_HEADERS and no CONTINUATION ("header block"), a gRPC message whose
    prefix announces 50,000 bytes, then one byte per complete DATA frame every 0.25 s
    ("message"). Within two ``limits.frame_timeout`` each gets GOAWAY ENHANCE_YOUR_CALM
    saying what it did not complete, and is closed. A fourth peer, always in the middle of
    a message but finishing each one within half the limit, is served whole."""
    with _server(backend, frame_timeout=FRAME_TIMEOUT) as srv, \
            Prober(srv.url("grpc")) as probe:
        base = srv.settled_rss()
        attackers = []
        for kind in UNFINISHED:
            sock = raw_connect(srv.address("grpc"))
            first, trickle = _unfinished_start(kind)
            reader = SocketReader(sock, 2 * FRAME_TIMEOUT + 3.0,
                                  done=lambda d: _goaway(d) is not None)
            sock.sendall(first)
            attackers.append((kind, sock, trickle, reader))
        steady = raw_connect(srv.address("grpc"))
        steps = _progressing_schedule()
        n_steps = len(steps)
        steady_reader = SocketReader(steady, 6 * 0.45 * FRAME_TIMEOUT + 2.0)
        t0 = time.monotonic()
        ticks = 0
        while time.monotonic() - t0 < 2 * FRAME_TIMEOUT + 2.0 and (
                steps or any(r.is_alive() for *_, r in attackers)):
            time.sleep(0.05)
            ticks += 1
            for _, sock, trickle, reader in attackers:
                if trickle is not None and reader.is_alive() and ticks % 5 == 0:
                    with contextlib.suppress(OSError):
                        sock.sendall(trickle())
            due = int((time.monotonic() - t0) / (0.45 * FRAME_TIMEOUT)) + 1
            while steps and n_steps - len(steps) < due:
                steady.sendall(steps.pop(0))
        outcomes = []
        for kind, sock, _, reader in attackers:
            reader.join()
            data, closed = reader.data, reader.closed
            if not closed:
                more, closed = read_until_closed(sock, 2.0)
                data += more
            sock.close()
            outcomes.append((kind, _goaway(data), closed))
        steady_reader.join()
        steady.close()
        report = probe.stop()
        ended = srv.settled_rss()
        for kind, goaway, closed in outcomes:
            what = "gRPC message" if kind == "message" else f"HTTP/2 {kind}"
            assert goaway == (
                H2_ENHANCE_YOUR_CALM, f"{what} not completed within 1s (limits.frame_timeout)"
            ), (kind, goaway, report)
            assert closed, f"the connection holding an unfinished {kind} was not closed"
        served = parse_h2(steady_reader.data)
        assert _goaway(steady_reader.data) is None, _goaway(steady_reader.data)
        ended_calls = {sid for ftype, flags, sid, _ in served
                       if ftype == H2_HEADERS and flags & F_END_STREAM}
        assert ended_calls == {1, 3, 5}, served
        assert srv.peak_rss - base <= ATTACK_RSS_GROWTH
        assert ended - base <= RSS_MARGIN, f"RSS +{(ended - base) / MiB:.0f} MiB at the end"
        assert_served(report)


def _big_requests(n: int, size: int) -> bytes:
    """``n`` unary calls of ``Svc.Big(size)`` (each answered with ~``size`` bytes)."""
    body = _message(msgpack_array(size))
    return b"".join(
        h2_frame(H2_HEADERS, F_END_HEADERS, 2 * i + 1, _request_block("Big"))
        + h2_frame(H2_DATA, F_END_STREAM, 2 * i + 1, body)
        for i in range(n)
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_grpc_unsent_replies_past_the_budget_get_goaway(backend: str) -> None:
    """A peer that reads its socket but grants no flow-control window (stream windows set
    to 0 by SETTINGS) while calling for 1 MB replies: they wait on its streams; past
    ``limits.max_unsent_bytes`` (4 MiB here) it gets GOAWAY ENHANCE_YOUR_CALM naming the
    budget and is closed, the queued replies dropped."""
    with _server(backend, max_unsent_bytes=MAX_UNSENT) as srv, \
            Prober(srv.url("grpc")) as probe:
        base = srv.settled_rss()
        sock = raw_connect(srv.address("grpc"))
        zero_window = h2_frame(H2_SETTINGS, 0, 0, struct.pack("!HI", 4, 0))
        reader = SocketReader(sock, 8.0, done=lambda d: _goaway(d) is not None)
        sock.sendall(H2_PREFACE + zero_window + _big_requests(12, 1_000_000))
        reader.join()
        data, closed = reader.data, reader.closed
        if not closed:
            more, closed = read_until_closed(sock, 2.0)
            data += more
        sock.close()
        report = probe.stop()
        ended = srv.settled_rss()
        goaway = _goaway(data)
        assert goaway is not None, f"no GOAWAY for 12 MB of replies held unsent; {report}"
        code, text = goaway
        assert code == H2_ENHANCE_YOUR_CALM, goaway
        assert text.startswith(f"more than {MAX_UNSENT} bytes of replies unsent "
                               "(limits.max_unsent_bytes)"), text
        assert closed, "the connection was not closed after its GOAWAY"
        assert srv.peak_rss - base <= ATTACK_RSS_GROWTH
        assert ended - base <= RSS_MARGIN, f"RSS +{(ended - base) / MiB:.0f} MiB at the end"
        assert_served(report)


@pytest.mark.parametrize("backend", BACKENDS)
def test_grpc_peer_that_never_reads_is_aborted_past_the_budget(backend: str) -> None:
    """A peer granting every window there is (2^31-1) that never reads its socket. The
    server stops reading it once its write buffer is over the high-water mark, so what
    piles up are the replies of calls admitted before: here one 3 MB reply, past
    ``limits.max_unsent_bytes`` (1 MiB here). The connection is aborted (it would not read
    a GOAWAY) and the memory given back."""
    with _server(backend, max_unsent_bytes=MiB) as srv, \
            Prober(srv.url("grpc")) as probe:
        base = srv.settled_rss()
        sock = raw_connect(srv.address("grpc"), rcvbuf=4096)
        huge = h2_frame(H2_SETTINGS, 0, 0, struct.pack("!HI", 4, 2**31 - 1))
        conn_window = h2_frame(H2_WINDOW_UPDATE, 0, 0, struct.pack("!I", 2**31 - 1 - 65535))
        sock.sendall(H2_PREFACE + huge + conn_window + _big_requests(3, 3_000_000))
        closed = False
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5.0 and not closed:
            time.sleep(0.1)
            try:  # a reset shows on the next write
                sock.send(h2_frame(H2_PING, 0, 0, b"12345678"))
            except OSError:
                closed = True
        sock.close()
        report = probe.stop()
        ended = srv.settled_rss()
        assert closed, "a connection holding 3 MB of unread replies (budget 1 MiB) was open"
        assert srv.peak_rss - base <= ATTACK_RSS_GROWTH
        assert ended - base <= RSS_MARGIN, f"RSS +{(ended - base) / MiB:.0f} MiB at the end"
        assert_served(report)
