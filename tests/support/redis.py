"""A real ``redis-server`` for tests: 127.0.0.1, a free port, a temp data dir, stopped by PID.

    with RedisServer() as r:            # no persistence
        r.url                           # "redis://127.0.0.1:PORT/0"
    RedisServer(persist=True)           # AOF with fsync always: survives kill -9 + restart
    r.kill(); r.start()                 # same port and data dir (fault tests)

With ``CI=true`` a missing binary is a failure; elsewhere too (a clear message naming the
Debian package), never a skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from support.servers import free_port

__all__ = ["RedisServer", "redis_binary"]


def redis_binary() -> str:
    path = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)
    if path is None:
        raise RuntimeError("redis-server is needed by the pubsub tests: "
                           "apt-get install -y redis-server (scripts/setup.sh)")
    return path


class RedisServer:
    """One redis-server process; ``start()`` again after ``kill()``/``stop()`` reuses the port
    and the data dir."""

    def __init__(self, *, persist: bool = False, port: int | None = None) -> None:
        self.persist = persist
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="wirecall-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--save", "", "--daemonize", "no",
                "--protected-mode", "yes", "--loglevel", "warning",
                "--logfile", str(self.dir / "redis.log")]
        if self.persist:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                log = (self.dir / "redis.log").read_text() if (self.dir / "redis.log").exists() \
                    else ""
                raise RuntimeError(f"redis-server exited: {err} {log}")
            if self.ping():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING on {self.address} in {timeout}s")

    def ping(self) -> bool:
        try:
            return self.command("PING") == b"+PONG\r\n"
        except OSError:
            return False

    def command(self, *parts: str) -> bytes:
        """One command over a fresh socket; the raw RESP reply (small replies only)."""
        req = f"*{len(parts)}\r\n".encode() + b"".join(
            f"${len(p.encode())}\r\n".encode() + p.encode() + b"\r\n" for p in parts)
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(req)
            time.sleep(0.01)
            return s.recv(65536)

    def kill(self) -> None:
        """SIGKILL (a crash): nothing flushed but what AOF fsync already wrote."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
