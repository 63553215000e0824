"""Hostile peers on WebSocket (``ws://``): JSON-RPC 2.0 batches and stream credit, issue #18.

The offender speaks raw JSON-RPC over aiohttp's WebSocket client; the server runs in a
subprocess (:class:`~hostile.peers.ServerProc`) with well-behaved clients calling alongside.
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from hostile.peers import MiB, Prober, ServerProc, assert_served, collect, stats

#: the per-connection call limit (``Server(max_concurrent_calls=...)``, default 1024)
MAX_CALLS = 1024
#: calls in one batch sent on a WebSocket with nothing in flight
BATCH_CALLS = 2000
#: the default ``Limits.max_stream_credit`` and the window every stream starts with
MAX_CREDIT = 256
INITIAL_WINDOW = 16
#: the server's RSS may grow at most this much while one connection misbehaves ...
ATTACK_RSS_GROWTH = 64 * MiB
#: ... and must come back within this of where it started once the offender has left
RSS_MARGIN = 32 * MiB
#: a peer that never reads its 1 MB answers may make the server hold this much
WS_NEVER_READ_GROWTH = 32 * MiB


def _servers() -> ServerProc:
    return ServerProc("ws://127.0.0.1:0", "tcp://127.0.0.1:0")


async def _one_batch(url: str, batch: list[dict[str, Any]], tcp_url: str) -> tuple[Any, Any]:
    """Send one batch on a fresh WebSocket; its answer, and ``Svc.Stats`` 0.3 s in."""
    async with aiohttp.ClientSession() as s, s.ws_connect(url, max_msg_size=0) as ws:
        await ws.send_str(json.dumps(batch))
        await asyncio.sleep(0.3)
        mid = await asyncio.to_thread(stats, tcp_url)
        msg = await asyncio.wait_for(ws.receive(), 10)
        return json.loads(msg.data), mid


def test_ws_batch_admits_at_most_the_call_limit() -> None:
    """One batch of 2,000 calls on a WebSocket with nothing in flight: at most the
    per-connection call limit run at once (the whole batch used to run); each call over it
    is that element's RESOURCE_EXHAUSTED error, and the batch is answered as one array with
    an element per call (what JSON-RPC 2.0 peers expect of a batch)."""
    with _servers() as srv, Prober(srv.url("tcp")) as probe, Prober(srv.url("ws")) as wsp:
        base = srv.settled_rss()
        batch = [{"jsonrpc": "2.0", "method": "Svc.Hold", "params": [0.8], "id": i}
                 for i in range(BATCH_CALLS)]
        answer, mid = asyncio.run(_one_batch(srv.url("ws"), batch, srv.url("tcp")))
        reports = probe.stop(), wsp.stop()
        final = stats(srv.url("tcp"))
        assert final["peak"] <= MAX_CALLS, (
            f"{final['peak']} calls ran at once from one WebSocket batch (limit {MAX_CALLS}; "
            f"0.3 s in: {mid})")
        assert isinstance(answer, list) and len(answer) == BATCH_CALLS, str(answer)[:300]
        refused = [a for a in answer if (a.get("error") or {}).get("data", {}).get("status")
                   == "RESOURCE_EXHAUSTED"]
        assert len(refused) == BATCH_CALLS - final["started"], (len(refused), final)
        assert "too many calls in flight" in refused[0]["error"]["message"], refused[0]
        assert sorted(a["id"] for a in answer) == list(range(BATCH_CALLS))
        assert srv.peak_rss - base <= ATTACK_RSS_GROWTH, f"RSS +{(srv.peak_rss - base) / MiB:.0f}"
        assert_served(*reports)
        after = srv.settled_rss()
        assert after - base <= RSS_MARGIN, f"RSS {(after - base) / MiB:.0f} MiB over the start"


async def _huge_grant(url: str, seconds: float) -> int:
    """Open a server stream, grant it 2^20 items of credit at once, read for ``seconds``:
    the items received."""
    items = 0
    async with aiohttp.ClientSession() as s, s.ws_connect(url, max_msg_size=0) as ws:
        await ws.send_str(json.dumps(
            {"jsonrpc": "2.0", "method": "Svc.Flood", "params": [1000], "id": 1}))
        await ws.send_str(json.dumps(
            {"jsonrpc": "2.0", "method": "rpc.stream.window", "params": {"id": 1, "n": 1 << 20}}))
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                msg = await asyncio.wait_for(ws.receive(), left)
            except TimeoutError:
                break
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            if json.loads(msg.data).get("method") == "rpc.stream.item":
                items += 1
        await ws.send_str(json.dumps(
            {"jsonrpc": "2.0", "method": "rpc.stream.cancel", "params": {"id": 1}}))
    return items


def test_ws_stream_credit_is_clamped() -> None:
    """One ``rpc.stream.window`` granting 2^20 items: the server sends no more than
    ``limits.max_stream_credit`` (256) past the initial window before the next grant (it
    used to take the whole grant: thousands of 1 kB items a second); the clamp is not an
    error, the stream goes on when credit comes back."""
    with _servers() as srv, Prober(srv.url("tcp")) as probe, Prober(srv.url("ws")) as wsp:
        base = srv.settled_rss()
        items = asyncio.run(_huge_grant(srv.url("ws"), 1.5))
        reports = probe.stop(), wsp.stop()
        assert 0 < items <= INITIAL_WINDOW + MAX_CREDIT, (
            f"{items} stream items sent on one grant of 2^20 (clamp {MAX_CREDIT})")
        assert srv.peak_rss - base <= ATTACK_RSS_GROWTH, f"RSS +{(srv.peak_rss - base) / MiB:.0f}"
        assert_served(*reports)
        after = srv.settled_rss()
        assert after - base <= RSS_MARGIN, f"RSS {(after - base) / MiB:.0f} MiB over the start"


def _reset_by_peer(sock: socket.socket) -> bool:
    """Whether the peer reset this socket (the kernel's pending error, or a FIN)."""
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNRESET:
        return True
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except ConnectionResetError:
        return True
    except BlockingIOError:
        return False


async def _never_reads(
    url: str, calls: list[tuple[str, list[Any]]], seconds: float, *, then_read: bool = True,
    until: Callable[[], bool] | None = None,
) -> bool:
    """Send single calls on a WebSocket with a 4 kB receive buffer, read nothing for
    ``seconds`` (or, with ``until``, until it is true, for at most 30 s: a loaded machine
    may take longer than any fixed pause to produce the answers); then (``then_read``)
    whether the server has closed (or reset) it."""
    async with aiohttp.ClientSession() as s, s.ws_connect(url, max_msg_size=0) as ws:
        sock = ws._response.connection.transport.get_extra_info("socket")  # type: ignore
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        for i, (method, params) in enumerate(calls):
            await ws.send_str(json.dumps(
                {"jsonrpc": "2.0", "method": method, "params": params, "id": i}))
        if until is None:
            await asyncio.sleep(seconds)
        else:
            deadline = time.monotonic() + 30
            while not until() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        if not then_read:  # leave at once (a close handshake would wait for the server)
            ws._response.connection.transport.abort()  # type: ignore[union-attr]
            return False
        try:  # what is left after the budget: a reset, or a close after some answers
            while True:
                msg = await asyncio.wait_for(ws.receive(), 5)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    return True
        except ConnectionError:  # reset: the server aborted it
            return True
        except (TimeoutError, asyncio.CancelledError):  # nothing came (aiohttp may have
            # paused reading, its buffer full, and never seen the reset; or its reader was
            # cancelled by the connection's end): ask the socket
            return _reset_by_peer(sock)


def test_ws_peer_that_never_reads_is_bounded() -> None:
    """1,000 calls answering 1 MB each, never read: the server stops reading once an answer
    is waiting for the socket (it used to read a whole batch of messages first: ~90 answers,
    +89 MiB), and the peer is not closed (within the budget)."""
    with _servers() as srv, Prober(srv.url("tcp")) as probe, Prober(srv.url("ws")) as wsp:
        base = srv.settled_rss()
        calls: list[tuple[str, list[Any]]] = [("Svc.Big", [1_000_000])] * 1000
        asyncio.run(_never_reads(srv.url("ws"), calls, 1.5, then_read=False))
        peak = srv.peak_rss
        reports = probe.stop(), wsp.stop()
        assert peak - base <= WS_NEVER_READ_GROWTH, (
            f"a ws:// peer that never reads grew RSS by {(peak - base) / MiB:.0f} MiB "
            f"(bound {WS_NEVER_READ_GROWTH / MiB:.0f} MiB)")
        assert_served(*reports)
        after = srv.settled_rss()
        assert after - base <= RSS_MARGIN, f"RSS {(after - base) / MiB:.0f} MiB over the start"


def test_ws_unsent_bytes_over_the_budget_abort_the_connection() -> None:
    """Twelve slow calls answering 3 MB each at once, never read, ``limits.max_unsent_bytes``
    8 MiB: past the budget the WebSocket is aborted (logged, as on the native wire) and the
    memory given back (the 36 MB used to sit in the server's buffer)."""
    with ServerProc("ws://127.0.0.1:0", "tcp://127.0.0.1:0",
                    limits={"max_unsent_bytes": 8 * MiB}) as srv, \
            Prober(srv.url("tcp")) as probe, Prober(srv.url("ws")) as wsp:
        base = srv.settled_rss()
        calls: list[tuple[str, list[Any]]] = [("Svc.BigLater", [0.3, 3_000_000])] * 12
        over = "limits.max_unsent_bytes"  # the server logs the abort
        closed = asyncio.run(_never_reads(srv.url("ws"), calls, 1.5,
                                          until=lambda: over in srv.stderr_tail()))
        reports = probe.stop(), wsp.stop()
        assert closed, ("a WebSocket leaving 36 MB unread (budget 8 MiB) was not closed; the "
                        f"server's log: {srv.stderr_tail(1500)}")
        assert "limits.max_unsent_bytes" in srv.stderr_tail(), srv.stderr_tail()
        assert srv.peak_rss - base <= ATTACK_RSS_GROWTH, f"RSS +{(srv.peak_rss - base) / MiB:.0f}"
        assert_served(*reports)
        # a closed WebSocket (aiohttp's objects) and a finished async call's result are
        # freed by the cyclic GC only (docs/limits.md, known gaps): collect before measuring
        for _ in range(2):  # (the second time after the session's last callbacks ran)
            collect(srv.url("tcp"))
            time.sleep(0.3)
        after = srv.settled_rss()
        assert after - base <= RSS_MARGIN, f"RSS {(after - base) / MiB:.0f} MiB over the start"
