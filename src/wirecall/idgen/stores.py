"""Segment stores: one row per business tag, ranges allocated atomically.

``SQLiteStore(path)`` (the default, embedded; safe across processes on one host: each
allocation is one ``BEGIN IMMEDIATE`` transaction) and ``PostgresStore(dsn)`` (several nodes
on one database; needs ``pip install 'wirecall[idgen-postgres]'``). :func:`open_store` picks
one from a URL: ``sqlite:///path/to/ids.db`` or ``postgresql://user@host:port/db``.

The table (both)::

    idgen_alloc(tag TEXT PRIMARY KEY, max_id BIGINT NOT NULL, step INTEGER NOT NULL,
                updated_at ...)

``max_id`` is the last ID handed out in a segment; a new tag starts at ``max_id = start - 1``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

from .segment import SegmentStore, UnknownTag

__all__ = ["PostgresStore", "SQLiteStore", "open_store"]

_SCHEMA = ("CREATE TABLE IF NOT EXISTS idgen_alloc (tag TEXT PRIMARY KEY, max_id BIGINT NOT "
           "NULL, step INTEGER NOT NULL, updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)")


def _check_new(tag: str, start: int, step: int) -> None:
    if not tag:
        raise ValueError("tag must not be empty")
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")


class SQLiteStore:
    """Segments in an SQLite file (one connection, used from a worker thread)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)

    def _allocate(self, tag: str, step: int) -> int:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "UPDATE idgen_alloc SET max_id = max_id + ?, updated_at = CURRENT_TIMESTAMP"
                    " WHERE tag = ? RETURNING max_id", (step, tag)).fetchone()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        if row is None:
            raise UnknownTag(tag)
        return int(row[0])

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    async def allocate(self, tag: str, step: int) -> int:
        return await asyncio.to_thread(self._allocate, tag, step)

    async def base_step(self, tag: str) -> int:
        rows = await asyncio.to_thread(
            self._query, "SELECT step FROM idgen_alloc WHERE tag = ?", (tag,))
        if not rows:
            raise UnknownTag(tag)
        return int(rows[0][0])

    async def tags(self) -> list[str]:
        rows = await asyncio.to_thread(self._query, "SELECT tag FROM idgen_alloc ORDER BY tag")
        return [r[0] for r in rows]

    async def create_tag(self, tag: str, *, start: int = 1, step: int = 1000) -> bool:
        _check_new(tag, start, step)
        rows = await asyncio.to_thread(
            self._query, "INSERT INTO idgen_alloc (tag, max_id, step) VALUES (?, ?, ?) "
            "ON CONFLICT (tag) DO NOTHING RETURNING tag", (tag, start - 1, step))
        return bool(rows)

    async def close(self) -> None:
        with self._lock:
            self._db.close()


class PostgresStore:
    """Segments in PostgreSQL (psycopg 3, one async connection, reconnected after a failure)."""

    def __init__(self, dsn: str, *, connect_timeout: float = 5.0) -> None:
        try:
            import psycopg
        except ImportError:
            raise RuntimeError("the PostgreSQL segment store needs psycopg, which is not "
                               "installed: pip install 'wirecall[idgen-postgres]'") from None
        self._psycopg = psycopg
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._ready = False

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = await self._psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, connect_timeout=max(1, int(self.connect_timeout)))
            if not self._ready:
                await self._conn.execute(_SCHEMA)
                self._ready = True
        return self._conn

    async def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        async with self._lock:
            try:
                conn = await self._connection()
                cur = await conn.execute(sql, args)
                return list(await cur.fetchall()) if cur.description else []
            except self._psycopg.OperationalError:
                if self._conn is not None:
                    await self._conn.close()
                self._conn = None
                raise

    async def allocate(self, tag: str, step: int) -> int:
        rows = await self._run(
            "UPDATE idgen_alloc SET max_id = max_id + %s, updated_at = now() WHERE tag = %s "
            "RETURNING max_id", (step, tag))
        if not rows:
            raise UnknownTag(tag)
        return int(rows[0][0])

    async def base_step(self, tag: str) -> int:
        rows = await self._run("SELECT step FROM idgen_alloc WHERE tag = %s", (tag,))
        if not rows:
            raise UnknownTag(tag)
        return int(rows[0][0])

    async def tags(self) -> list[str]:
        return [r[0] for r in await self._run("SELECT tag FROM idgen_alloc ORDER BY tag")]

    async def create_tag(self, tag: str, *, start: int = 1, step: int = 1000) -> bool:
        _check_new(tag, start, step)
        rows = await self._run(
            "INSERT INTO idgen_alloc (tag, max_id, step) VALUES (%s, %s, %s) "
            "ON CONFLICT (tag) DO NOTHING RETURNING tag", (tag, start - 1, step))
        return bool(rows)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


def open_store(url: str) -> SegmentStore:
    """``sqlite:///abs/path.db``, ``sqlite://relative.db`` or ``postgresql://...``."""
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        if not path:
            raise ValueError(f"store URL {url!r}: no file path")
        return SQLiteStore(path)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url)
    raise ValueError(f"store URL {url!r}: use sqlite:///path.db or postgresql://...")
