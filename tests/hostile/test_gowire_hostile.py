"""Hostile peers on Go's wires: ``gob://`` (net/rpc) and ``jsonrpc://`` (Go JSON-RPC 1.0 over
TCP), issue #18. gob bytes are built by hand (``hostile.peers.gob_*``, checked against Go's
layout in docs/go-interop.md)."""

from __future__ import annotations

import time

import pytest

from hostile.peers import (
    GOB_REQUEST_TYPEDEF,
    MiB,
    Prober,
    ServerProc,
    assert_served,
    gob_call,
    gob_struct_typedef,
    raw_connect,
    read_until_closed,
    send_for,
)

#: the server's RSS may grow at most this much while one connection misbehaves
ATTACK_RSS_GROWTH = 64 * MiB
#: after the offender has gone, RSS must come back within this of where it started
RSS_MARGIN = 32 * MiB
#: type definitions sent by the gob attacker (the issue saw ~24x this in RSS)
GOB_TYPEDEF_BYTES = 16 * MiB
#: Go JSON-RPC: bytes of an unfinished value buffered before the 1-byte packets start
JSON_BUFFERED = 3 * MiB + MiB // 2
#: ... and the share of wall time the server may spend on CPU while the packets trickle in
JSON_TRICKLE_CPU_SHARE = 0.5
#: replies requested by a peer that never reads (1 MB each), paced over a few seconds
NEVER_READ_CALLS = 300


def _wait_settled(srv: ServerProc, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    last = -1
    while time.monotonic() < deadline and srv.alive():
        time.sleep(0.3)
        now = srv.rss()
        if abs(now - last) < MiB // 2:
            return
        last = now


def test_gob_type_definitions_are_bounded() -> None:
    """16 MB of gob struct type definitions and no call: what the server keeps must be
    bounded (a budget for remembered type definitions; over it the connection closes)."""
    with ServerProc("gob://127.0.0.1:0", "tcp://127.0.0.1:0") as srv, \
            Prober(srv.url("tcp")) as probe, \
            Prober(srv.url("gob"), "Svc.Big", (10,), str) as gob_probe:
        base = srv.settled_rss()
        defs = []
        size, tid = 0, 65
        while size < GOB_TYPEDEF_BYTES:
            d = gob_struct_typedef(
                tid, f"T{tid}".encode(), [f"F{i:07d}".encode() for i in range(200)]
            )
            defs.append(d)
            size += len(d)
            tid += 1
        sock = raw_connect(srv.address("gob"))
        sent, closed = send_for(sock, iter(defs), 10.0)
        _wait_settled(srv, 5.0)
        peak = srv.peak_rss
        alive = srv.alive()
        sock.close()
        reports = probe.stop(), gob_probe.stop()
        assert alive, srv.describe()
        assert peak - base <= ATTACK_RSS_GROWTH, (
            f"{sent / MiB:.1f} MiB of gob type definitions ({tid - 65} types) grew RSS by "
            f"{(peak - base) / MiB:.0f} MiB (bound {ATTACK_RSS_GROWTH / MiB:.0f} MiB); "
            f"connection closed by the server: {closed}"
        )
        assert_served(*reports)
        after = srv.settled_rss()
        assert after - base <= RSS_MARGIN, f"RSS {(after - base) / MiB:.0f} MiB over the start"


def _never_reader(srv: ServerProc, scheme: str, requests: list[bytes]) -> None:
    """A peer on ``scheme`` that sends ``requests`` (paced, 10 ms apart) and never reads."""
    tcp_probe = Prober(srv.url("tcp"))
    wire_probe = (
        Prober(srv.url("gob"), "Svc.Big", (10,), str) if scheme == "gob"
        else Prober(srv.url("jsonrpc"))
    )
    with tcp_probe, wire_probe:
        base = srv.settled_rss()
        sock = raw_connect(srv.address(scheme), rcvbuf=4096)

        def paced() -> object:
            for r in requests:
                yield r
                time.sleep(0.01)

        send_for(sock, paced(), 6.0)  # type: ignore[arg-type]
        _wait_settled(srv, 3.0)
        peak = srv.peak_rss
        alive = srv.alive()
        sock.close()
        reports = tcp_probe.stop(), wire_probe.stop()
        assert alive, srv.describe()
        assert peak - base <= ATTACK_RSS_GROWTH, (
            f"a {scheme}:// peer that never reads grew RSS by {(peak - base) / MiB:.0f} MiB "
            f"(bound {ATTACK_RSS_GROWTH / MiB:.0f} MiB); {reports[0]}; {reports[1]}"
        )
        assert_served(*reports)
        after = srv.settled_rss()
        assert after - base <= RSS_MARGIN, f"RSS {(after - base) / MiB:.0f} MiB over the start"


def test_gob_peer_that_never_reads() -> None:
    with ServerProc("gob://127.0.0.1:0", "tcp://127.0.0.1:0") as srv:
        reqs = [GOB_REQUEST_TYPEDEF + gob_call(1, "Svc.Big", 1_000_000)]
        reqs += [gob_call(i, "Svc.Big", 1_000_000) for i in range(2, NEVER_READ_CALLS + 1)]
        _never_reader(srv, "gob", reqs)


def test_jsonrpc_peer_that_never_reads() -> None:
    with ServerProc("jsonrpc://127.0.0.1:0", "tcp://127.0.0.1:0") as srv:
        reqs = [
            b'{"method":"Svc.Big","params":[1000000],"id":%d}\n' % i
            for i in range(1, NEVER_READ_CALLS + 1)
        ]
        _never_reader(srv, "jsonrpc", reqs)


def test_jsonrpc_unfinished_value_is_not_rescanned() -> None:
    """3.5 MiB of an unfinished JSON value, then 1-byte packets: each packet must cost the
    server little (incremental parsing), and other clients' calls stay fast."""
    with ServerProc("jsonrpc://127.0.0.1:0", "tcp://127.0.0.1:0") as srv, \
            Prober(srv.url("tcp")) as probe, Prober(srv.url("jsonrpc")) as json_probe:
        sock = raw_connect(srv.address("jsonrpc"))
        sock.sendall(b'{"method":"Svc.Echo","params":["' + b"a" * JSON_BUFFERED)
        _wait_settled(srv, 3.0)
        cpu0, t0 = srv.cpu_seconds(), time.monotonic()
        packets = 0
        while time.monotonic() - t0 < 3.0 and srv.alive():
            try:
                sock.send(b"a")
            except OSError:
                break
            packets += 1
            time.sleep(0.005)
        wall = time.monotonic() - t0
        cpu = srv.cpu_seconds() - cpu0
        sock.sendall(b'"],"id":1}\n')
        data, _ = read_until_closed(sock, 3.0, limit=JSON_BUFFERED)
        sock.close()
        reports = probe.stop(), json_probe.stop()
        assert cpu <= JSON_TRICKLE_CPU_SHARE * wall, (
            f"{packets} 1-byte packets after {JSON_BUFFERED / MiB:.1f} MiB buffered cost the "
            f"server {cpu:.1f} s of CPU in {wall:.1f} s ({cpu / max(packets, 1) * 1000:.1f} ms "
            f"each); {reports[0]}"
        )
        assert_served(*reports)
        assert b'"id":1' in data, f"the finished value was not answered: {data[:200]!r}"


@pytest.mark.parametrize("scheme", ["gob", "jsonrpc"])
def test_unfinished_value_has_a_time_limit(scheme: str) -> None:
    """Half a gob message / JSON value, then one byte every 0.3 s (never idle): closed once
    ``limits.frame_timeout`` (1 s here) has passed, while others are served."""
    limit = 1.0
    with ServerProc(f"{scheme}://127.0.0.1:0", "tcp://127.0.0.1:0",
                    limits={"frame_timeout": limit}) as srv, Prober(srv.url("tcp")) as probe:
        sock = raw_connect(srv.address(scheme))
        if scheme == "gob":
            start = GOB_REQUEST_TYPEDEF + bytes([256 - 3]) + (500_000).to_bytes(3, "big")
        else:
            start = b'{"method":"Svc.Echo","params":["'
        sock.sendall(start + b"a" * 1000)
        t0 = time.monotonic()
        closed = False
        while time.monotonic() - t0 < limit + 4.0 and not closed:
            try:
                sock.sendall(b"a")
            except OSError:
                closed = True
                break
            _, closed = read_until_closed(sock, 0.3)
        held = time.monotonic() - t0
        sock.close()
        report = probe.stop()
        assert closed, f"a {scheme}:// connection holding an unfinished value was open after " \
            f"{held:.1f} s (limit {limit} s)"
        assert held < limit + 2.0, f"closed after {held:.1f} s (limit {limit} s)"
        assert_served(report)
