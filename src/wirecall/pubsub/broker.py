"""The broker interface the PubSub service is written against.

:class:`Broker` publishes and subscribes; a :class:`Subscription` is an async iterator of one
topic's (or one pattern's) messages and an async context manager that unsubscribes on exit.
``await sub.live()`` returns once the subscription is live at the backend (messages published
from then on reach it): the service confirms the subscription to its remote subscriber then.

Implementations, chosen by URL with :func:`wirecall.pubsub.open_broker`:

* ``memory://`` :mod:`wirecall.pubsub.memory` (this process);
* ``redis://host:port/db`` :mod:`wirecall.pubsub.redis_pubsub` (Redis Pub/Sub, at-most-once);
* ``redis+streams://host:port/db`` :mod:`wirecall.pubsub.redis_streams` (Redis Streams,
  consumer groups, at-least-once).
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["Broker", "Subscription"]


class Subscription(Protocol):
    """Messages of one topic (or pattern), in publish order, until closed."""

    topic: str

    @property
    def dropped(self) -> int:
        """Messages this subscriber lost because its buffer was full (``drop_oldest``)."""
        ...

    async def live(self) -> None:
        """Return once the subscription is live at the backend."""
        ...

    def __aiter__(self) -> Subscription: ...

    async def __anext__(self) -> str: ...

    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Subscription: ...

    async def __aexit__(self, *exc: object) -> None: ...


class Broker(Protocol):
    async def publish(self, topic: str, message: str) -> int:
        """Deliver ``message`` to ``topic``; returns how many received it (Pub/Sub) or 1 once
        it is stored (Streams)."""
        ...

    def subscribe(self, topic: str, *, pattern: bool = False, **options: Any) -> Subscription:
        """Subscribe to ``topic`` (a glob pattern with ``pattern=True``). Options a broker
        does not know are an ``INVALID_ARGUMENT`` naming them."""
        ...

    async def aclose(self) -> None:
        """Close the broker's connections; open subscriptions end."""
        ...
