"""The blocking facade: one client shared by many threads, go futures, timeouts, failures."""

from __future__ import annotations

import concurrent.futures
import contextlib
import socket
import threading
import time
from typing import Any

import pytest

import wirecall.sync
from support.servers import ThreadServer, free_port
from support.services import Probe
from wirecall import DeadlineExceeded, InvalidArgument, Unavailable
from wirecall.protocol import frames as fr
from wirecall.tutorial.calculator import DIVIDE_BY_ZERO, Args, Calculator, CalculatorAPI


def test_call_go_stub_and_errors() -> None:
    with ThreadServer(Calculator()) as srv, wirecall.sync.connect(srv.url, timeout=2) as c:
        assert c.call("Calculator.Add", Args(10, 5)) == 15
        fut = c.go("Calculator.Divide", Args(10, 5))
        assert isinstance(fut, concurrent.futures.Future)
        assert fut.result(2) == 2.0
        with pytest.raises(InvalidArgument) as ei:
            c.call("Calculator.Divide", Args(1, 0))
        assert ei.value.message == DIVIDE_BY_ZERO
        assert c.stub(CalculatorAPI).Add(Args(3, 4)) == 7


def test_fifty_threads_share_one_client() -> None:
    with ThreadServer(Probe()) as srv, wirecall.sync.connect(srv.url) as c:
        errors: list[BaseException] = []

        def worker(k: int) -> None:
            try:
                for i in range(100):
                    assert c.call("Probe.Echo", [k, i]) == [k, i]
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        assert all(not t.is_alive() for t in threads)
        assert len([x for x in c._conns if x is not None]) == 1  # all on one connection


def test_many_go_futures_in_flight_complete_without_a_waiting_thread() -> None:
    with ThreadServer(Probe()) as srv, wirecall.sync.connect(srv.url) as c:
        futs = [c.go("Probe.RandomDelay", i) for i in range(500)]
        done = []
        futs[0].add_done_callback(lambda f: done.append(f.result()))
        got = [f.result() for f in concurrent.futures.as_completed(futs, timeout=20)]
        assert sorted(got) == list(range(500))
        assert done == [0]


def test_timeouts_raise_and_the_client_keeps_working() -> None:
    probe = Probe()
    with ThreadServer(probe) as srv, wirecall.sync.connect(srv.url) as c:
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            c.call("Probe.Sleep", 5, "sync", timeout=0.2)
        assert time.monotonic() - t0 < 1.5
        fut = c.go("Probe.Sleep", 5, "sync-go", timeout=0.2)
        with pytest.raises(DeadlineExceeded):
            fut.result(3)
        assert c.call("Probe.Echo", "still here") == "still here"
        deadline = time.monotonic() + 3
        while len(probe.cancelled) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sorted(probe.cancelled) == ["sync", "sync-go"]


def test_threads_with_mixed_timeouts_do_not_block_each_other() -> None:
    with ThreadServer(Probe()) as srv, wirecall.sync.connect(srv.url) as c:
        slow = c.go("Probe.Sleep", 1.0)
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            fast = list(ex.map(lambda i: c.call("Probe.Echo", i, timeout=2), range(200)))
        assert fast == list(range(200))
        assert slow.result(3) == "slept 1.0"


def test_unix_socket_sync(tmp_path: Any) -> None:
    with (
        ThreadServer(Calculator(), url=f"unix://{tmp_path}/s.sock") as srv,
        wirecall.sync.connect(srv.url) as c,
    ):
        assert c.call("Calculator.Add", Args(1, 1)) == 2


def test_killed_server_fails_pending_fast_then_reconnects(server_process: Any) -> None:
    port = free_port()
    proc = server_process("support.services:Probe", f"tcp://127.0.0.1:{port}")
    url = proc.start()
    c = wirecall.sync.connect(url)
    assert c.call("Probe.Echo", 1) == 1
    futs = [c.go("Probe.Sleep", 30) for _ in range(5)]
    blocked: list[BaseException] = []

    def blocker() -> None:
        try:
            c.call("Probe.Sleep", 30)
        except BaseException as exc:
            blocked.append(exc)

    t = threading.Thread(target=blocker)
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    proc.kill()
    for f in futs:
        with pytest.raises(Unavailable):
            f.result(5)
    t.join(5)
    assert blocked and isinstance(blocked[0], Unavailable)
    assert time.monotonic() - t0 < 3
    proc2 = server_process("support.services:Probe", f"tcp://127.0.0.1:{port}")
    proc2.start()
    deadline = time.monotonic() + 10
    while True:
        try:
            assert c.call("Probe.Echo", 2) == 2
            break
        except Unavailable:
            assert time.monotonic() < deadline, "did not reconnect"
            time.sleep(0.1)
    c.close()


def test_sync_dial_errors_are_connect_errors() -> None:
    port = free_port()
    with pytest.raises(wirecall.ConnectError, match="refused"):
        wirecall.sync.connect(f"tcp://127.0.0.1:{port}", timeout=1)


def test_interceptors_in_the_sync_client() -> None:
    calls: list[str] = []

    def icpt(call: Any, proceed: Any) -> Any:
        calls.append(call.method)
        call.metadata["x-sync"] = "yes"
        return proceed(call)

    with ThreadServer(Probe()) as srv, wirecall.sync.connect(srv.url, interceptors=[icpt]) as c:
        out = c.call("Probe.Meta")
        assert out["metadata"] == {"x-sync": "yes"}
        assert calls == ["Probe.Meta"]


def test_short_timeouts_do_not_break_big_transfers_in_other_threads() -> None:
    """Read deadlines never touch the shared socket's timeout (other threads send on it)."""
    with ThreadServer(Probe()) as srv, wirecall.sync.connect(srv.url) as c:
        errors: list[BaseException] = []
        big = b"z" * (3 * 1024 * 1024)

        stop = time.monotonic() + 1.5  # bounded: mixed traffic for a second and a half

        def echo_big() -> None:
            try:
                while time.monotonic() < stop:
                    assert c.call("Probe.Echo", big) == big
            except BaseException as exc:
                errors.append(exc)

        def impatient() -> None:
            try:
                while time.monotonic() < stop:
                    with contextlib.suppress(DeadlineExceeded):
                        c.call("Probe.Sleep", 0.5, timeout=0.003)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=echo_big) for _ in range(2)]
        threads += [threading.Thread(target=impatient) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert c.call("Probe.Echo", 1) == 1
        # the mechanism itself: a reader with a deadline leaves the socket blocking, so a
        # concurrent sendall of a big frame can never time out half-written
        with contextlib.suppress(DeadlineExceeded):
            c.call("Probe.Sleep", 0.5, timeout=0.01)
        assert c._conns[0].sock.gettimeout() is None


def test_an_idle_sync_client_answers_the_servers_pings_and_keeps_its_connection() -> None:
    with ThreadServer(Calculator(), keepalive=0.2) as srv:
        c = wirecall.sync.connect(srv.url, keepalive=0.2)
        first = c._conns[0]
        assert c.call("Calculator.Add", Args(1, 1)) == 2
        time.sleep(1.5)  # the server pings every 0.2 s and drops a peer that does not answer
        assert c.call("Calculator.Add", Args(2, 2)) == 4
        assert c._conns[0] is first and not first.closed
        c.close()


def test_sync_keepalive_detects_a_silent_peer_even_mid_call() -> None:
    """A peer that completes the handshake, then goes silent: a call with no timeout fails
    with UNAVAILABLE after the keepalive PING goes unanswered, instead of hanging."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    held: list[socket.socket] = []

    def silent_server() -> None:
        s, _ = lsock.accept()
        held.append(s)
        conn = fr.FrameConnection(client=False)
        conn.receive_data(s.recv(1024))
        s.sendall(conn.data_to_send()[: fr.PREFACE.size])  # the preface, then nothing

    t = threading.Thread(target=silent_server, daemon=True)
    t.start()
    c = wirecall.sync.connect(f"tcp://127.0.0.1:{lsock.getsockname()[1]}", keepalive=0.2)
    t0 = time.monotonic()
    with pytest.raises(Unavailable, match="keepalive ping unanswered"):
        c.call("Any.Thing")
    assert time.monotonic() - t0 < 3
    c.close()
    for s in held:
        s.close()
    lsock.close()


def test_cancelling_a_go_future_cancels_the_handler() -> None:
    probe = Probe()
    with ThreadServer(probe) as srv, wirecall.sync.connect(srv.url) as c:
        fut = c.go("Probe.Sleep", 5, "sync-go-cancel")
        deadline = time.monotonic() + 3
        while probe.entered == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fut.cancel()
        while not probe.cancelled and time.monotonic() < deadline:
            time.sleep(0.02)
        assert probe.cancelled == ["sync-go-cancel"]
        assert c.call("Probe.Echo", "after") == "after"  # the pump is not stuck on it


def test_sync_idle_timeout_closes_and_redials() -> None:
    with ThreadServer(Calculator()) as srv:
        c = wirecall.sync.connect(srv.url, idle_timeout=0.3)
        first = c._conns[0]
        assert c.call("Calculator.Add", Args(1, 2)) == 3
        time.sleep(1.0)
        assert first.closed
        assert c.call("Calculator.Add", Args(2, 2)) == 4
        assert c._conns[0] is not first
        c.close()


def test_a_go_callback_may_make_blocking_calls_on_the_same_client() -> None:
    """go() callbacks run on the thread that read the reply (it holds the read lock): a
    blocking call() from there reads in place instead of deadlocking. (Blocking on another
    go() future inside a callback would still wait for that same thread: don't.)"""
    from support.services import Probe

    with ThreadServer(Calculator(), Probe()) as srv:
        c = wirecall.sync.connect(srv.url)
        try:
            done: concurrent.futures.Future[list[Any]] = concurrent.futures.Future()
            threads: list[str] = []

            def then(f: concurrent.futures.Future[Any]) -> None:
                threads.append(threading.current_thread().name)
                try:
                    done.set_result([f.result(), c.call("Calculator.Add", Args(1, 1)),
                                     c.call("Calculator.Add", Args(2, 1))])
                except BaseException as exc:
                    done.set_exception(exc)

            fut = c.go("Probe.Sleep", 0.2, "x")
            fut.add_done_callback(then)  # the reply arrives later, on the reading thread
            assert done.result(timeout=10) == ["slept 0.2", 2, 3]
            assert threads and threads[0] != threading.current_thread().name
            assert c.call("Calculator.Add", Args(40, 2)) == 42  # the connection still works
        finally:
            c.close()
