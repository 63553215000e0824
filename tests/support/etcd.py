"""A throwaway etcd (Debian ``etcd-server``, ``/usr/bin/etcd``) for tests: free client and peer
ports on 127.0.0.1, a temp data dir, stopped by PID. ``stop()`` + ``start()`` again keep the
data dir (a registry outage and its recovery).

Use the session fixture from a ``conftest.py``::

    from support.etcd import etcd_server   # noqa: F401  (re-export the fixture)

    def test_x(etcd_server):
        url = etcd_server.url               # etcd://127.0.0.1:PORT

Or standalone: ``with EtcdServer() as etcd: ...``. Under ``CI=true`` a missing binary is a
failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["EtcdServer", "etcd_server", "find_etcd", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_etcd() -> str | None:
    return os.environ.get("WIRECALL_ETCD") or shutil.which("etcd") or (
        "/usr/bin/etcd" if Path("/usr/bin/etcd").exists() else None)


class EtcdServer:
    """One etcd member; ``kill()`` is kill -9, ``stop()`` a SIGTERM, both by PID."""

    def __init__(self, binary: str | None = None) -> None:
        found = binary or find_etcd()
        if found is None:
            raise RuntimeError("etcd not found (apt-get install etcd-server; scripts/setup.sh)")
        self.binary = found
        self.tmp = Path(tempfile.mkdtemp(prefix="wirecall-etcd-"))
        self.port = free_port()
        self.peer_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.tmp / "etcd.log"

    @property
    def url(self) -> str:
        return f"etcd://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> EtcdServer:
        client = f"http://127.0.0.1:{self.port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        argv = [self.binary, "--name", "t", "--data-dir", str(self.tmp / "data"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"t={peer}", "--initial-cluster-state", "new",
                "--heartbeat-interval", "50", "--election-timeout", "500"]
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                         env={**os.environ, "ETCD_UNSUPPORTED_ARCH": "arm64"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited: {self.log.read_text()[-2000:]}")
            if b"ready to serve client requests" in self.log.read_bytes()[offset:]:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), 0.2):
                        return self
                except OSError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"etcd did not start in {timeout}s: {self.log.read_text()[-2000:]}")

    def _signal(self, sig: int, wait: float) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def stop(self) -> None:
        self._signal(signal.SIGTERM, 10)

    def kill(self) -> None:
        self._signal(signal.SIGKILL, 5)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> EtcdServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required under CI=true (scripts/setup.sh installs it)")
    pytest.skip(f"{what} not installed")


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdServer]:
    if find_etcd() is None:
        _missing("etcd (Debian etcd-server)")
    server = EtcdServer().start()
    try:
        yield server
    finally:
        server.cleanup()
