"""What both Redis brokers share: the lazy import of ``redis`` (the ``redis`` extra), and the
mapping of Redis failures to statuses (the cause is logged on the server, not sent)."""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from types import ModuleType
from typing import Any

from ..errors import Unavailable

__all__ = ["LOG", "AutoPipeline", "import_redis", "redis_errors", "unavailable"]

LOG = logging.getLogger("wirecall.pubsub")


def import_redis() -> ModuleType:
    """``redis.asyncio``, or one line naming the extra to install."""
    try:
        import redis.asyncio as aioredis
    except ImportError:
        raise ImportError(
            "the Redis brokers need redis-py: pip install 'wirecall[redis]'") from None
    return aioredis


def redis_errors() -> tuple[type[BaseException], ...]:
    import redis.exceptions as rex

    return (rex.ConnectionError, rex.TimeoutError, OSError)


def unavailable(what: str, exc: BaseException, **extra: Any) -> Unavailable:
    """The error a caller gets when Redis failed (details stay in the server's log)."""
    LOG.warning("%s: %r %s", what, exc, extra or "")
    return Unavailable(message=f"{what}: the Redis broker is unavailable")


class AutoPipeline:
    """Commands from many tasks on one connection, pipelined: what is asked during one
    event-loop turn goes out in one write, the replies come back in order (the technique of
    ioredis's and Lettuce's auto-pipelining; redis-py has none). A publisher with many
    ``Publish`` calls in flight then pays one syscall and no pool round trip per batch.
    A connection failure fails the commands in flight (their callers retry); the next command
    reconnects."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._conn: Any = None
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._pending: deque[asyncio.Future[Any]] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None

    async def execute(self, *args: Any) -> Any:
        return await self.submit(*args)

    def submit(self, *args: Any) -> asyncio.Future[Any]:
        """Queue one command; the future of its reply (no task, no wait: a caller may have
        many in flight and collect them later)."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((args, fut))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())
        return fut

    async def _write(self) -> None:
        await asyncio.sleep(0)  # let this loop turn's commands join the batch
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                conn = self._conn
                if conn is None:
                    conn = self._pool.make_connection()
                    await conn.connect()
                    self._conn = conn
                self._pending.extend(f for _, f in batch)
                await conn.send_packed_command(conn.pack_commands([a for a, _ in batch]),
                                               check_health=False)
                if self._reader is None or self._reader.done():
                    self._reader = asyncio.get_running_loop().create_task(self._read(conn))
            except Exception as exc:
                self._fail(exc, [f for _, f in batch])

    async def _read(self, conn: Any) -> None:
        import redis.exceptions as rex

        while self._pending:
            try:
                reply = await conn.read_response(timeout=math.inf)
            except rex.ResponseError as exc:  # an error reply: that command's, go on
                fut = self._pending.popleft()
                if not fut.done():
                    fut.set_exception(exc)
                continue
            except Exception as exc:
                self._fail(exc, [])
                return
            fut = self._pending.popleft()
            if not fut.done():
                fut.set_result(reply)

    def _fail(self, exc: BaseException, extra: list[asyncio.Future[Any]]) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            asyncio.get_running_loop().create_task(conn.disconnect(nowait=True))
        futs = [*self._pending, *extra]
        self._pending.clear()
        for f in futs:
            if not f.done():
                f.set_exception(exc)

    async def aclose(self) -> None:
        for t in (self._writer, self._reader):
            if t is not None and not t.done():
                t.cancel()
        if self._conn is not None:
            await self._conn.disconnect(nowait=True)
            self._conn = None
        self._fail(ConnectionError("closed"), [f for _, f in self._queue])
        self._queue = []
