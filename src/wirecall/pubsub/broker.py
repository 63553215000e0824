"""The broker interface the PubSub service is written against: :class:`Broker` publishes and
subscribes, a :class:`Subscription` is an async iterator of one topic's messages and an async
context manager that unsubscribes on exit. Implementations: :mod:`wirecall.pubsub.memory`
(this process; the Redis broker comes later)."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Broker", "Subscription"]


class Subscription(Protocol):
    """Messages of one topic, in publish order, until closed."""

    topic: str

    def __aiter__(self) -> Subscription: ...

    async def __anext__(self) -> str: ...

    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Subscription: ...

    async def __aexit__(self, *exc: object) -> None: ...


class Broker(Protocol):
    async def publish(self, topic: str, message: str) -> int:
        """Deliver ``message`` to the current subscribers of ``topic``; returns how many."""
        ...

    def subscribe(self, topic: str) -> Subscription:
        """Subscribe to ``topic`` now (messages published from this call on are received)."""
        ...
