"""The ``pubsub.PubSub`` service of ``pubsub.proto`` (the tutorial's section 3.3):
``Publish`` (unary) and ``Subscribe`` (a server stream), backed by a
:class:`~wirecall.pubsub.broker.Broker` (in memory by default). Needs the grpc extra.

    server.register(PubSub())                       # or PubSub(broker)
    await PubSubStub(client).Publish(PublishRequest(topic="t", message="hi"))
    async for m in PubSubStub(client).Subscribe(SubscribeRequest(topic="t")): ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from wirecall.context import Context
from wirecall.gen import load_proto

from .broker import Broker
from .memory import MemoryBroker

__all__ = [
    "PROTO",
    "PubSub",
    "PubSubStub",
    "PublishRequest",
    "PublishResponse",
    "SubscribeRequest",
    "SubscribeResponse",
]

PROTO = Path(__file__).parent / "pubsub.proto"
pubsub_pb2, _wc = load_proto(PROTO)
assert _wc is not None
PublishRequest: Any = pubsub_pb2.PublishRequest
PublishResponse: Any = pubsub_pb2.PublishResponse
SubscribeRequest: Any = pubsub_pb2.SubscribeRequest
SubscribeResponse: Any = pubsub_pb2.SubscribeResponse
PubSubStub: Any = _wc.PubSubStub


class PubSub(_wc.PubSubBase):  # type: ignore[misc,name-defined]
    """``pubsub.PubSub`` over a broker."""

    def __init__(self, broker: Broker | None = None) -> None:
        self.broker: Broker = broker if broker is not None else MemoryBroker()

    async def Publish(self, request: Any, context: Context) -> Any:
        await self.broker.publish(request.topic, request.message)
        return PublishResponse(success=True)

    async def Subscribe(self, request: Any, context: Context) -> AsyncIterator[Any]:
        async with self.broker.subscribe(request.topic) as sub:
            async for message in sub:
                yield SubscribeResponse(message=message)
