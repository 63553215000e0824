"""A throwaway ZooKeeper 3.8 (Debian ``zookeeper``, Java) for tests: standalone, a free client
port on 127.0.0.1, a temp data dir, a minimal ``zoo.cfg``, stopped by PID. The JVM takes a few
seconds to start: the fixture is session-scoped.

``tickTime`` is 250 ms and sessions may last 0.5 s .. 60 s (``minSessionTimeout`` /
``maxSessionTimeout``), so tests can use short leases.

    from support.zookeeper import zookeeper_server   # noqa: F401

    def test_x(zookeeper_server):
        url = zookeeper_server.url                    # zk://127.0.0.1:PORT

Under ``CI=true`` a missing Java or ZooKeeper is a failure, never a skip.
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

from support.etcd import free_port

__all__ = ["ZooKeeperServer", "find_zookeeper", "zookeeper_server"]

JARS = ("/usr/share/java/zookeeper.jar", "/usr/share/java/slf4j-simple.jar",
        "/usr/share/java/slf4j-nop.jar")


def find_zookeeper() -> tuple[str, str] | None:
    java = shutil.which("java")
    jar = os.environ.get("WIRECALL_ZOOKEEPER_JAR", "/usr/share/java/zookeeper.jar")
    if java is None or not Path(jar).exists():
        return None
    return java, ":".join([jar, *(j for j in JARS[1:] if Path(j).exists())])


class ZooKeeperServer:
    def __init__(self) -> None:
        found = find_zookeeper()
        if found is None:
            raise RuntimeError("ZooKeeper not found (apt-get install zookeeper; scripts/setup.sh)")
        self.java, self.classpath = found
        self.tmp = Path(tempfile.mkdtemp(prefix="wirecall-zk-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.tmp / "zookeeper.log"
        (self.tmp / "data").mkdir()
        (self.tmp / "zoo.cfg").write_text(
            f"tickTime=250\ndataDir={self.tmp / 'data'}\nclientPort={self.port}\n"
            "clientPortAddress=127.0.0.1\nminSessionTimeout=500\nmaxSessionTimeout=60000\n"
            "admin.enableServer=false\n4lw.commands.whitelist=ruok,srvr\n"
            "maxClientCnxns=0\n")

    @property
    def url(self) -> str:
        return f"zk://127.0.0.1:{self.port}"

    def _ok(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.3) as s:
                s.sendall(b"ruok")
                return s.recv(4) == b"imok"
        except OSError:
            return False

    def start(self, timeout: float = 40.0) -> ZooKeeperServer:
        argv = [self.java, "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-Dzookeeper.admin.enableServer=false", "-cp", self.classpath,
                "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(self.tmp / "zoo.cfg")]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ZooKeeper exited: {self.log.read_text()[-2000:]}")
            if self._ok():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"ZooKeeper did not start in {timeout}s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> ZooKeeperServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


@pytest.fixture(scope="session")
def zookeeper_server() -> Iterator[ZooKeeperServer]:
    if find_zookeeper() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("ZooKeeper (Debian zookeeper + Java) is required under CI=true")
        pytest.skip("ZooKeeper not installed")
    server = ZooKeeperServer().start()
    try:
        yield server
    finally:
        server.cleanup()
