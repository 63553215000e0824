"""Servers for tests on 127.0.0.1 with free ports: in-process, in a thread, or as subprocesses."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import wirecall

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A ``wirecall serve`` subprocess, stopped by PID."""

    def __init__(self, target: str, url: str, *extra: str) -> None:
        self.target = target
        self.url_arg = url
        self.extra = extra
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, timeout: float = 15.0) -> str:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "wirecall.cli", "serve", self.target, "--listen", self.url_arg,
             *self.extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("listening on "):
                self.url = line.split()[-1]
                return self.url
            if self.proc.poll() is not None:
                break
        err = self.proc.stderr.read() if self.proc.stderr else ""
        self.stop()
        raise RuntimeError(f"server did not start: {line!r} {err}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()
        return self.proc.returncode


class ThreadServer:
    """A Server running on its own event loop in a background thread (for sync tests)."""

    def __init__(self, *services: Any, url: str = "tcp://127.0.0.1:0", **kw: Any) -> None:
        self.services = services
        self.url_arg = url
        self.kw = kw
        self.loop = asyncio.new_event_loop()
        self.server: wirecall.Server | None = None
        self.url = ""
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self.server = wirecall.Server(**self.kw)
            for s in self.services:
                self.server.register(s)
            [self.url] = await self.server.start(self.url_arg)
            self._ready.set()

        self.loop.run_until_complete(main())
        self.loop.run_forever()

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        assert self._ready.wait(10), "server thread did not start"
        return self

    def close(self) -> None:
        if self.server is not None and self.loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self.server.close(drain_timeout=2), self.loop)
            fut.result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    def __exit__(self, *exc: object) -> None:
        self.close()
