"""The Redis Pub/Sub broker (``redis://host:port/db``): the tutorial's semantics.

* at-most-once fan-out: ``PUBLISH`` reaches the subscribers connected at that moment;
* one **dedicated connection** per broker carries every ``SUBSCRIBE``/``PSUBSCRIBE`` of this
  process (Redis puts a subscribed connection in a mode where it takes no other command);
  publishing uses a separate pool. The connection subscribes to a channel once however many
  local subscribers it has, and unsubscribes as soon as the last one leaves;
* a subscription is *live* when Redis confirmed the ``SUBSCRIBE`` (the reply, not the send);
* each subscriber has a bounded buffer (:mod:`wirecall.pubsub.buffer`): the reader never
  waits for a subscriber, so Redis never sees a slow consumer and others are not slowed;
* if Redis goes away the connection is re-established with backoff and every channel and
  pattern subscribed again, by itself; messages published while it was away are lost
  (at-most-once; use ``redis+streams://`` when that matters).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from .buffer import SubscriberBuffer, check_policy, fan_out
from .options import reject_unknown
from .redis_common import LOG, AutoPipeline, RespLink, import_redis, pack, redis_errors, unavailable

__all__ = ["RedisPubSubBroker"]


class _Channel:
    __slots__ = ("live", "subs", "waiters")

    def __init__(self) -> None:
        self.subs: list[_RedisSubscription] = []
        self.live = False
        self.waiters: list[asyncio.Future[None]] = []


class _RedisSubscription:
    def __init__(self, broker: RedisPubSubBroker, topic: str, pattern: bool,
                 convert: Callable[[str], Any] | None = None) -> None:
        self.broker = broker
        self.topic = topic
        self.pattern = pattern
        self.convert = convert
        self.buffer: SubscriberBuffer[Any] = SubscriberBuffer(broker.limit, broker.overflow)
        self._live: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._closed = False

    @property
    def dropped(self) -> int:
        return self.buffer.dropped

    async def live(self) -> None:
        """Wait for Redis's confirmation of the (P)SUBSCRIBE."""
        await asyncio.shield(self._live)

    def __aiter__(self) -> _RedisSubscription:
        return self

    async def __anext__(self) -> Any:  # a str, or what ``convert`` made of it
        return await self.buffer.get()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.buffer.close()
        if not self._live.done():
            self._live.cancel()
        await self.broker._leave(self)

    async def __aenter__(self) -> _RedisSubscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class RedisPubSubBroker:
    """Redis Pub/Sub. ``limit``/``overflow``: each subscriber's buffer and its policy;
    ``retry_max``: the longest pause between reconnection attempts (seconds)."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, limit: int = 10_000,
                 overflow: str = "drop_oldest", retry_max: float = 1.0,
                 max_connections: int = 32, **redis_options: Any) -> None:
        check_policy(overflow, limit)
        reject_unknown("redis://", redis_options, ("socket_connect_timeout",))
        aioredis = import_redis()
        self.url = url
        self.limit = limit
        self.overflow = overflow
        self.retry_max = retry_max
        # RESP2: subscription replies are plain arrays read by read_response (RESP3 would
        # route them to a push handler)
        opts = {"socket_connect_timeout": 2.0, "protocol": 2, **redis_options}
        # PUBLISH shares a bounded pool that waits for a free connection when all are busy
        self.redis: Any = aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=10, **opts))
        self._sub_pool: Any = aioredis.ConnectionPool.from_url(url, **opts)
        self._pipe = AutoPipeline(self._sub_pool)  # PUBLISH: pipelined on its own connection
        self._errors = redis_errors()
        self._channels: dict[bytes, _Channel] = {}
        self._patterns: dict[bytes, _Channel] = {}
        self._inflight: dict[tuple[bool, bytes], int] = {}
        self._link: RespLink | None = None  # the subscription connection
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        #: times the subscription connection was re-established after a failure
        self.reconnects = 0

    # -- publishing -------------------------------------------------------------------

    async def publish(self, topic: str, message: str) -> int:
        for attempt in (1, 2):  # a pooled connection Redis dropped fails once: retry fresh
            try:
                return int(await self._pipe.submit("PUBLISH", topic, message))
            except self._errors as exc:
                if attempt == 2:
                    raise unavailable("publish", exc, topic=topic) from None
        return 0

    def publish_nowait(self, topic: str, message: str) -> asyncio.Future[Any]:
        """Queue a ``PUBLISH`` on the pipelined connection without waiting: the future of
        its reply (the receiver count). A failure is not retried here: the caller publishes
        that message again with :meth:`publish` (which retries once, then says UNAVAILABLE)."""
        return self._pipe.submit("PUBLISH", topic, message)

    # -- subscribing ------------------------------------------------------------------

    #: ``subscribe(..., convert=f)`` is taken: the subscriber gets ``f(message)``, made once
    #: per message for all the subscribers with the same ``f`` (the service's reply object)
    converts = True

    def subscribe(self, topic: str, *, pattern: bool = False,
                  convert: Callable[[str], Any] | None = None,
                  **options: Any) -> _RedisSubscription:
        reject_unknown("redis:// subscription", options, ())
        if self._closed:
            raise RuntimeError("the broker is closed")
        sub = _RedisSubscription(self, topic, pattern, convert)
        table = self._patterns if pattern else self._channels
        name = topic.encode()
        ch = table.get(name)
        if ch is None:
            ch = table[name] = _Channel()
            self._send(pattern, name, subscribe=True)
        ch.subs.append(sub)
        if ch.live:
            sub._live.set_result(None)
        else:
            ch.waiters.append(sub._live)
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._run())
        return sub

    def subscribed(self) -> dict[str, int]:
        """Local subscribers per channel (patterns prefixed with ``pattern:``)."""
        out = {k.decode(): len(c.subs) for k, c in self._channels.items()}
        out.update({"pattern:" + k.decode(): len(c.subs) for k, c in self._patterns.items()})
        return out

    async def _leave(self, sub: _RedisSubscription) -> None:
        table = self._patterns if sub.pattern else self._channels
        name = sub.topic.encode()
        ch = table.get(name)
        if ch is None or sub not in ch.subs:
            return
        ch.subs.remove(sub)
        if not ch.subs:
            del table[name]
            for w in ch.waiters:
                if not w.done():
                    w.cancel()
            self._send(sub.pattern, name, subscribe=False)

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def _send(self, pattern: bool, name: bytes, *, subscribe: bool) -> None:
        """One (P)(UN)SUBSCRIBE on the subscription connection, written at once (so in call
        order); while the connection is down it is dropped: reconnecting subscribes to what
        is current."""
        cmd = ("P" if pattern else "") + ("SUBSCRIBE" if subscribe else "UNSUBSCRIBE")
        link = self._link
        if link is None or link.transport is None:
            return
        key = (pattern, name)
        self._inflight[key] = self._inflight.get(key, 0) + 1
        link.write(pack((cmd, name)))

    # -- the reader -------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.05
        while not self._closed:
            link = None
            try:  # the replies (messages, confirmations) go to _on_reply as they are read
                link = await RespLink.open(self._sub_pool, self._on_reply)
                self._link = link
                self._inflight.clear()
                for pattern, table in ((False, self._channels), (True, self._patterns)):
                    if table:
                        for name in table:
                            self._inflight[(pattern, name)] = 1
                        link.write(pack(("PSUBSCRIBE" if pattern else "SUBSCRIBE", *table)))
                backoff = 0.05
                cause = await link.lost
                LOG.warning("redis pubsub connection to %s lost: %r; reconnecting",
                            self.url, cause)
            except asyncio.CancelledError:
                if link is not None:
                    link.close()
                raise
            except self._errors as exc:
                LOG.warning("redis pubsub connection to %s lost: %r; reconnecting",
                            self.url, exc)
            self._link = None
            for table in (self._channels, self._patterns):
                for ch in table.values():
                    ch.live = False
            if link is not None:
                link.close()
            self.reconnects += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.retry_max)

    def _on_reply(self, resp: Any) -> None:
        if not isinstance(resp, list):  # an error reply (NOAUTH...): it says why
            LOG.warning("redis pubsub connection to %s: %r", self.url, resp)
            return
        kind = resp[0]
        if kind == b"message":
            ch = self._channels.get(resp[1])
            if ch is not None:
                self._deliver(ch, resp[2])
        elif kind == b"pmessage":
            ch = self._patterns.get(resp[1])
            if ch is not None:
                self._deliver(ch, resp[3])
        elif kind in (b"subscribe", b"psubscribe", b"unsubscribe", b"punsubscribe"):
            pattern = kind[0] == 0x70  # b"p"
            key = (pattern, resp[1])
            left = self._inflight.get(key, 1) - 1
            if left > 0:
                self._inflight[key] = left
                return
            self._inflight.pop(key, None)
            ch = (self._patterns if pattern else self._channels).get(resp[1])
            if ch is not None and kind.endswith(b"subscribe") and not kind.endswith(b"unsubscribe"):
                ch.live = True
                for w in ch.waiters:
                    if not w.done():
                        w.set_result(None)
                ch.waiters.clear()

    def _deliver(self, ch: _Channel, data: bytes) -> None:
        closed = fan_out(ch.subs, data.decode("utf-8", "replace"))
        for sub in closed or ():
            self._spawn(sub.aclose())

    async def aclose(self) -> None:
        self._closed = True
        for table in (self._channels, self._patterns):
            for ch in list(table.values()):
                for sub in list(ch.subs):
                    sub.buffer.close()
            table.clear()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for t in list(self._tasks):
            t.cancel()
        await self._pipe.aclose()
        await self.redis.aclose()
        await self._sub_pool.disconnect()
