"""Publish/subscribe: the tutorial's ``pubsub.PubSub`` gRPC service (section 3.3) over a broker.

* :mod:`~wirecall.pubsub.broker`: the :class:`Broker` and :class:`Subscription` interfaces;
* :func:`open_broker` picks one by URL: ``memory://`` (:mod:`~wirecall.pubsub.memory`),
  ``redis://host:port/db`` (Redis Pub/Sub, at-most-once: :mod:`~wirecall.pubsub.redis_pubsub`),
  ``redis+streams://host:port/db`` (Redis Streams, at-least-once:
  :mod:`~wirecall.pubsub.redis_streams`; the Redis brokers need ``wirecall[redis]``);
* :mod:`~wirecall.pubsub.buffer`: each subscriber's bounded buffer and overflow policy;
* :mod:`~wirecall.pubsub.service`: :class:`~wirecall.pubsub.service.PubSub` (``Publish``
  unary, ``Subscribe`` a server stream) and its messages and stub, from ``pubsub.proto``.
  It needs the grpc extra (protobuf), so it is not imported here: ``from
  wirecall.pubsub.service import PubSub``. See ``docs/pubsub.md``.
"""

from .broker import Broker, Subscription
from .buffer import OVERFLOW_POLICIES, SubscriberBuffer
from .memory import MemoryBroker
from .urls import open_broker

__all__ = ["OVERFLOW_POLICIES", "Broker", "MemoryBroker", "SubscriberBuffer", "Subscription",
           "open_broker"]
