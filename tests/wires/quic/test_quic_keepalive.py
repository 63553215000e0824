"""Keepalive on ``quic://`` against a peer that goes silent (a server process stopped with
SIGSTOP: its socket stays open, nothing answers): the client's PINGs go unanswered and the
pending call fails with UNAVAILABLE instead of hanging."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import pytest

from wirecall import Unavailable
from wirecall.transport.base import parse_url
from wirecall.transport.quic import connect as quic_connect
from wirecall.transport.quic import write_self_signed

SERVER = """
import asyncio, sys, wirecall
class Svc:
    async def Sleep(self, s: float) -> str:
        await asyncio.sleep(s)
        return "done"
async def main():
    server = wirecall.Server()
    server.register(Svc())
    [url] = await server.start("quic://127.0.0.1:0", certfile=sys.argv[1], keyfile=sys.argv[2])
    print(url, flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


async def test_keepalive_fails_calls_to_a_silent_quic_peer() -> None:
    with tempfile.TemporaryDirectory() as d:
        crt, key = write_self_signed(d)
        p = subprocess.Popen([sys.executable, "-c", SERVER, crt, key], stdout=subprocess.PIPE,
                             text=True)
        try:
            assert p.stdout is not None
            url = p.stdout.readline().strip()
            conn = await quic_connect(parse_url(url), cafile=crt, keepalive=0.2)
            try:
                assert await conn.call("Svc.Sleep", [0], 5, None, Any) == "done"
                os.kill(p.pid, signal.SIGSTOP)  # silent from now on
                t0 = time.monotonic()
                with pytest.raises(Unavailable):
                    await asyncio.wait_for(conn.call("Svc.Sleep", [0], None, None, Any), 10)
                assert time.monotonic() - t0 < 5
                assert conn.closed
            finally:
                await conn.aclose()
        finally:
            p.kill()
            p.wait(10)
