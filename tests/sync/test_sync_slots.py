"""The blocking client keeps the one rule of every wire: past ``max_in_flight`` calls on a
connection a call waits for a free slot, its deadline running (never RESOURCE_EXHAUSTED)."""

from __future__ import annotations

import concurrent.futures

import pytest

import wirecall.sync
from support.servers import ThreadServer
from support.services import Probe
from wirecall import DeadlineExceeded


@pytest.mark.parametrize("scheme", ["tcp", "unix"])
def test_2000_go_calls_on_one_blocking_connection_all_succeed(scheme: str, tmp_path) -> None:
    url = "tcp://127.0.0.1:0" if scheme == "tcp" else f"unix://{tmp_path}/s.sock"
    # the server refuses past 1024 calls per connection: without the client's rule the
    # 1025th call would come back RESOURCE_EXHAUSTED
    with ThreadServer(Probe(), url=url) as srv, wirecall.sync.connect(srv.url) as c:
        futs = [c.go("Probe.Sleep", 0.5, str(i), timeout=30) for i in range(2000)]
        done = [f.result(60) for f in futs]
    assert done == ["slept 0.5"] * 2000


def test_threads_past_the_limit_wait_for_a_slot() -> None:
    with (ThreadServer(Probe()) as srv, wirecall.sync.connect(srv.url, max_in_flight=4) as c,
          concurrent.futures.ThreadPoolExecutor(16) as pool):
        out = list(pool.map(lambda i: c.call("Probe.Sleep", 0.05, str(i), timeout=10),
                            range(32)))
    assert out == ["slept 0.05"] * 32


def test_a_call_waiting_for_a_slot_keeps_its_deadline() -> None:
    with ThreadServer(Probe()) as srv, wirecall.sync.connect(srv.url, max_in_flight=2) as c:
        slow = [c.go("Probe.Sleep", 1.0, "s", timeout=10) for _ in range(2)]
        with pytest.raises(DeadlineExceeded, match=r"before Probe\.Sleep was sent"):
            c.call("Probe.Sleep", 0.0, "late", timeout=0.2)
        assert [f.result(10) for f in slow] == ["slept 1.0"] * 2


def test_max_in_flight_must_be_positive() -> None:
    with ThreadServer(Probe()) as srv, pytest.raises(ValueError, match="max_in_flight"):
        wirecall.sync.connect(srv.url, max_in_flight=0)
