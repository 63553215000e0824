"""Streaming through the blocking facade (wirecall.sync) on tcp:// and grpc://."""

from __future__ import annotations

import asyncio
import threading

import pytest

import wirecall.sync
from support.services import Calc
from wirecall import NotFound, Server
from wirecall.streaming import EOF


@pytest.mark.parametrize("scheme", ["tcp", "grpc"])
def test_sync_streams(scheme: str) -> None:
    ready: list[str] = []
    started = threading.Event()
    loop = asyncio.new_event_loop()
    server = Server()
    server.register(Calc(), name="Calc")

    def run() -> None:
        asyncio.set_event_loop(loop)
        ready.extend(loop.run_until_complete(server.start(f"{scheme}://127.0.0.1:0")))
        started.set()
        loop.run_forever()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert started.wait(10)
    try:
        with wirecall.sync.connect(ready[0]) as client:
            assert list(client.stream("Calc.Count", [4], result_type=int)) == [0, 1, 2, 3]
            s = client.stream("Calc.Double", result_type=int, timeout=5)
            s.send(21)
            assert s.recv() == 42
            s.send(-1)
            with pytest.raises(NotFound):
                s.recv()
            bidi = client.stream("Calc.Double", iter([1, 2, 3]), result_type=int)
            assert list(bidi) == [2, 4, 6]
            assert bidi.recv() is EOF
    finally:
        asyncio.run_coroutine_threadsafe(server.close(drain_timeout=1), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)
