"""The ``pubsub.PubSub`` service of ``pubsub.proto`` (the tutorial's section 3.3):
``Publish`` (unary) and ``Subscribe`` (a server stream), backed by a
:class:`~wirecall.pubsub.broker.Broker` (in memory by default). Needs the grpc extra.

    server.register(PubSub())                       # or PubSub(broker)
    await PubSubStub(client).Publish(PublishRequest(topic="t", message="hi"))
    async for m in PubSubStub(client).Subscribe(SubscribeRequest(topic="t")): ...
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from wirecall.context import Context
from wirecall.errors import InvalidArgument
from wirecall.gen import load_proto
from wirecall.streaming import flush_initial_metadata, send_initial_metadata

from .broker import Broker
from .memory import MemoryBroker
from .urls import open_broker

__all__ = [
    "CONFIRM_KEY",
    "PROTO",
    "STREAM_PROTO",
    "SUBSCRIBED_HEADER",
    "SUBSCRIBE_METADATA",
    "PubSub",
    "PubSubStream",
    "PubSubStreamStub",
    "PubSubStub",
    "PublishMessage",
    "PublishRequest",
    "PublishResponse",
    "PublishSummary",
    "SubscribeRequest",
    "SubscribeResponse",
    "subscribe_options",
]

PROTO = Path(__file__).parent / "pubsub.proto"
pubsub_pb2, _wc = load_proto(PROTO)
assert _wc is not None
PublishRequest: Any = pubsub_pb2.PublishRequest
PublishResponse: Any = pubsub_pb2.PublishResponse
SubscribeRequest: Any = pubsub_pb2.SubscribeRequest
SubscribeResponse: Any = pubsub_pb2.SubscribeResponse
PubSubStub: Any = _wc.PubSubStub
_PUBLISHED = PublishResponse(success=True)  # the one reply of every Publish (never mutated)
#: wirecall's addition: ``wirecall_pubsub.PubSubStream.Publish``, a client stream of messages
STREAM_PROTO = Path(__file__).parent / "pubsub_stream.proto"
pubsub_stream_pb2, _wcs = load_proto(STREAM_PROTO)
assert _wcs is not None
PublishMessage: Any = pubsub_stream_pb2.PublishMessage
PublishSummary: Any = pubsub_stream_pb2.PublishSummary
PubSubStreamStub: Any = _wcs.PubSubStreamStub
#: a stream publish leaves at most this many of its messages unanswered by the broker
MAX_UNANSWERED = 1024


#: request metadata a subscriber may send, and the broker option each one sets
SUBSCRIBE_METADATA = {
    "wirecall-pattern": "pattern",  # "1": the topic is a glob pattern (redis://, memory://)
    "wirecall-group": "group",  # Streams: the consumer group
    "wirecall-consumer": "consumer",  # Streams: this consumer's durable name
    "wirecall-from": "start",  # Streams: replay from an id, "0", "$" or "@<unix ms>"
}
#: Streams: on wires whose stream flow control counts messages (16 in flight, granted back as
#: the remote application consumes them), a message is acknowledged only once 16 more were
#: sent after it: the subscriber's application has then consumed it. gRPC's windows count
#: bytes: there a message is acknowledged when the transport took it (docs/pubsub.md).
ACK_LAG = {"tcp": 16, "unix": 16, "tls": 16, "ws": 16, "wss": 16}
#: request metadata "1": the first message of the stream is one carrying the topic name,
#: sent once the subscription is live (for wires without headers: tcp://, ws://)
CONFIRM_KEY = "wirecall-pubsub-confirm"
#: response header sent (and flushed, before any message) once the subscription is live
SUBSCRIBED_HEADER = "wirecall-subscribed"


def subscribe_options(metadata: Mapping[str, str]) -> dict[str, Any]:
    """Broker options from a Subscribe call's metadata (unknown ``wirecall-pubsub-*`` or
    malformed values are INVALID_ARGUMENT naming the key)."""
    opts: dict[str, Any] = {}
    for key, value in metadata.items():
        k = key.lower()
        if k in SUBSCRIBE_METADATA:
            name = SUBSCRIBE_METADATA[k]
            if name == "pattern":
                if value not in ("0", "1"):
                    raise InvalidArgument(message=f"{k}: must be 0 or 1, not {value!r}")
                opts[name] = value == "1"
            else:
                if not value:
                    raise InvalidArgument(message=f"{k}: must not be empty")
                opts[name] = value
        elif k.startswith("wirecall-pubsub-") and k != CONFIRM_KEY:
            raise InvalidArgument(message=f"{k}: unknown pubsub metadata")
    confirm = metadata.get(CONFIRM_KEY)
    if confirm not in (None, "0", "1"):
        raise InvalidArgument(message=f"{CONFIRM_KEY}: must be 0 or 1, not {confirm!r}")
    return opts


class PubSub(_wc.PubSubBase):  # type: ignore[misc,name-defined]
    """``pubsub.PubSub`` over a broker (a :class:`Broker` or a broker URL).

    ``Subscribe`` confirms the subscription once the broker says it is live: on gRPC with
    the response header ``wirecall-subscribed: <topic>`` sent at once (a HEADERS frame, no
    message: the tutorial's Go subscriber sees only messages); on any wire, if the request
    carries the metadata ``wirecall-pubsub-confirm: 1``, with a first message whose text is
    the topic (positional: the first message of such a stream is always the confirmation).
    Cancelling the call unsubscribes at once."""

    def __init__(self, broker: Broker | str | None = None) -> None:
        if isinstance(broker, str):
            broker = open_broker(broker)
        self.broker: Broker = broker if broker is not None else MemoryBroker()

    async def Publish(self, request: Any, context: Context) -> Any:
        if isinstance(request, dict):  # a JSON wire
            topic, message = _fields(request, "PublishRequest", ("topic", "message"))
            await self.broker.publish(topic, message)
            return {"success": True}
        topic = request.topic
        if not topic:
            raise InvalidArgument(message="topic: must not be empty")
        await self.broker.publish(topic, request.message)
        return _PUBLISHED

    async def Subscribe(self, request: Any, context: Context) -> AsyncIterator[Any]:
        # returns (not yields) the iterator: the transport drives it, closes it at the end
        (topic,) = _fields(request, "SubscribeRequest", ("topic",))
        # a request that came as a JSON object (ws://, http://) is answered with JSON objects
        reply = _json_reply if isinstance(request, dict) else _proto_reply
        opts = subscribe_options(context.metadata)
        lag = ACK_LAG.get(context.transport)
        broker = self.broker
        if lag is not None and getattr(broker, "acknowledges", False):
            opts["ack_lag"] = lag
        converts = getattr(broker, "converts", False)
        if converts:  # one reply object per message for all the subscribers of this server
            opts["convert"] = reply
        try:
            sub = broker.subscribe(topic, **opts)
        except InvalidArgument as exc:  # name the metadata the option came from
            keys = ", ".join(k for k, v in SUBSCRIBE_METADATA.items() if v in opts)
            raise InvalidArgument(message=f"{exc.message} (from metadata {keys})") from None
        try:
            await sub.live()
            with contextlib.suppress(RuntimeError):  # no headers on this wire
                send_initial_metadata({SUBSCRIBED_HEADER: topic})
            flush_initial_metadata()
        except BaseException:
            await sub.aclose()
            raise
        first = reply(topic) if context.metadata.get(CONFIRM_KEY) == "1" else None
        if converts:  # the transport takes the replies straight from the subscription
            put_first = getattr(sub, "put_first", None)  # (Streams: an item without an id)
            if first is not None:
                if put_first is None:
                    put_first = sub.buffer.put_first  # type: ignore[attr-defined]
                put_first(first)
            # (where nothing is acknowledged, from the buffer itself: no coroutine between)
            acks = getattr(broker, "acknowledges", False)
            get = sub.__anext__ if acks else sub.buffer.get  # type: ignore[attr-defined]
            return _Delivery(sub, get)
        return _Delivery(sub, _converting(sub, reply, first))


class _Delivery:
    """What ``Subscribe`` returns: an async iterator of the replies, no generator between the
    subscriber's buffer and the transport (``get``: the buffer's own, on brokers that make
    the replies); ``aclose`` (the transport calls it when the stream ends, however it ends)
    closes the subscription."""

    __slots__ = ("_get", "_sub")

    def __init__(self, sub: Any, get: Callable[[], Awaitable[Any]]) -> None:
        self._sub = sub
        self._get = get

    def __aiter__(self) -> _Delivery:
        return self

    def __anext__(self) -> Awaitable[Any]:
        return self._get()

    async def aclose(self) -> None:
        await self._sub.aclose()


def _converting(sub: Any, reply: Callable[[str], Any], first: Any) -> Callable[[], Awaitable[Any]]:
    """``get`` for brokers that hand over strings (Streams: acknowledging as it goes)."""
    pending = [first] if first is not None else []

    async def get() -> Any:
        if pending:
            return pending.pop()
        return reply(await sub.__anext__())

    return get


class PubSubStream(_wcs.PubSubStreamBase):  # type: ignore[misc,name-defined]
    """``wirecall_pubsub.PubSubStream``: ``Publish`` takes a stream of messages and publishes
    each as it arrives without waiting for the broker in between (on Redis they go out
    pipelined, a loop turn's worth per write), at most :data:`MAX_UNANSWERED` unanswered;
    the reply, once all are published, counts them. The broker is a :class:`PubSub`'s
    (register both), a :class:`Broker` or a broker URL.

    A message the broker failed is published again the ordinary way (``Broker.publish``:
    retried once on a fresh connection, else the stream ends with ``UNAVAILABLE``), so on a
    connection loss it may arrive after later ones; a bad message (empty topic) ends the
    stream with ``INVALID_ARGUMENT``, the messages before it published."""

    def __init__(self, broker: PubSub | Broker | str | None = None) -> None:
        if isinstance(broker, PubSub):
            broker = broker.broker
        elif isinstance(broker, str):
            broker = open_broker(broker)
        self.broker: Broker = broker if broker is not None else MemoryBroker()

    async def Publish(self, requests: AsyncIterator[Any], context: Context) -> Any:
        broker = self.broker
        submit = getattr(broker, "publish_nowait", None)
        pending: deque[tuple[asyncio.Future[Any], str, str]] = deque()
        published = receivers = 0
        as_json = False
        try:
            async for request in requests:
                if isinstance(request, dict):  # a JSON wire
                    as_json = True
                    topic, message = _fields(request, "PublishMessage", ("topic", "message"))
                else:
                    topic, message = request.topic, request.message
                    if not topic:
                        raise InvalidArgument(message="topic: must not be empty")
                if submit is None:  # a broker without pipelining (memory://)
                    receivers += await broker.publish(topic, message)
                    published += 1
                    continue
                pending.append((submit(topic, message), topic, message))
                while pending and (pending[0][0].done() or len(pending) > MAX_UNANSWERED):
                    receivers += await self._settle(*pending.popleft())
                    published += 1
            while pending:
                receivers += await self._settle(*pending.popleft())
                published += 1
        finally:
            for fut, _, _ in pending:  # the stream failed: nobody waits for these
                if not fut.done():
                    fut.cancel()
                elif not fut.cancelled():
                    fut.exception()
        if as_json:
            return {"published": published, "receivers": receivers}
        return PublishSummary(published=published, receivers=receivers)

    async def _settle(self, fut: asyncio.Future[Any], topic: str, message: str) -> int:
        try:
            reply = await fut
        except Exception:  # lost with its connection: again, the ordinary way
            return await self.broker.publish(topic, message)
        return reply if isinstance(reply, int) else 1


def _proto_reply(message: str) -> Any:
    return SubscribeResponse(message=message)


def _json_reply(message: str) -> Any:
    return {"message": message}


def _fields(request: Any, kind: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """The string fields of a request (a protobuf message, or a JSON object on JSON wires);
    a missing topic, an unknown field or a wrong type is INVALID_ARGUMENT naming it."""
    if isinstance(request, dict):
        unknown = sorted(set(request) - set(names))
        if unknown:
            raise InvalidArgument(message=f"{kind}: unknown field(s) {', '.join(unknown)}")
        values = tuple(request.get(n, "") for n in names)
        for n, v in zip(names, values, strict=True):
            if not isinstance(v, str):
                raise InvalidArgument(message=f"{n}: must be a string, not "
                                      f"{type(v).__name__}")
    else:
        values = tuple(getattr(request, n) for n in names)
    if not values[0]:
        raise InvalidArgument(message="topic: must not be empty")
    return values
