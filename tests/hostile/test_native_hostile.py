"""Hostile peers on the native protocol (``tcp://``, docs/protocol.md), issue #18.

Each test runs the server in a subprocess (``hostile.peers.ServerProc``), a well-behaved
client calling every 50 ms alongside (``Prober``), and one attacker speaking raw frames.
"""

from __future__ import annotations

import time

import pytest

from hostile.peers import (
    F_END_STREAM,
    F_STREAM,
    N_ERROR,
    N_PING,
    N_RESPONSE,
    N_SETTINGS,
    N_WINDOW_UPDATE,
    MiB,
    Prober,
    ServerProc,
    SocketReader,
    assert_served,
    drain,
    msgpack_array,
    native_close_reason,
    native_frame,
    native_preface,
    native_request,
    parse_native,
    raw_connect,
    read_until_closed,
    send_for,
    stats,
)

TCP = "tcp://127.0.0.1:0"
#: the server's RSS may grow at most this much while one connection misbehaves
ATTACK_RSS_GROWTH = 64 * MiB
#: after the offender has gone, RSS must come back within this of where it started
RSS_MARGIN = 32 * MiB
#: RSS after the last round of hostile connections vs after the first (warm-up) round
ROUND_MARGIN = 48 * MiB
#: a connection holding an unfinished frame must be closed within this many seconds
UNFINISHED_FRAME_LIMIT = 10.0
#: the per-connection call limit of the reference server (docs/protocol.md, "Limits")
MAX_CALLS = 1024


def test_window_update_max_on_unread_stream() -> None:
    """One WINDOW_UPDATE of 2^32-1 on a server stream that is never read: the server must
    not produce without bound (credit larger than a stream may buffer is clamped)."""
    with ServerProc(TCP) as srv, Prober(srv.url("tcp")) as probe:
        base = srv.settled_rss()
        sock = raw_connect(srv.address("tcp"), rcvbuf=4096)
        sock.sendall(
            native_preface()
            + native_request(1, "Svc.Flood", msgpack_array(65536), F_STREAM | F_END_STREAM)
            + native_frame(N_WINDOW_UPDATE, 0, 1, (2**32 - 1).to_bytes(4, "big"))
        )
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and srv.alive():
            time.sleep(0.1)
        peak = srv.peak_rss
        alive = srv.alive()
        sock.close()
        report = probe.stop()
        assert alive, f"the server died: {srv.describe()}"
        assert peak - base <= ATTACK_RSS_GROWTH, (
            f"RSS grew {(peak - base) / MiB:.0f} MiB for one unread stream "
            f"(bound {ATTACK_RSS_GROWTH / MiB:.0f} MiB); {report}"
        )
        assert_served(report)
        after = srv.settled_rss()
        assert after - base <= RSS_MARGIN, f"RSS {(after - base) / MiB:.0f} MiB over the start"


def test_reused_call_id_in_flight_is_a_protocol_error() -> None:
    """40,000 REQUESTs all carrying call id 7 while call 7 is in flight must not all run:
    reusing the id of a call in flight closes the connection with a GOAWAY."""
    with ServerProc(TCP) as srv, Prober(srv.url("tcp")) as probe:
        base = srv.settled_rss()
        sock = raw_connect(srv.address("tcp"))
        frame = native_request(7, "Svc.Hold", msgpack_array(2.0))
        reader = SocketReader(sock, 3.0)
        send_for(sock, iter([native_preface(), frame * 40_000]), 2.5)
        time.sleep(0.5)
        running = stats(srv.url("tcp"))
        reader.join()
        peak = srv.peak_rss
        sock.close()
        report = probe.stop()
        frames = parse_native(reader.data)
        assert running["started"] <= MAX_CALLS, (
            f"{running['started']} calls with one call id started (limit {MAX_CALLS}); "
            f"peak RSS +{(peak - base) / MiB:.0f} MiB"
        )
        assert running["started"] <= 1, f"a reused call id ran again: {running}"
        assert native_close_reason(frames), (
            f"no GOAWAY with a status; got {[(f.ftype, f.call_id) for f in frames[:5]]}"
        )
        assert reader.closed, "the connection reusing a call id was not closed"
        assert peak - base <= ATTACK_RSS_GROWTH, f"RSS +{(peak - base) / MiB:.0f} MiB"
        assert_served(report)


def test_call_id_zero_is_refused() -> None:
    """docs/protocol.md: call ids are non-zero. A REQUEST with id 0 is refused (an ERROR
    with a status, or a GOAWAY with a status), never run and answered."""
    with ServerProc(TCP) as srv, Prober(srv.url("tcp")) as probe:
        sock = raw_connect(srv.address("tcp"))
        t0 = time.monotonic()
        sock.sendall(native_preface() + native_request(0, "Svc.Echo", msgpack_array(5)))
        data, _ = read_until_closed(sock, 2.0)
        sock.close()
        # a close is an accepted answer and may come at once: the well-behaved client still
        # gets its 2 s alongside (assert_served needs enough calls to judge)
        time.sleep(max(0.0, 2.0 - (time.monotonic() - t0)))
        report = probe.stop()
        frames = parse_native(data)
        answered = [f for f in frames if f.ftype == N_RESPONSE and f.call_id == 0]
        refused = [f for f in frames if f.ftype == N_ERROR and f.call_id == 0 and f.error()[0]]
        assert not answered, f"call id 0 was run and answered: {answered}"
        assert refused or native_close_reason(frames), (
            f"call id 0 was not refused with a status: {frames}"
        )
        assert_served(report)


def test_unknown_method_names_are_not_remembered() -> None:
    """Rounds of connections calling thousands of distinct 40 KB unknown method names: once
    each connection has closed, RSS must not keep the names (it grew ~2x their size per
    round, server-wide)."""
    rounds, per_round, name_len = 4, 600, 40_000
    with ServerProc(TCP) as srv, Prober(srv.url("tcp")) as probe:
        after: list[int] = []
        for r in range(rounds):
            sock = raw_connect(srv.address("tcp"))
            frames = b"".join(
                native_request(i + 1, f"Nope{r}x{i}.".encode().ljust(name_len, b"m"))
                for i in range(per_round)
            )
            reader = SocketReader(sock, 20.0, native_frames=per_round)
            send_for(sock, iter([native_preface(), frames]), 20.0)
            reader.join()
            sock.close()
            answers = [f for f in parse_native(reader.data) if f.ftype == N_ERROR]
            assert len(answers) == per_round, (
                f"round {r}: {len(answers)} answers, closed={reader.closed}, "
                f"{len(reader.data)} bytes; {srv.describe()}"
            )
            after.append(srv.settled_rss())
        report = probe.stop()
        growth = after[-1] - after[0]
        assert growth <= ROUND_MARGIN, (
            f"RSS after each round (MiB): {[a // MiB for a in after]}: +{growth / MiB:.0f} "
            f"MiB after the first round (margin {ROUND_MARGIN / MiB:.0f} MiB)"
        )
        assert_served(report)


def test_closed_connections_freed_without_gc() -> None:
    """32 connections holding 4 MB unfinished frames, closed, three rounds, in a server whose
    cyclic GC is disabled: a closed connection must be freed by reference counting alone
    (no reference cycle), so RSS after the third round is where it was after the first."""
    rounds, conns, held = 3, 32, 4 * MiB - 64 * 1024
    with ServerProc(TCP, gc_disabled=True) as srv, Prober(srv.url("tcp")) as probe:
        assert stats(srv.url("tcp"))["gc_enabled"] is False
        # a REQUEST header announcing 4 MiB - 1 bytes (under the 4 MiB limit), call id 1
        header = (4 * MiB - 1).to_bytes(4, "big") + bytes([1, 0, 0, 0, 0, 0, 0, 1])
        after: list[int] = []
        for _ in range(rounds):
            socks = [raw_connect(srv.address("tcp")) for _ in range(conns)]
            for s in socks:
                s.sendall(native_preface() + header + b"\0" * 2 + b"a" * (held - 2))
            time.sleep(0.5)
            for s in socks:
                drain(s, 0.01)
                s.close()
            after.append(srv.settled_rss())
        report = probe.stop()
        growth = after[-1] - after[0]
        assert growth <= ROUND_MARGIN, (
            f"RSS after each round (MiB): {[a // MiB for a in after]}: closed connections "
            f"kept +{growth / MiB:.0f} MiB without the cyclic GC (margin "
            f"{ROUND_MARGIN / MiB:.0f} MiB)"
        )
        assert_served(report)


def test_unfinished_frame_has_a_time_limit() -> None:
    """A connection that sends half a frame and then trickles one byte every 0.5 s (so it
    is never idle) is closed within UNFINISHED_FRAME_LIMIT, with a GOAWAY saying why."""
    with ServerProc(TCP) as srv, Prober(srv.url("tcp")) as probe:
        sock = raw_connect(srv.address("tcp"))
        body = msgpack_array(1)
        frame = native_request(1, "Svc.Echo", body + b"\0" * 1_000_000)
        sock.sendall(native_preface() + frame[: len(frame) // 2])
        t0 = time.monotonic()
        data = bytearray()
        closed = False
        i = len(frame) // 2
        while time.monotonic() - t0 < UNFINISHED_FRAME_LIMIT + 2.0 and not closed:
            try:
                sock.sendall(frame[i : i + 1])
            except OSError:
                closed = True
                break
            i += 1
            chunk, closed = read_until_closed(sock, 0.5)
            data += chunk
        held_for = time.monotonic() - t0
        sock.close()
        report = probe.stop()
        assert closed, f"a connection holding an unfinished frame was open after {held_for:.1f} s"
        assert native_close_reason(parse_native(bytes(data))), (
            f"closed without a GOAWAY status: {parse_native(bytes(data))}"
        )
        assert_served(report)


def test_pipelined_flood_does_not_stall_others() -> None:
    """One connection pipelining 200,000 requests (and reading its answers) must not stall
    the event loop for the others: work from one connection is bounded per loop turn."""
    with ServerProc(TCP) as srv, Prober(srv.url("tcp")) as probe:
        sock = raw_connect(srv.address("tcp"))
        req = native_request(1, "Svc.Echo", msgpack_array(7))
        reader = SocketReader(sock, 15.0, native_frames=200_000)
        send_for(sock, iter([native_preface()] + [req * 20_000] * 10), 12.0)
        reader.join()
        sock.close()
        report = probe.stop()
        answers = sum(1 for f in parse_native(reader.data) if f.ftype == N_RESPONSE)
        assert answers == 200_000, f"{answers} of 200000 answered"
        assert srv.alive()
        assert_served(report)


@pytest.mark.parametrize("ftype", [N_PING, N_SETTINGS], ids=["ping", "settings"])
def test_control_frame_flood_is_closed(ftype: int) -> None:
    """PING (each answered) or SETTINGS (ignored) frames cost the sender nothing: past
    limits.max_control_frames_per_second the connection gets a GOAWAY naming the budget."""
    with ServerProc(TCP) as srv, Prober(srv.url("tcp")) as probe:
        sock = raw_connect(srv.address("tcp"))
        payload = b"hostile!" if ftype == N_PING else b""
        flood = native_frame(ftype, 0, 0, payload) * 5000
        reader = SocketReader(sock, 4.0, done=lambda d: native_close_reason(parse_native(d))
                              is not None)
        t0 = time.monotonic()
        sent, _ = send_for(sock, iter([native_preface()] + [flood] * 20), 3.0)
        reader.join()
        sock.close()
        time.sleep(max(0.0, 1.5 - (time.monotonic() - t0)))  # the probe's calls alongside
        report = probe.stop()
        reason = native_close_reason(parse_native(reader.data))
        assert reason and "max_control_frames_per_second" in reason, (
            f"{sent // len(native_frame(ftype, 0, 0, payload))} frames sent: {reason}")
        assert_served(report)


def test_unsent_bytes_over_the_budget_abort_the_connection() -> None:
    """A peer that never reads while replies of calls it already made keep coming: past
    limits.max_unsent_bytes (1 MiB here) the connection is aborted, the memory given back."""
    with ServerProc(TCP, limits={"max_unsent_bytes": MiB}) as srv, \
            Prober(srv.url("tcp")) as probe:
        base = srv.settled_rss()
        sock = raw_connect(srv.address("tcp"), rcvbuf=4096)
        reqs = b"".join(native_request(i, "Svc.Big", msgpack_array(3_000_000))
                        for i in range(1, 11))
        sock.sendall(native_preface() + reqs)
        closed = False
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0 and not closed:
            time.sleep(0.1)
            try:  # a reset shows on the next write
                sock.send(native_frame(N_PING, 0, 0, b"12345678"))
            except OSError:
                closed = True
        sock.close()
        report = probe.stop()
        assert closed, "a connection holding 3 MB of unread replies (budget 1 MiB) was not closed"
        assert srv.peak_rss - base <= ATTACK_RSS_GROWTH, f"RSS +{(srv.peak_rss - base) / MiB:.0f}"
        assert_served(report)
