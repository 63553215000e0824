"""The in-memory broker: topics and their subscribers in this process (a
:class:`~wirecall.pubsub.broker.Broker`)."""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["MemoryBroker"]


class _MemorySubscription:
    def __init__(self, broker: MemoryBroker, topic: str, limit: int) -> None:
        self.broker = broker
        self.topic = topic
        self.limit = limit
        self.dropped = 0
        self._items: deque[str] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def _deliver(self, message: str) -> None:
        if len(self._items) >= self.limit:  # a slow subscriber loses its oldest messages
            self._items.popleft()
            self.dropped += 1
        self._items.append(message)
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def __aiter__(self) -> _MemorySubscription:
        return self

    async def __anext__(self) -> str:
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self.broker._remove(self)
            w = self._waiter
            if w is not None and not w.done():
                w.set_result(None)

    async def __aenter__(self) -> _MemorySubscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class MemoryBroker:
    """Topics in a dict; each subscriber has a bounded queue (``limit`` messages; when full,
    the oldest is dropped and counted in ``Subscription.dropped``, as Redis drops slow
    subscribers' messages rather than stalling publishers)."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._subs: dict[str, list[_MemorySubscription]] = {}

    async def publish(self, topic: str, message: str) -> int:
        subs = self._subs.get(topic, ())
        for s in subs:
            s._deliver(message)
        return len(subs)

    def subscribe(self, topic: str) -> _MemorySubscription:
        sub = _MemorySubscription(self, topic, self.limit)
        self._subs.setdefault(topic, []).append(sub)
        return sub

    def subscribers(self, topic: str) -> int:
        return len(self._subs.get(topic, ()))

    def _remove(self, sub: _MemorySubscription) -> None:
        lst = self._subs.get(sub.topic)
        if lst and sub in lst:
            lst.remove(sub)
            if not lst:
                del self._subs[sub.topic]
