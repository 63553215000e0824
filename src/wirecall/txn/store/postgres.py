"""The shared store: PostgreSQL through psycopg 3 (``pip install 'wirecall[txn-postgres]'``).

A small pool of connections, each owned by one worker thread; every operation is one
transaction (PostgreSQL commits concurrent transactions in groups itself). Several
coordinators may use the same database: due transactions are claimed with
``FOR UPDATE SKIP LOCKED`` and held by a lease that every write of the owner renews and
checks (a coordinator that lost its lease writes nothing).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

from . import sql
from .base import Store
from .sql import Dialect, Op

__all__ = ["PostgresStore"]

EXTRA_HINT = "the PostgreSQL store needs psycopg 3: pip install 'wirecall[txn-postgres]'"


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise RuntimeError(EXTRA_HINT) from exc
    return psycopg


class PostgresStore(Store):
    def __init__(self, url: str, *, pool_size: int = 16) -> None:
        self.url = url
        self.pool_size = pool_size
        self.dialect = Dialect("postgres")
        self._local = threading.local()
        self._conns: list[Any] = []
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = _psycopg().connect(self.url, autocommit=False, connect_timeout=10)
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def _run_sync(self, op: Op) -> Any:
        psycopg = _psycopg()
        for attempt in range(3):
            conn = self._conn()
            try:
                with conn.cursor() as cur:
                    result = op(cur, self.dialect)
                conn.commit()
                return result
            except psycopg.errors.SerializationFailure:
                conn.rollback()
                if attempt == 2:
                    raise
            except psycopg.OperationalError:
                self._local.conn = None  # a broken connection: dial again next time
                raise
            except BaseException:
                conn.rollback()
                raise
        raise AssertionError("unreachable")

    async def open(self) -> None:
        _psycopg()
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                self.pool_size, thread_name_prefix="wirecall-txn-pg")

        def create(cur: Any, d: Dialect) -> None:
            cur.execute("SELECT pg_advisory_xact_lock(7710013)")  # one schema creator at a time
            for stmt in sql.schema(d):
                cur.execute(stmt)

        await self.run(create)

    async def run(self, op: Op) -> Any:
        if self._pool is None:
            raise RuntimeError("store not open")
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._run_sync, op)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        with self._lock:
            for c in self._conns:
                c.close()
            self._conns.clear()
