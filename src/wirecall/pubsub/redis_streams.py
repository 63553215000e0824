"""The Redis Streams broker (``redis+streams://host:port/db``): at-least-once.

* ``publish`` is ``XADD topic [MAXLEN ~ n] [MINID ~ now-age] * m <message>``: the message is
  stored before ``Publish`` answers (retention: ``maxlen`` entries and/or ``max_age_ms``);
* a subscription is a **consumer** in a **consumer group** (``group``, default ``"wirecall"``;
  a new group starts at ``start``, default ``$``: what is published from then on). Consumers
  of one group share its messages, each to one of them; every group gets every message;
* a message is **acknowledged** (``XACK``) when the subscriber has taken it: when it asks for
  the next one, or, with ``ack_lag=n``, once ``n`` more were taken after it (the service
  sets ``n`` to the wire's flow-control window in messages, so that a message is acked only
  once the remote application has consumed it). Acks are batched per event-loop turn;
* unacknowledged messages of a consumer that died are **claimed** (``XAUTOCLAIM``) by a live
  consumer of the group once idle for ``claim_ms`` (default 30 s);
* a consumer that comes back under its name (``consumer=``) first gets its own pending
  entries again (``XREADGROUP ... 0``), then new ones: it resumes after the last acked id;
  after a Redis connection failure the subscription reconnects with backoff and does the same;
* ``start=`` on a subscription without a group is a **replay**: ``XREAD`` from an id
  (``0`` for all retained, an id ``ms-seq``: entries after it, ``@<unix ms>``: from that time)
  then live, read-only (no group, no acks), resumed after the last id read on reconnect;
* a subscriber's buffer (``limit``) is filled only while it has room: a slow subscriber
  lags behind in Redis (within the retention) instead of losing messages or slowing others.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import time
from collections import deque
from typing import Any

from ..errors import InvalidArgument
from .buffer import SubscriberBuffer, check_policy
from .options import positive_int, reject_unknown
from .redis_common import LOG, AutoPipeline, RespLink, import_redis, redis_errors, unavailable

__all__ = ["RedisStreamsBroker", "replay_cursor"]

_names = itertools.count(1)
_MAX_SEQ = 18446744073709551615


def replay_cursor(start: str) -> str:
    """The XREAD cursor (exclusive) for a replay start: ``0``, ``$``, ``ms-seq`` or ``@ms``."""
    if start in ("0", "$"):
        return start
    if start.startswith("@"):
        ms = positive_int("start (@unix ms)", start[1:], zero=True)
        return f"{ms - 1}-{_MAX_SEQ}" if ms else "0"
    ms_s, _, seq_s = start.partition("-")
    positive_int("start (stream id ms)", ms_s, zero=True)
    if seq_s:
        positive_int("start (stream id seq)", seq_s, zero=True)
    return start


class _StreamSubscription:
    def __init__(self, broker: RedisStreamsBroker, topic: str, group: str | None,
                 consumer: str | None, start: str | None, ack_lag: int = 0) -> None:
        self.broker = broker
        self.topic = topic
        self.group = group
        self.consumer = consumer or (
            f"{socket.gethostname()}-{os.getpid()}-{next(_names)}" if group else "")
        self.named = consumer is not None
        self.start = start
        self.buffer: SubscriberBuffer[tuple[bytes, str]] = SubscriberBuffer(broker.limit)
        self._live: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._room = asyncio.Event()
        self._room.set()
        self._last: bytes | None = None
        self.ack_lag = ack_lag
        self._taken: deque[bytes] = deque()  # taken, held back by ack_lag
        self._outstanding: set[bytes] = set()  # delivered to the buffer, not acked yet
        self._acks: list[bytes] = []
        self._acking: asyncio.Task[None] | None = None
        self._closed = False
        self._conn: RespLink | None = None
        self.redeliveries = 0  # entries claimed from dead consumers
        self._task = asyncio.get_running_loop().create_task(
            self._run_group() if group else self._run_replay())

    dropped = 0  # never: a slow subscriber lags in Redis instead

    async def live(self) -> None:
        await asyncio.shield(self._live)

    def __aiter__(self) -> _StreamSubscription:
        return self

    async def __anext__(self) -> str:
        if self._last is not None:  # the previous message was taken: acknowledge it
            taken = self._taken  # (or the one ack_lag messages before it)
            taken.append(self._last)
            self._last = None
            while len(taken) > self.ack_lag:
                self._ack(taken.popleft())
        entry_id, message = await self.buffer.get()
        if self.group:
            self._last = entry_id
        if self.buffer.room >= self.broker.batch:
            self._room.set()
        return message

    # -- acks -------------------------------------------------------------------------

    def _ack(self, entry_id: bytes) -> None:
        self._outstanding.discard(entry_id)
        self._acks.append(entry_id)
        if self._acking is None or self._acking.done():
            self._acking = asyncio.get_running_loop().create_task(self._flush_acks())

    async def _flush_acks(self) -> None:
        await asyncio.sleep(0)  # the acks of this loop turn go in one XACK
        while self._acks:
            ids, self._acks = self._acks, []
            try:
                # pipelined: the acks of all subscriptions (and the XADDs) of a loop turn
                # go to Redis in one write
                await self.broker._pipe.execute("XACK", self.topic, self.group, *ids)
            except redis_errors() as exc:  # unacked: redelivered later (at-least-once)
                LOG.info("XACK %s %s: %r", self.topic, self.group, exc)
                return

    # -- readers ----------------------------------------------------------------------

    async def _command(self, *args: Any) -> Any:
        """One command on this subscription's own connection (blocking reads hold it;
        cancelling a blocked read closes it at once)."""
        link = self._conn
        if link is None or link.transport is None:
            link = self._conn = await RespLink.open(self.broker.blocking_pool)
        try:
            return await link.command(*args)
        except BaseException as exc:
            if not isinstance(exc, self.broker._response_error):  # an error reply: go on
                self._conn = None
                link.close()
            raise

    def _deliver(self, entries: list[Any]) -> None:
        for entry_id, fields in entries:
            if not fields or entry_id in self._outstanding:
                continue  # trimmed meanwhile, or already in our buffer
            data = b""
            for i in range(0, len(fields) - 1, 2):
                if fields[i] == b"m":
                    data = fields[i + 1]
            self.buffer.put((entry_id, data.decode("utf-8", "replace")))
            if self.group:
                self._outstanding.add(entry_id)
        if self.buffer.room < self.broker.batch:
            self._room.clear()

    async def _ensure_group(self, start: str) -> None:
        try:
            await self.broker.redis.xgroup_create(self.topic, self.group, id=start,
                                                  mkstream=True)
        except Exception as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _run_group(self) -> None:
        b = self.broker
        backoff, start = 0.05, b.start
        while not self._closed:
            try:
                await self._ensure_group(start)
                if not self._live.done():
                    self._live.set_result(None)
                cursor, next_claim = "0", 0.0  # own pending entries first, then new ones
                backoff = 0.05
                while True:
                    await self._room.wait()
                    now = time.monotonic()
                    if cursor == ">" and now >= next_claim:
                        next_claim = now + b.claim_ms / 2000
                        _next, claimed, *_ = await self._command(
                            "XAUTOCLAIM", self.topic, self.group, self.consumer, b.claim_ms,
                            "0-0", "COUNT", b.batch)
                        fresh = [e for e in claimed if e[0] not in self._outstanding]
                        self.redeliveries += len(fresh)
                        self._deliver(fresh)
                    block = ("BLOCK", b.block_ms) if cursor == ">" else ()
                    resp = await self._command(
                        "XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", b.batch,
                        *block, "STREAMS", self.topic, cursor)
                    entries = resp[0][1] if resp else []
                    if cursor != ">":
                        cursor = entries[-1][0] if entries else ">"
                    self._deliver(entries)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if "NOGROUP" in str(exc):  # Redis lost the group (restart without AOF):
                    start = "0"  # everything in the stream now is new to us
                    continue
                if not isinstance(exc, redis_errors()):
                    self.buffer.fail(unavailable("subscribe", exc, topic=self.topic))
                    return
                LOG.warning("redis streams %s: %r; reconnecting", self.topic, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, b.retry_max)

    async def _run_replay(self) -> None:
        b = self.broker
        backoff = 0.05
        cursor = replay_cursor(self.start or "$")
        while not self._closed:
            try:
                if cursor == "$":  # pin "now" once, so a reconnect resumes from it
                    last = await b.redis.xrevrange(self.topic, count=1)
                    cursor = last[0][0].decode() if last else "0"
                if not self._live.done():
                    self._live.set_result(None)
                backoff = 0.05
                while True:
                    await self._room.wait()
                    resp = await self._command("XREAD", "COUNT", b.batch, "BLOCK",
                                               b.block_ms, "STREAMS", self.topic, cursor)
                    if resp:
                        entries = resp[0][1]
                        cursor = entries[-1][0].decode()
                        self._deliver(entries)
            except asyncio.CancelledError:
                raise
            except redis_errors() as exc:
                LOG.warning("redis streams replay %s: %r; reconnecting", self.topic, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, b.retry_max)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.buffer.close()
        self._task.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:  # (closing the socket also ends a blocked read for sure)
            conn.close()
        await asyncio.wait([self._task], timeout=2)
        if not self._live.done():
            self._live.cancel()
        if self._acking is not None:
            with contextlib.suppress(Exception):
                await self._acking
        self.broker._subs.discard(self)
        if self.group and not self.named and not self._outstanding and not self._taken \
                and self._last is None:
            with contextlib.suppress(Exception):  # nothing pending: the consumer can go
                await self.broker.redis.xgroup_delconsumer(self.topic, self.group,
                                                           self.consumer)

    async def __aenter__(self) -> _StreamSubscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class RedisStreamsBroker:
    """Redis Streams, consumer groups, at-least-once (see the module docstring)."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, group: str = "wirecall",
                 start: str = "$", maxlen: int | None = None, max_age_ms: int | None = None,
                 claim_ms: int = 30_000, batch: int = 100, block_ms: int = 1_000,
                 limit: int = 1_000, retry_max: float = 1.0, max_connections: int = 32,
                 **redis_options: Any) -> None:
        check_policy("drop_oldest", limit)
        reject_unknown("redis+streams://", redis_options, ("socket_connect_timeout",))
        if start != "$" and start != "0":
            replay_cursor(start)
        aioredis = import_redis()
        self.url = url
        self.group = group
        self.start = start
        self.maxlen = maxlen
        self.max_age_ms = max_age_ms
        self.claim_ms = claim_ms
        self.batch = min(batch, limit)
        self.block_ms = block_ms
        self.limit = limit
        self.retry_max = retry_max
        opts = {"socket_connect_timeout": 2.0, "protocol": 2, **redis_options}
        # commands share a bounded pool that waits for a free connection when all are busy
        self.redis: Any = aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=10, **opts))
        #: where each subscription's own connection comes from (its blocking reads)
        self.blocking_pool: Any = aioredis.ConnectionPool.from_url(url, **opts)
        self._pipe = AutoPipeline(self.blocking_pool)  # XADD: pipelined on its own connection
        self._errors = redis_errors()
        import redis.exceptions as rex

        self._response_error = rex.ResponseError
        self._subs: set[_StreamSubscription] = set()

    def _xadd(self, topic: str, message: str) -> list[Any]:
        args: list[Any] = ["XADD", topic]
        if self.maxlen is not None:
            args += ["MAXLEN", "~", self.maxlen]
        if self.max_age_ms is not None:
            args += ["MINID", "~", f"{int(time.time() * 1000) - self.max_age_ms}-0"]
        args += ["*", "m", message]
        return args

    def publish_nowait(self, topic: str, message: str) -> asyncio.Future[Any]:
        """Queue an ``XADD`` on the pipelined connection without waiting: the future of its
        reply (the entry id; the message is stored once it is done). A failure is not retried
        here: the caller publishes that message again with :meth:`publish`."""
        return self._pipe.submit(*self._xadd(topic, message))

    async def publish(self, topic: str, message: str) -> int:
        args = self._xadd(topic, message)
        for attempt in (1, 2):  # a connection Redis dropped fails once: retry on a fresh one
            try:
                await self._pipe.execute(*args)  # pipelined with the other publishes
                return 1
            except self._errors as exc:
                if attempt == 2:
                    raise unavailable("publish", exc, topic=topic) from None
        return 1

    #: subscriptions acknowledge what their subscriber took (the service passes ``ack_lag``)
    acknowledges = True

    def subscribe(self, topic: str, *, pattern: bool = False, group: str | None = None,
                  consumer: str | None = None, start: str | None = None, ack_lag: int = 0,
                  **options: Any) -> _StreamSubscription:
        reject_unknown("redis+streams:// subscription", options, ())
        if pattern:
            raise InvalidArgument(message="pattern: Redis Streams have no pattern "
                                  "subscriptions (use redis:// for patterns)")
        if start is not None:
            if group is not None or consumer is not None:
                raise InvalidArgument(message="start: a replay reads without a group; "
                                      "do not give group or consumer with it")
            replay_cursor(start)
            sub = _StreamSubscription(self, topic, None, None, start)
        else:
            sub = _StreamSubscription(self, topic, group or self.group, consumer, None,
                                      positive_int("ack_lag", ack_lag, zero=True))
        self._subs.add(sub)
        return sub

    async def aclose(self) -> None:
        for sub in list(self._subs):
            await sub.aclose()
        await self._pipe.aclose()
        await self.redis.aclose()
        await self.blocking_pool.disconnect()
