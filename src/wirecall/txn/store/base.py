"""The store interface: run one :mod:`.sql` operation in one durable local transaction."""

from __future__ import annotations

import abc
import asyncio
import queue
from collections.abc import Callable
from typing import Any

from .sql import Op

__all__ = ["DEFAULT_URL", "STOP", "Store", "run_writer", "settle"]

DEFAULT_URL = "sqlite:///wirecall-txn.db"
STOP = object()  # queued once per writer thread to stop it


class Store(abc.ABC):
    """An async facade over a database; every :meth:`run` is one committed transaction."""

    url: str

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create the tables if they are missing."""

    @abc.abstractmethod
    async def run(self, op: Op) -> Any:
        """Run ``op`` in its own transaction and return its result once it is durable."""

    def submit(self, op: Op) -> asyncio.Future[Any]:
        """Start ``op`` now; the future resolves as :meth:`run` returns (once it is durable).
        Operations submitted by one task are committed in submission order only on a store
        with one writer (SQLite): await one before submitting another that depends on it."""
        return asyncio.ensure_future(self.run(op))

    @abc.abstractmethod
    async def close(self) -> None: ...


def settle(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """Resolve ``fut`` with a result or an exception (called on its loop)."""
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


def run_writer(
    loop: asyncio.AbstractEventLoop,
    ready: asyncio.Future[None],
    q: queue.SimpleQueue[Any],
    max_group: int,
    connect: Callable[[], Any],
    run_group: Callable[[Any, list[Any]], Any],
) -> None:
    """A writer thread's body (group commit): connect (answering ``ready``), then take every
    ``(op, fut, loop)`` queued while the previous group ran, up to ``max_group``, and hand them
    to ``run_group(conn, group)``, which returns the connection to go on with; until
    :data:`STOP` (put back for the other writers when it ends a group)."""
    try:
        conn = connect()
    except Exception as exc:  # handed to the awaiting open()
        loop.call_soon_threadsafe(settle, ready, False, exc)
        return
    loop.call_soon_threadsafe(settle, ready, True, None)
    try:
        while True:
            first = q.get()
            if first is STOP:
                return
            group = [first]
            while len(group) < max_group:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
                if item is STOP:
                    q.put(STOP)
                    break
                group.append(item)
            conn = run_group(conn, group)
    finally:
        conn.close()
