"""The embedded store: one SQLite file (stdlib ``sqlite3``), WAL, ``synchronous=FULL``.

One writer thread owns the connection and commits in groups: every operation queued while the
previous commit was on disk runs in the next transaction (each under its own SAVEPOINT, so a
failing one rolls back alone), and all of them are answered after that one fsync. Durable like
one commit per operation, at the cost of one fsync per group.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ..model import BranchOp, Mode, Outcome, TxStatus
from . import sql
from .base import STOP, Store, run_writer, settle
from .sql import Dialect, Op

__all__ = ["SqliteStore", "path_from_url"]

# bound as the plain strings they are (without an adapter, sqlite3 treats a str subclass as an
# object to adapt: two failed attribute lookups, an exception formatted, per parameter)
for _enum in (BranchOp, Mode, Outcome, TxStatus):
    sqlite3.register_adapter(_enum, str)

def path_from_url(url: str) -> str:
    """``sqlite:///rel/path.db`` is relative, ``sqlite:////abs/path.db`` absolute;
    ``sqlite://:memory:`` is in memory (tests only: nothing survives)."""
    parts = urlsplit(url)
    if parts.netloc == ":memory:":
        return ":memory:"
    path = unquote(parts.path)
    path = path[1:] if path.startswith("/") else path
    if not path:
        raise ValueError(f"sqlite store URL needs a file path: {url!r}")
    return path


class SqliteStore(Store):
    def __init__(self, url: str, *, max_group: int = 256) -> None:
        self.url = url
        self.path = path_from_url(url)
        self.max_group = max_group
        self.dialect = Dialect("sqlite")
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.commits = 0  # transactions committed (groups)
        self.ops = 0

    async def open(self) -> None:
        if self._thread is not None:
            return
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._main, args=(loop, ready),
                                        name="wirecall-txn-sqlite", daemon=True)
        self._thread.start()
        await ready

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # small pages for a new file: a commit writes (and checksums) whole pages into the
        # WAL, and a step touches 3-5 of them with rows of ~100 bytes
        conn.execute("PRAGMA page_size=1024")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # durable at commit, not only at checkpoint
        conn.execute("PRAGMA busy_timeout=10000")
        for stmt in sql.schema(self.dialect):
            conn.execute(stmt)
        return conn

    def _main(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        run_writer(loop, ready, self._q, self.max_group, self._connect, self._run_group)

    def _run_group(self, conn: sqlite3.Connection, group: list[Any]) -> sqlite3.Connection:
        results: list[tuple[bool, Any]] = []
        if len(group) == 1:  # alone: its own transaction, no savepoint needed
            return self._run_one(conn, group[0])
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op, _fut, _loop in group:
                conn.execute("SAVEPOINT op")
                try:
                    results.append((True, op(conn.cursor(), self.dialect)))
                    conn.execute("RELEASE op")
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    results.append((False, exc))
            conn.execute("COMMIT")
            self.commits += 1
            self.ops += len(group)
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            results = [(False, exc)] * len(group)
        for (ok, value), (_op, fut, loop) in zip(results, group, strict=True):
            loop.call_soon_threadsafe(settle, fut, ok, value)
        return conn

    def _run_one(self, conn: sqlite3.Connection, item: Any) -> sqlite3.Connection:
        op, fut, loop = item
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result: tuple[bool, Any] = (True, op(conn.cursor(), self.dialect))
            except Exception as exc:  # the op's own failure: nothing of it is kept
                conn.execute("ROLLBACK")
                result = (False, exc)
            else:
                conn.execute("COMMIT")
                self.commits += 1
            self.ops += 1
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            result = (False, exc)
        loop.call_soon_threadsafe(settle, fut, *result)
        return conn

    def submit(self, op: Op) -> asyncio.Future[Any]:
        if self._thread is None:
            raise RuntimeError("store not open")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._q.put((op, fut, loop))
        return fut

    async def run(self, op: Op) -> Any:
        return await self.submit(op)

    async def close(self) -> None:
        if self._thread is None:
            return
        self._q.put(STOP)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        self._thread = None

