"""The blocking client's pump and readers (``wirecall.sync`` on native schemes): idle timeout,
many threads with go() chains, keepalive PINGs while calling, a silent peer, reply size limit,
undecodable plain replies, a caller queued behind the pump's maintenance read."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import Any

import pytest

import wirecall
import wirecall.sync
from support.native_wire import Hot, silent_server
from support.servers import ThreadServer
from wirecall import RpcError, Status, Unavailable


def test_sync_idle_timeout_counts_from_the_connect() -> None:
    with ThreadServer(Hot()) as srv:
        c = wirecall.sync.connect(srv.url, keepalive=None)
        conn = c._conns[0]
        assert conn is not None
        conn._idle_timeout = 0.05
        time.sleep(0.1)
        conn._maintain()
        assert conn.closed
        assert c.call("Hot.Add", 1, 2) == 3  # redialled
        c.close()


def test_fifty_threads_with_go_chains_share_one_sync_client() -> None:
    """50 threads call, and each starts a go() whose callback starts the next go() (a chain
    of 5): every call and every future completes, nothing is left pending."""
    with ThreadServer(Hot()) as srv, wirecall.sync.connect(srv.url) as c:
        done: list[int] = []
        lock = threading.Lock()
        all_done = threading.Event()
        total = 50 * 5

        def chain(tid: int, step: int) -> None:
            fut = c.go("Hot.Add", tid, step)

            def cb(f: concurrent.futures.Future[Any]) -> None:
                assert f.result() == tid + step
                with lock:
                    done.append(tid)
                    if len(done) == total:
                        all_done.set()
                if step < 4:
                    chain(tid, step + 1)

            fut.add_done_callback(cb)

        def worker(tid: int) -> int:
            chain(tid, 0)
            s = 0
            for i in range(20):
                s += c.call("Hot.Add", tid, i)
            return s

        with concurrent.futures.ThreadPoolExecutor(50) as ex:
            sums = list(ex.map(worker, range(50), timeout=30))
        assert sums == [20 * t + 190 for t in range(50)]
        assert all_done.wait(15), f"{len(done)} of {total} go() callbacks ran"
        assert sorted(done) == sorted(list(range(50)) * 5)
        conn = c._conns[0]
        assert conn is not None and conn.pending == 0 and conn._go_pending == 0


def test_sync_calls_while_the_pump_pings_every_few_ms() -> None:
    """keepalive 0.02 s: the pump PINGs all the time while threads call and go(); every call
    is answered and the connection survives."""
    with ThreadServer(Hot(), keepalive=0.05) as srv:
        c = wirecall.sync.connect(srv.url, keepalive=0.02)
        first = c._conns[0]

        def worker(tid: int) -> int:
            n = 0
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                if n % 3 == 0:
                    assert c.go("Hot.Add", tid, n).result(5) == tid + n
                else:
                    assert c.call("Hot.Add", tid, n) == tid + n
                n += 1
                time.sleep(0.003)
            return n

        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            counts = list(ex.map(worker, range(4), timeout=20))
        assert all(n > 10 for n in counts)
        assert c._conns[0] is first and not first.closed
        c.close()


def _until(cond: Any, what: str, bound: float = 20.0) -> None:
    """Wait (bounded, generously: CI is loaded) for a condition another thread makes true."""
    deadline = time.monotonic() + bound
    while not cond():
        assert time.monotonic() < deadline, f"not within {bound:g}s: {what}"
        time.sleep(0.001)


@pytest.mark.parametrize("reader", ["pump", "caller"])
def test_sync_keepalive_wakes_every_kind_of_waiter_on_a_silent_peer(reader: str) -> None:
    """Against a peer that went silent: a call with no deadline, a call with a long deadline
    and a go() future all fail with UNAVAILABLE "keepalive ping unanswered", not at their
    deadlines. ``reader``: who holds the read lock while they wait, the go() pump (the go()
    is sent first) or the no-deadline caller (sent first, blocked in recv; the pump, waiting
    for that lock for its go() future, still owes the PING: it never sent it before).
    The keepalive is switched on only once all three calls are in flight: a thread that
    started late would otherwise find the connection already given up and redial a peer
    that never answers the handshake."""
    lsock, held, t = silent_server()
    port = lsock.getsockname()[1]
    c = wirecall.sync.connect(f"tcp://127.0.0.1:{port}", keepalive=None)
    ex = concurrent.futures.ThreadPoolExecutor(2)
    try:
        conn = c._conns[0]
        assert conn is not None
        if reader == "pump":
            fut = c.go("Any.Go", timeout=60)
            _until(conn._read_lock.locked, "the pump reads for the go() future")
            a = ex.submit(c.call, "Any.NoDeadline")
        else:
            a = ex.submit(c.call, "Any.NoDeadline")
            _until(
                lambda: conn.pending == 1 and conn._read_lock.locked(),
                "the no-deadline caller reads",
            )
            fut = c.go("Any.Go", timeout=60)
        b = ex.submit(c.call, "Any.LongDeadline", timeout=60)
        _until(lambda: conn.pending == 3, "three calls in flight")
        conn._keepalive = 0.2
        for f in (a, b, fut):
            with pytest.raises(Unavailable, match="keepalive ping unanswered"):
                f.result(20)
    finally:
        c.close()  # on a failure too: no thread is left blocked in a read
        ex.shutdown()
        lsock.close()
        for s in held:
            s.close()
        t.join(5)


def test_sync_client_huge_reply_over_its_limit_and_the_next_call() -> None:
    with ThreadServer(Hot()) as srv:
        c = wirecall.sync.connect(srv.url, max_message_size=64 * 1024)
        with pytest.raises(RpcError) as ei:
            c.call("Hot.Blob", 100_000)
        assert ei.value.status == Status.RESOURCE_EXHAUSTED
        assert c.call("Hot.Blob", 10) == b"x" * 10
        assert c.go("Hot.Blob", 20).result(5) == b"x" * 20
        c.close()


def test_sync_plain_reply_that_does_not_decode_to_the_result_type() -> None:
    with ThreadServer(Hot()) as srv, wirecall.sync.connect(srv.url) as c:
        with pytest.raises(wirecall.InvalidArgument, match="cannot decode the reply"):
            c.call("Hot.Echo", "text", result_type=int)
        with pytest.raises(wirecall.InvalidArgument, match="cannot decode the reply"):
            c.go("Hot.Echo", "text", result_type=int).result(5)
        assert c.call("Hot.Add", 1, 1, result_type=int) == 2
        assert c.call("Hot.Add", a=2, b=3) == 5  # named arguments still travel as a map


def test_a_caller_that_queued_behind_the_pumps_maintenance_read_is_woken() -> None:
    """The pump (or check_alive) holds the read lock for a moment; a call arriving then waits
    for the reader to finish. Releasing the lock must wake it, not leave it until the pump's
    next tick (2.5 s with the default keepalive)."""

    class SlowPoll:
        def __init__(self, real: Any, who: threading.Thread) -> None:
            self.real, self.who = real, who

        def poll(self, t: Any = None) -> Any:
            if threading.current_thread() is self.who and t == 0:
                time.sleep(0.3)  # the maintenance read, stretched; it found nothing to read
                return []
            return self.real.poll(t)

        def register(self, *a: Any) -> None:
            self.real.register(*a)

    with ThreadServer(Hot()) as srv, wirecall.sync.connect(srv.url) as c:
        conn = c._conns[0]
        assert conn is not None
        for _ in range(2):
            maint = threading.Thread(target=conn._maintain)
            real = conn._poller
            conn._poller = SlowPoll(real, maint)  # type: ignore[assignment]
            maint.start()
            time.sleep(0.05)
            assert conn._read_lock.locked()
            t0 = time.monotonic()
            assert c.call("Hot.Add", 1, 2) == 3
            elapsed = time.monotonic() - t0
            maint.join(5)
            conn._poller = real
            assert elapsed < 1.5, f"the call waited {elapsed:.2f}s for the pump's next tick"
