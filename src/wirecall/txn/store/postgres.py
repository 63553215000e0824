"""The shared store: PostgreSQL through psycopg 3 (``pip install 'wirecall[txn-postgres]'``).

A few writer threads (``writers``, 4), each owning one connection and committing in groups,
like the SQLite store: operations queued while a commit was in flight run in the next
transaction of a free writer, and all of them are answered after that one commit. If any
operation of a group fails (a deadlock with another coordinator, a bug), the group is rolled
back and each of its operations is run again in a transaction of its own, so one failure
fails alone. The connections are in autocommit mode: a group is ``BEGIN`` ... ``COMMIT``, but
an operation alone that is one statement (:func:`.sql.single`) is sent as just that statement,
its own implicit transaction, durable when its answer arrives: one round trip instead of three.

Several coordinators may use the same database: due transactions are claimed with
``FOR UPDATE SKIP LOCKED`` and held by a lease that every write of the owner renews and
checks (a coordinator that lost its lease writes nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from typing import Any

from . import sql
from .base import STOP, Store, run_writer, settle
from .pq import PqCursor, broken
from .sql import Dialect, Op

__all__ = ["EXTRA_HINT", "PostgresStore"]

EXTRA_HINT = "the PostgreSQL store needs psycopg 3: pip install 'wirecall[txn-postgres]'"


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise RuntimeError(EXTRA_HINT) from exc
    return psycopg


def _commit(cur: Any) -> None:
    cur.execute("COMMIT")
    if cur.statusmessage != "COMMIT":  # PostgreSQL answers ROLLBACK to a failed transaction
        raise RuntimeError(f"transaction not committed: {cur.statusmessage}")


def _rollback(conn: Any) -> None:
    if conn.pgconn.transaction_status != _psycopg().pq.TransactionStatus.IDLE:
        PqCursor(conn.pgconn).execute("ROLLBACK")


class PostgresStore(Store):
    def __init__(self, url: str, *, writers: int = 4, max_group: int = 256) -> None:
        if writers < 1:
            raise ValueError("writers must be at least 1")
        self.url = url
        self.writers = writers
        self.max_group = max_group
        self.dialect = Dialect("postgres")
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self.commits = 0
        self.ops = 0

    async def open(self) -> None:
        _psycopg()
        if self._threads:
            return
        loop = asyncio.get_running_loop()
        for i in range(self.writers):
            ready: asyncio.Future[None] = loop.create_future()
            t = threading.Thread(target=self._main, args=(loop, ready),
                                 name=f"wirecall-txn-pg-{i}", daemon=True)
            t.start()
            self._threads.append(t)
            await ready

    def _connect(self) -> Any:
        conn = _psycopg().connect(self.url, autocommit=False, connect_timeout=10)
        with conn.cursor() as cur:
            # PqCursor encodes and decodes text as UTF-8 itself: the session must agree
            cur.execute("SET client_encoding TO 'UTF8'")
            cur.execute("SELECT pg_advisory_xact_lock(7710013)")  # one schema creator at a time
            for stmt in sql.schema(self.dialect):
                cur.execute(stmt)
        conn.commit()
        conn.autocommit = True  # transactions are explicit from here on (see _run_group)
        return conn

    def _main(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        run_writer(loop, ready, self._q, self.max_group, self._connect, self._run_group)

    def _run_group(self, conn: Any, group: list[Any]) -> Any:
        results: list[tuple[bool, Any]]
        try:
            if len(group) == 1:
                results = [self._run_alone(conn, group[0][0])]
            else:
                cur = PqCursor(conn.pgconn)
                cur.execute("BEGIN")
                results = [(True, op(cur, self.dialect)) for op, _f, _l in group]
                _commit(cur)
                self.commits += 1
        except Exception as exc:
            if broken(conn.pgconn):  # the connection is gone: fail this group, reconnect
                results = [(False, exc)] * len(group)
                conn = self._reconnect(conn)
            else:  # one op failed (or a deadlock): each again, alone
                conn, results = self._one_by_one(conn, group)
        self.ops += len(group)
        for (ok, value), (_op, fut, loop) in zip(results, group, strict=True):
            loop.call_soon_threadsafe(settle, fut, ok, value)
        return conn

    def _one_by_one(self, conn: Any, group: list[Any]) -> tuple[Any, list[tuple[bool, Any]]]:
        results: list[tuple[bool, Any]] = []
        try:
            _rollback(conn)
        except Exception as exc:  # gone: every op fails, reconnect
            return self._reconnect(conn), [(False, exc)] * len(group)
        for op, _f, _l in group:
            try:
                results.append(self._run_alone(conn, op))
            except Exception as exc:  # the connection broke under it
                results.append((False, exc))
        if broken(conn.pgconn):
            conn = self._reconnect(conn)
        return conn, results

    def _run_alone(self, conn: Any, op: Op) -> tuple[bool, Any]:
        """``op`` in a transaction of its own: its failure is its result (a broken
        connection is raised, for the group to reconnect)."""
        cur = PqCursor(conn.pgconn)
        try:
            if getattr(op, "single", False):  # autocommit: the statement is the transaction
                value = op(cur, self.dialect)
            else:
                cur.execute("BEGIN")
                value = op(cur, self.dialect)
                _commit(cur)
            self.commits += 1
            return True, value
        except Exception as exc:  # this op's failure goes to its caller
            if broken(conn.pgconn):
                raise
            _rollback(conn)
            return False, exc

    def _reconnect(self, conn: Any) -> Any:
        with contextlib.suppress(Exception):
            conn.close()
        try:
            return self._connect()
        except Exception:
            return conn  # still down: the next group fails on it and reconnects again

    def submit(self, op: Op) -> asyncio.Future[Any]:
        if not self._threads:
            raise RuntimeError("store not open")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._q.put((op, fut, loop))
        return fut

    async def run(self, op: Op) -> Any:
        return await self.submit(op)

    async def close(self) -> None:
        if not self._threads:
            return
        for _ in self._threads:
            self._q.put(STOP)
        loop = asyncio.get_running_loop()
        for t in self._threads:
            await loop.run_in_executor(None, t.join)
        self._threads = []
