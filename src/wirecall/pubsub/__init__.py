"""Publish/subscribe: the tutorial's ``pubsub.PubSub`` gRPC service (section 3.3) over a broker.

* :mod:`~wirecall.pubsub.broker`: the :class:`Broker` and :class:`Subscription` interfaces;
* :mod:`~wirecall.pubsub.memory`: :class:`MemoryBroker`, everything in this process (the
  Redis broker comes later);
* :mod:`~wirecall.pubsub.service`: :class:`~wirecall.pubsub.service.PubSub` (``Publish``
  unary, ``Subscribe`` a server stream) and its messages and stub, from ``pubsub.proto``.
  It needs the grpc extra (protobuf), so it is not imported here: ``from
  wirecall.pubsub.service import PubSub``.
"""

from .broker import Broker, Subscription
from .memory import MemoryBroker

__all__ = ["Broker", "MemoryBroker", "Subscription"]
