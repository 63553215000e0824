"""Publish/subscribe brokers behind the tutorial's PubSub service (section 3.3).

:class:`Broker` is the interface; :class:`MemoryBroker` keeps everything in this process (the
Redis broker comes later). A subscription is an async iterator of messages and an async
context manager that unsubscribes on exit.
"""

from .broker import Broker, MemoryBroker, Subscription

__all__ = ["Broker", "MemoryBroker", "Subscription"]
