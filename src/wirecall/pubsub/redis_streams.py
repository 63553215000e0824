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
from collections.abc import Callable
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
                 consumer: str | None, start: str | None, ack_lag: int = 0,
                 convert: Callable[[str], Any] | None = None) -> None:
        self.broker = broker
        self.topic = topic
        self.convert = convert
        self.group = group
        self.consumer = consumer or (
            f"{socket.gethostname()}-{os.getpid()}-{next(_names)}" if group else "")
        self.named = consumer is not None
        self.start = start
        #: (entry id, message): the message a str, or what ``convert`` made of it (the
        #: confirmation the service puts first has no id)
        self.buffer: SubscriberBuffer[tuple[bytes | None, Any]] = SubscriberBuffer(broker.limit)
        self._live: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._room = asyncio.Event()  # room for a batch (replays: their reader waits on it)
        self._room.set()
        self._last: bytes | None = None
        self.ack_lag = ack_lag
        self._taken: deque[bytes] = deque()  # taken, held back by ack_lag
        self._outstanding: set[bytes] = set()  # delivered to the buffer, not acked yet
        self._acks: list[bytes] = []  # to acknowledge at the end of this loop turn
        self._acking: asyncio.Future[Any] | None = None  # the last XACK sent
        self._closed = False
        self._conn: RespLink | None = None
        self.redeliveries = 0  # entries claimed from dead consumers
        # a group consumer is read by its topic's _GroupReader (with the other consumers of
        # that topic in this process); a replay reads by itself
        self._reader: _GroupReader | None = None
        self._cursor = "0"  # the group read: own pending entries first ("0"), then ">"
        self._wants = True  # there may be entries for it: read it in the next round
        self._new_group: str | None = broker.start  # the group must be made first (at this)
        self._next_claim = 0.0
        self._task: asyncio.Task[None] | None = None
        if group:
            self._reader = broker._group_reader(topic)
            self._reader.add(self)
        else:
            self._task = asyncio.get_running_loop().create_task(self._run_replay())

    dropped = 0  # never: a slow subscriber lags in Redis instead

    async def live(self) -> None:
        await asyncio.shield(self._live)

    def __aiter__(self) -> _StreamSubscription:
        return self

    def put_first(self, item: Any) -> None:
        """``item`` before every message (the service's confirmation): nothing to ack."""
        self.buffer.put_first((None, item))

    async def __anext__(self) -> Any:  # a str, or what ``convert`` made of it
        if self._last is not None:  # the previous message was taken: acknowledge it
            taken = self._taken  # (or the one ack_lag messages before it)
            taken.append(self._last)
            self._last = None
            while len(taken) > self.ack_lag:
                self._ack(taken.popleft())
        buf = self.buffer
        items = buf._items  # (what buf.get() does when it need not wait, without a coroutine)
        entry_id, message = items.popleft() if items else await buf.get()
        if entry_id is not None and self.group:
            self._last = entry_id
        if not self._room.is_set() and buf.limit - len(items) >= self.broker.batch:
            self._room.set()
            if self._reader is not None and self._wants:
                self._reader.kick()
        return message

    # -- acks -------------------------------------------------------------------------

    def _ack(self, entry_id: bytes) -> None:
        self._outstanding.discard(entry_id)
        if not self._acks:  # the first of this loop turn: the broker sends them at its end
            self.broker._ack_soon(self)
        self._acks.append(entry_id)

    def _send_acks(self) -> None:
        """One XACK with this loop turn's ids (pipelined: the acks of all subscriptions and
        the XADDs of a loop turn go to Redis in one write)."""
        ids, self._acks = self._acks, []
        if ids:
            self._acking = fut = self.broker._pipe.submit("XACK", self.topic, self.group, *ids)
            fut.add_done_callback(self._acked)

    def _acked(self, fut: asyncio.Future[Any]) -> None:
        if not fut.cancelled() and fut.exception() is not None:  # unacked: redelivered later
            LOG.info("XACK %s %s: %r", self.topic, self.group, fut.exception())

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

    def _deliver(self, entries: list[Any], made: dict[Any, Any] | None = None) -> None:
        """Into the buffer; ``made``: the items a round already made, by (entry id,
        convert): the consumers of a topic share one item per message."""
        conv = self.convert
        put = self.buffer.put
        outstanding = self._outstanding
        for entry_id, fields in entries:
            if not fields or entry_id in outstanding:
                continue  # trimmed meanwhile, or already in our buffer
            key = (entry_id, conv)
            item = made.get(key) if made is not None else None
            if item is None:
                data = b""
                for i in range(0, len(fields) - 1, 2):
                    if fields[i] == b"m":
                        data = fields[i + 1]
                text = data.decode("utf-8", "replace")
                item = text if conv is None else conv(text)
                if made is not None:
                    made[key] = item
            put((entry_id, item))
            if self.group:
                outstanding.add(entry_id)
        if self.buffer.room < self.broker.batch:
            self._room.clear()

    async def _ensure_group(self, start: str) -> None:
        try:
            await self.broker.redis.xgroup_create(self.topic, self.group, id=start,
                                                  mkstream=True)
        except Exception as exc:
            if "BUSYGROUP" not in str(exc):
                raise

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
        if self._reader is not None:
            self._reader.remove(self)
        conn, self._conn = self._conn, None
        if conn is not None:  # (closing the socket also ends a blocked read for sure)
            conn.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=2)
        if not self._live.done():
            self._live.cancel()
        self._send_acks()  # what was taken is acknowledged before the consumer may go
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


def _id_key(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)


class _GroupReader:
    """Reads one topic for all the group consumers of this process (each consumer its own
    group, or several consumers of one group: every XREADGROUP is its consumer's).

    Instead of a blocking ``XREADGROUP`` per consumer (a connection, a task, a write and a
    read per consumer per batch, and Redis serving each blocked client), one **doorbell**
    (``XREAD COUNT batch BLOCK`` after the newest id seen, its own connection) says that
    something new is in the stream; then one **round** sends a non-blocking ``XREADGROUP``
    for every consumer that may have entries and has room in its buffer, all in one write on
    the broker's pipelined connection (with the XADDs and XACKs), and delivers the replies.
    A consumer whose read came back full, or that had no room and has room again, is read
    in the next round without waiting for the doorbell; a doorbell that times out
    (``block_ms``) makes every consumer read once (claims of dead consumers' entries are due
    on their own clock, ``claim_ms / 2``). A Redis connection failure: every consumer
    resumes with its own pending entries after a backoff, as a fresh subscription does."""

    def __init__(self, broker: RedisStreamsBroker, topic: str) -> None:
        self.broker = broker
        self.topic = topic
        self.subs: list[_StreamSubscription] = []
        self._cursor: bytes | None = None  # the newest entry id seen
        self._cursor_key = (0, 0)
        self._link: RespLink | None = None  # the doorbell's connection
        self._door: asyncio.Future[Any] | None = None
        self._kick: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    def add(self, sub: _StreamSubscription) -> None:
        self.subs.append(sub)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        self.kick()

    def remove(self, sub: _StreamSubscription) -> None:
        if sub in self.subs:
            self.subs.remove(sub)
        if not self.subs:  # the last one: the reader goes
            self.broker._readers.pop(self.topic, None)
            if self._task is not None:
                self._task.cancel()
            self._close_link()

    def kick(self) -> None:
        """A consumer wants reading (new, or room again): wake the reader if it waits."""
        k = self._kick
        if k is not None and not k.done():
            k.set_result(None)

    def _close_link(self) -> None:
        link, self._link, door, self._door = self._link, None, self._door, None
        if door is not None:
            door.add_done_callback(_retrieve)
        if link is not None:
            link.close()

    async def _run(self) -> None:
        b = self.broker
        backoff = 0.05
        while self.subs:
            try:
                while self.subs:
                    await self._round()
                    if any(s._wants and s._room.is_set() for s in self.subs):
                        continue  # a read came back full: go on reading
                    await self._wait(b)
                    backoff = 0.05
            except asyncio.CancelledError:
                self._close_link()
                raise
            except b._errors as exc:
                LOG.warning("redis streams %s: %r; reconnecting", self.topic, exc)
            except Exception:  # a bug: say so, and go on as after a reconnect
                LOG.exception("redis streams %s: reader failed; restarting it", self.topic)
            self._close_link()
            self._cursor = None
            for s in self.subs:  # as after a reconnect: own pending entries first
                s._cursor, s._wants = "0", True
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, b.retry_max)

    async def _wait(self, b: RedisStreamsBroker) -> None:
        """Until the doorbell rings (something after the newest id seen, or ``block_ms``
        passed) or a consumer is kicked."""
        if self._cursor is None:  # start after the newest entry now in the stream
            last = await b._pipe.submit("XREVRANGE", self.topic, "+", "-", "COUNT", 1)
            self._see(last[0][0] if last else b"0-0")
            for s in self.subs:
                s._wants = True
            return
        if self._door is None:
            if self._link is None or self._link.transport is None:
                self._link = await RespLink.open(b.blocking_pool)
            # (COUNT batch: the cursor jumps over what the next round reads anyway)
            self._door = self._link.command("XREAD", "COUNT", b.batch, "BLOCK", b.block_ms,
                                            "STREAMS", self.topic, self._cursor)
        self._kick = kick = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait((self._door, kick), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._kick = None
        door = self._door
        if door is not None and door.done():
            self._door = None
            reply = door.result()  # (a lost connection raises: reconnect)
            if reply:
                self._see(reply[0][1][-1][0])
            for s in self.subs:  # new entries, or block_ms passed: everyone reads once
                s._wants = True

    def _see(self, entry_id: bytes) -> None:
        """The doorbell waits for entries after this id. Only ids that a full round follows
        (the doorbell's own, the newest at the start) may move it: a round's replies may not
        (a consumer read before another's may miss an entry the other got)."""
        key = _id_key(entry_id)
        if key > self._cursor_key or self._cursor is None:
            self._cursor, self._cursor_key = entry_id, key

    async def _round(self) -> None:
        """One XREADGROUP (and XAUTOCLAIM when due) per consumer that wants entries and has
        room, pipelined; then the replies delivered."""
        b = self.broker
        now = time.monotonic()
        sent: list[tuple[_StreamSubscription, asyncio.Future[Any] | None, asyncio.Future[Any]]]
        sent = []
        for s in list(self.subs):
            if not (s._wants and s._room.is_set()):
                continue
            if s._new_group is not None:  # (rare: a new consumer, or Redis lost the group)
                try:
                    await s._ensure_group(s._new_group)
                except b._errors:
                    raise
                except Exception as exc:  # e.g. the key holds another type
                    self._fail(s, exc)
                    continue
                s._new_group = None
                if not s._live.done():
                    s._live.set_result(None)
                if s not in self.subs:
                    continue
            s._wants = False
            claim = None
            if s._cursor == ">" and now >= s._next_claim:
                s._next_claim = now + b.claim_ms / 2000
                claim = b._pipe.submit("XAUTOCLAIM", self.topic, s.group, s.consumer,
                                       b.claim_ms, "0-0", "COUNT", b.batch)
            read = b._pipe.submit("XREADGROUP", "GROUP", s.group, s.consumer, "COUNT",
                                  b.batch, "STREAMS", self.topic, s._cursor)
            sent.append((s, claim, read))
        made: dict[Any, Any] = {}  # one item per message for all the consumers
        for i, (s, claim, read) in enumerate(sent):
            try:
                if claim is not None:
                    _next, claimed, *_ = await claim
                    fresh = [e for e in claimed if e[0] not in s._outstanding]
                    s.redeliveries += len(fresh)
                    s._deliver(fresh)
                resp = await read
            except b._response_error as exc:
                if "NOGROUP" in str(exc):  # Redis lost the group (restart without AOF):
                    s._new_group, s._cursor, s._wants = "0", "0", True  # all of it is new
                else:
                    self._fail(s, exc)
                continue
            except BaseException:  # the connection: the others' replies are lost too
                for _s, c, r in sent[i + 1:]:
                    for f in (c, r):
                        if f is not None:
                            f.add_done_callback(_retrieve)
                raise
            entries = resp[0][1] if resp else []
            if s._cursor != ">":  # own pending entries: until there are none left
                s._cursor = entries[-1][0] if entries else ">"
                s._wants = True
            elif len(entries) >= b.batch:
                s._wants = True  # maybe more
            s._deliver(entries, made)

    def _fail(self, s: _StreamSubscription, exc: BaseException) -> None:
        err = unavailable("subscribe", exc, topic=self.topic)
        s.buffer.fail(err)
        if not s._live.done():
            s._live.set_exception(err)
            s._live.exception()  # (retrieved: whoever waits on live() gets it)
        self.remove(s)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """(A future nobody awaits any more: its failure is expected, not "never retrieved".)"""
    if not fut.cancelled():
        fut.exception()


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
        self._ackers: list[_StreamSubscription] = []  # with acks to send this loop turn
        self._readers: dict[str, _GroupReader] = {}  # by topic

    def _group_reader(self, topic: str) -> _GroupReader:
        r = self._readers.get(topic)
        if r is None:
            r = self._readers[topic] = _GroupReader(self, topic)
        return r

    def _ack_soon(self, sub: _StreamSubscription) -> None:
        if not self._ackers:
            asyncio.get_running_loop().call_soon(self._send_acks)
        self._ackers.append(sub)

    def _send_acks(self) -> None:
        ackers, self._ackers = self._ackers, []
        for sub in ackers:
            sub._send_acks()

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
                await self._pipe.submit(*args)  # pipelined with the other publishes
                return 1
            except self._errors as exc:
                if attempt == 2:
                    raise unavailable("publish", exc, topic=topic) from None
        return 1

    #: subscriptions acknowledge what their subscriber took (the service passes ``ack_lag``)
    acknowledges = True
    #: ``subscribe(..., convert=f)`` is taken (see ``RedisPubSubBroker.converts``): one item
    #: per message for the consumers of a topic read in the same round
    converts = True

    def subscribe(self, topic: str, *, pattern: bool = False, group: str | None = None,
                  consumer: str | None = None, start: str | None = None, ack_lag: int = 0,
                  convert: Callable[[str], Any] | None = None,
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
            sub = _StreamSubscription(self, topic, None, None, start, convert=convert)
        else:
            sub = _StreamSubscription(self, topic, group or self.group, consumer, None,
                                      positive_int("ack_lag", ack_lag, zero=True), convert)
        self._subs.add(sub)
        return sub

    async def aclose(self) -> None:
        for sub in list(self._subs):
            await sub.aclose()
        await self._pipe.aclose()
        await self.redis.aclose()
        await self.blocking_pool.disconnect()
