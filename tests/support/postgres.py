"""A throwaway PostgreSQL 15 cluster for tests: ``initdb`` into a temp dir, a free port on
127.0.0.1, a private Unix-socket dir, stopped by PID.

``initdb`` refuses to run as root, so when the tests run as root the data dir is handed to the
unprivileged ``postgres`` system user and the binaries run through ``runuser -u postgres --``.

Use the session fixture from a ``conftest.py``::

    from support.postgres import postgres_cluster   # noqa: F401  (re-export the fixture)

    def test_x(postgres_cluster):
        dsn = postgres_cluster.dsn()                  # postgresql://postgres@127.0.0.1:PORT/postgres
        db = postgres_cluster.create_database("mine")  # a fresh database, its DSN

Or standalone: ``with PostgresCluster() as pg: ...``. Under ``CI=true`` a missing binary is a
failure, never a skip. ``max_prepared_transactions`` is on (XA / ``PREPARE TRANSACTION``).
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

__all__ = ["PostgresCluster", "find_bindir", "postgres_cluster"]

BINDIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")


def find_bindir() -> Path | None:
    env = os.environ.get("WIRECALL_PG_BINDIR")
    for d in ([env] if env else []) + list(BINDIRS):
        if (Path(d) / "initdb").exists() and (Path(d) / "postgres").exists():
            return Path(d)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresCluster:
    """One ``postgres`` server process on its own data dir; ``stop()`` kills it by PID."""

    def __init__(self, bindir: Path | None = None, *, max_connections: int = 200) -> None:
        found = bindir or find_bindir()
        if found is None:
            raise RuntimeError("PostgreSQL binaries not found (apt-get install postgresql; "
                               "scripts/setup.sh); set WIRECALL_PG_BINDIR to their directory")
        self.bindir = found
        self.max_connections = max_connections
        self.tmp = Path(tempfile.mkdtemp(prefix="wirecall-pg-"))
        self.data = self.tmp / "data"
        self.sockdir = self.tmp / "sock"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.tmp / "postgres.log"

    # running as root: hand the files to the postgres user and run the binaries as it
    def _as_user(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        return ["runuser", "-u", "postgres", "--", *argv]

    def start(self, timeout: float = 30.0) -> PostgresCluster:
        self.sockdir.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.tmp, "postgres", "postgres")
            shutil.chown(self.sockdir, "postgres", "postgres")
            os.chmod(self.tmp, 0o700)
        subprocess.run(
            self._as_user([str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                           "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"]),
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout,
        )
        self.port = _free_port()
        logf = open(self.log, "wb")  # noqa: SIM115 (kept open for the server's life)
        self.proc = subprocess.Popen(
            self._as_user([str(self.bindir / "postgres"), "-D", str(self.data),
                           "-p", str(self.port), "-k", str(self.sockdir),
                           "-c", "listen_addresses=127.0.0.1",
                           "-c", f"max_connections={self.max_connections}",
                           "-c", "max_prepared_transactions=100",
                           "-c", "shared_buffers=64MB"]),
            stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
        )
        logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log.read_text(errors='replace')}")
            r = subprocess.run(
                [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            if r.returncode == 0:
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("postgres did not become ready in time")

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        r = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
             "-c", sql],
            check=True, capture_output=True, text=True, timeout=30,
        )
        return r.stdout

    def create_database(self, name: str) -> str:
        """A fresh database (dropped first if it exists); returns its DSN."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name must be alphanumeric/underscore: {name!r}")
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.psql(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # postgres runs in its own session; SIGINT = fast shutdown, then SIGKILL by PID
            os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.proc = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster for the whole session (a failure under CI if it cannot run)."""
    if find_bindir() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL binaries not found; CI must install postgresql "
                        "(scripts/setup.sh)")
        pytest.skip("PostgreSQL binaries not found (apt-get install postgresql)")
    cluster = PostgresCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()
