"""Eventual consistency without a coordinator: the transactional outbox, its relay, and the
idempotent consumer.

* :func:`add_event` writes an event row **in the caller's local transaction**, beside the
  state change it announces: both commit or neither does.
* :class:`Relay` reads unpublished rows in id order and publishes each (to a Pub/Sub
  :class:`~wirecall.pubsub.broker.Broker` with :func:`broker_publisher`, or to an RPC method
  with :func:`rpc_publisher`), then marks it published. At-least-once: a crash between the
  publish and the mark publishes that event again; a failed publish stops the batch (order
  is kept) and is retried with exponential backoff.
* :func:`consume_once` is the consumer's side: a dedupe row keyed by message id in the
  consumer's own local transaction, so a redelivered event has no second effect.

Works on ``sqlite3`` and psycopg 3 connections (parameterised queries only).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from .barrier import Cursor

__all__ = [
    "INBOX_TABLE",
    "OUTBOX_TABLE",
    "Relay",
    "add_event",
    "broker_publisher",
    "consume_once",
    "create_tables",
    "rpc_publisher",
]

log = logging.getLogger("wirecall.txn.outbox")

OUTBOX_TABLE = "wirecall_outbox"
INBOX_TABLE = "wirecall_inbox"
Publish = Callable[[str, Any, str], Awaitable[Any]]


def _pg(cur: Any) -> bool:
    return type(cur).__module__.startswith("psycopg")


def _q(cur: Any, sql: str) -> str:
    return sql.replace("?", "%s") if _pg(cur) else sql


def create_tables(cur: Cursor) -> None:
    serial = "BIGSERIAL PRIMARY KEY" if _pg(cur) else "INTEGER PRIMARY KEY AUTOINCREMENT"
    real = "DOUBLE PRECISION" if _pg(cur) else "REAL"
    cur.execute(f"""CREATE TABLE IF NOT EXISTS {OUTBOX_TABLE} (
        id {serial}, msg_id TEXT NOT NULL UNIQUE, topic TEXT NOT NULL, payload TEXT NOT NULL,
        created_at {real} NOT NULL, published_at {real})""")
    cur.execute(f"""CREATE TABLE IF NOT EXISTS {INBOX_TABLE} (
        consumer TEXT NOT NULL, msg_id TEXT NOT NULL, at {real} NOT NULL,
        PRIMARY KEY (consumer, msg_id))""")


def add_event(cur: Cursor, topic: str, payload: Any, msg_id: str | None = None) -> str:
    """Queue an event in the caller's open transaction; returns its message id."""
    if not isinstance(topic, str) or not topic:
        raise ValueError("topic must be a non-empty string")
    mid = msg_id or uuid.uuid4().hex
    cur.execute(_q(cur, f"INSERT INTO {OUTBOX_TABLE} (msg_id, topic, payload, created_at) "
                        "VALUES (?, ?, ?, ?)"), (mid, topic, json.dumps(payload), time.time()))
    return mid


def consume_once(cur: Cursor, consumer: str, msg_id: str,
                 business: Callable[[Cursor], Any]) -> bool:
    """Run ``business(cur)`` once per ``(consumer, msg_id)``, inside the caller's open
    transaction; False for a duplicate delivery."""
    cur.execute(_q(cur, f"INSERT INTO {INBOX_TABLE} (consumer, msg_id, at) VALUES (?, ?, ?) "
                        "ON CONFLICT DO NOTHING"), (consumer, msg_id, time.time()))
    if cur.rowcount == 0:
        return False
    business(cur)
    return True


def broker_publisher(broker: Any) -> Publish:
    """Publish to a Pub/Sub broker: the message is ``{"msg_id", "payload"}`` as JSON."""

    async def publish(topic: str, payload: Any, msg_id: str) -> Any:
        return await broker.publish(topic, json.dumps({"msg_id": msg_id, "payload": payload}))

    return publish


def rpc_publisher(client: Any, method: str, timeout: float = 5.0) -> Publish:
    """Call ``method`` with the named parameters ``msg_id``, ``topic``, ``payload``."""

    async def publish(topic: str, payload: Any, msg_id: str) -> Any:
        return await client.invoke(method, {"msg_id": msg_id, "topic": topic,
                                            "payload": payload}, timeout=timeout)

    return publish


class Relay:
    """Publish the outbox at least once, in order. ``connect()`` returns a DB-API connection
    (``sqlite3`` or psycopg, not in autocommit mode), opened and used in the relay's own
    worker thread."""

    def __init__(self, connect: Callable[[], Any], publish: Publish, *, batch: int = 100,
                 interval: float = 0.2, max_backoff: float = 10.0) -> None:
        self.connect = connect
        self.publish = publish
        self.batch = batch
        self.interval = interval
        self.max_backoff = max_backoff
        self.published = 0
        self.failures = 0
        self._conn: Any = None
        self._stop = asyncio.Event()
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="outbox")

    def _db(self) -> Any:
        if self._conn is None:
            self._conn = self.connect()
        return self._conn

    def _pending(self) -> list[tuple[int, str, str, str]]:
        conn = self._db()
        cur = conn.cursor()
        cur.execute(_q(cur, f"SELECT id, msg_id, topic, payload FROM {OUTBOX_TABLE} "
                            "WHERE published_at IS NULL ORDER BY id LIMIT ?"), (self.batch,))
        rows = [tuple(r) for r in cur.fetchall()]
        conn.commit()
        return rows

    def _mark(self, row_id: int) -> None:
        conn = self._db()
        cur = conn.cursor()
        cur.execute(_q(cur, f"UPDATE {OUTBOX_TABLE} SET published_at = ? WHERE id = ?"),
                    (time.time(), row_id))
        conn.commit()

    async def run_once(self) -> int:
        """Publish what is pending now; returns how many were published."""
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(self._thread, self._pending)
        done = 0
        for row_id, msg_id, topic, payload in rows:
            await self.publish(topic, json.loads(payload), msg_id)
            await loop.run_in_executor(self._thread, self._mark, row_id)
            done += 1
            self.published += 1
        return done

    async def run(self) -> None:
        """Until :meth:`stop`: poll, publish, back off exponentially while publishing fails."""
        backoff = 0.0
        while not self._stop.is_set():
            try:
                n = await self.run_once()
                backoff = 0.0
            except Exception as exc:  # the broker or the database is down: try again later
                self.failures += 1
                backoff = min(self.max_backoff, max(self.interval, backoff * 2))
                log.warning("outbox relay: %s; retrying in %.2fs", exc, backoff)
                n = 0
            if n == 0 or backoff:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), backoff or self.interval)

    def stop(self) -> None:
        self._stop.set()

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Close the connection (in its thread) and the thread."""
        self._thread.submit(self._close_conn).result()
        self._thread.shutdown()
