"""The in-memory broker: topics and their subscribers in this process (a
:class:`~wirecall.pubsub.broker.Broker`)."""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Any

from .buffer import SubscriberBuffer, check_policy, fan_out
from .options import reject_unknown

__all__ = ["MemoryBroker"]


class _MemorySubscription:
    def __init__(self, broker: MemoryBroker, topic: str, pattern: bool,
                 convert: Callable[[str], Any] | None = None) -> None:
        self.broker = broker
        self.topic = topic
        self.pattern = pattern
        self.convert = convert
        self.buffer: SubscriberBuffer[Any] = SubscriberBuffer(broker.limit, broker.overflow)

    @property
    def dropped(self) -> int:
        return self.buffer.dropped

    async def live(self) -> None:
        return None

    def __aiter__(self) -> _MemorySubscription:
        return self

    async def __anext__(self) -> Any:  # a str, or what ``convert`` made of it
        return await self.buffer.get()

    async def aclose(self) -> None:
        if not self.buffer.closed:
            self.buffer.close()
        self.broker._remove(self)

    async def __aenter__(self) -> _MemorySubscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class MemoryBroker:
    """Topics in a dict; each subscriber has a bounded buffer (``limit`` messages; when full,
    ``overflow="drop_oldest"`` drops the oldest and counts it in ``Subscription.dropped``,
    ``overflow="close"`` ends that subscription with RESOURCE_EXHAUSTED; see
    :mod:`wirecall.pubsub.buffer`). Pattern subscriptions match with glob rules, as
    Redis's PSUBSCRIBE."""

    def __init__(self, limit: int = 10_000, overflow: str = "drop_oldest") -> None:
        check_policy(overflow, limit)
        self.limit = limit
        self.overflow = overflow
        self._subs: dict[str, list[_MemorySubscription]] = {}
        self._patterns: list[_MemorySubscription] = []

    async def publish(self, topic: str, message: str) -> int:
        subs = [*self._subs.get(topic, ()),
                *(p for p in self._patterns if fnmatchcase(topic, p.topic))]
        for sub in fan_out(subs, message) or ():  # closed on overflow
            self._remove(sub)
        return len(subs)

    #: ``subscribe(..., convert=f)`` is taken (see ``RedisPubSubBroker.converts``)
    converts = True

    def subscribe(self, topic: str, *, pattern: bool = False,
                  convert: Callable[[str], Any] | None = None,
                  **options: Any) -> _MemorySubscription:
        reject_unknown("memory://", options, ())
        sub = _MemorySubscription(self, topic, pattern, convert)
        if pattern:
            self._patterns.append(sub)
        else:
            self._subs.setdefault(topic, []).append(sub)
        return sub

    def subscribers(self, topic: str) -> int:
        return len(self._subs.get(topic, ()))

    def _remove(self, sub: _MemorySubscription) -> None:
        if sub.pattern:
            if sub in self._patterns:
                self._patterns.remove(sub)
            return
        lst = self._subs.get(sub.topic)
        if lst and sub in lst:
            lst.remove(sub)
            if not lst:
                del self._subs[sub.topic]

    async def aclose(self) -> None:
        for lst in list(self._subs.values()):
            for s in list(lst):
                await s.aclose()
        for p in list(self._patterns):
            await p.aclose()
