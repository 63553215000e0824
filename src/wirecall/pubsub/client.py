"""A remote PubSub service from the client side, on any wire (``grpc://``, ``tcp://``,
``ws://``): the messages are protobuf on gRPC and tcp:// (codec ``proto``), JSON objects on
ws://. The subscription waits for the server's confirmation that it is live.

    async with remote_subscription("tcp://127.0.0.1:7000", "news") as sub:   # live here
        await publish("tcp://127.0.0.1:7000", "news", "hello")
        async for message in sub: ...                                        # str

Streams options travel as metadata (``group=``, ``consumer=``, ``start=``, ``pattern=``);
see ``docs/pubsub.md``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from ..client import Client, connect
from .service import (
    CONFIRM_KEY,
    PublishMessage,
    PublishRequest,
    PubSubStreamStub,
    PubSubStub,
    SubscribeRequest,
)

__all__ = ["RemoteSubscription", "StreamPublisher", "publish", "remote_subscription",
           "stream_publisher"]

_JSON_SCHEMES = ("ws", "wss", "http", "https")
_OPTION_KEYS = {"group": "wirecall-group", "consumer": "wirecall-consumer",
                "start": "wirecall-from", "pattern": "wirecall-pattern"}


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower()


async def _connect(url: str) -> Client:
    scheme = _scheme(url)
    if scheme in ("tcp", "unix", "tls"):
        return await connect(url, codec="proto")
    return await connect(url)


async def publish(url: str, topic: str, message: str, *, timeout: float = 10,
                  client: Client | None = None) -> bool:
    """Publish one message through the PubSub service at ``url``; its ``success``."""
    own = client is None
    c = client if client is not None else await _connect(url)
    try:
        if _scheme(url) in _JSON_SCHEMES:
            r = await c.call("pubsub.PubSub.Publish", {"topic": topic, "message": message},
                             timeout=timeout)
            return bool(r["success"])
        r = await PubSubStub(c).Publish(PublishRequest(topic=topic, message=message),
                                        timeout=timeout)
        return bool(r.success)
    finally:
        if own:
            await c.close()


class StreamPublisher:
    """Many messages over one ``wirecall_pubsub.PubSubStream.Publish`` stream: ``send`` does
    not wait for the broker (only for the stream's flow control); leaving the ``async with``
    waits until the server published them all and sets :attr:`published` and
    :attr:`receivers` (an error, e.g. ``UNAVAILABLE``, is raised there). The server must
    register :class:`~wirecall.pubsub.service.PubSubStream` (else ``UNIMPLEMENTED``)."""

    def __init__(self, url: str, *, timeout: float | None = None,
                 client: Client | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self.published = 0
        self.receivers = 0
        self._own = client is None
        self._client = client
        self._stream: Any = None
        self._json = _scheme(url) in _JSON_SCHEMES

    async def __aenter__(self) -> StreamPublisher:
        if self._client is None:
            self._client = await _connect(self.url)
        if self._json:
            self._stream = self._client.stream("wirecall_pubsub.PubSubStream.Publish",
                                               timeout=self.timeout)
        else:
            self._stream = PubSubStreamStub(self._client).Publish(timeout=self.timeout)
        return self

    async def send(self, topic: str, message: str) -> None:
        """Queue one message (waits only while the stream's window is shut)."""
        await self._stream.send({"topic": topic, "message": message} if self._json
                                else PublishMessage(topic=topic, message=message))

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        try:
            if exc_type is None:
                await self._stream.done_writing()
                r = await self._stream.result()
                self.published = int(r["published"] if self._json else r.published)
                self.receivers = int(r["receivers"] if self._json else r.receivers)
            else:
                self._stream.cancel()
        finally:
            if self._own and self._client is not None:
                await self._client.close()
                self._client = None


def stream_publisher(url: str, **options: Any) -> StreamPublisher:
    return StreamPublisher(url, **options)


class RemoteSubscription:
    """One ``Subscribe`` call: ``async with`` waits until it is live; iterate for the
    messages (``str``); leaving cancels the call (the server unsubscribes at once)."""

    def __init__(self, url: str, topic: str, *, timeout: float | None = None,
                 confirm: bool = True, confirm_timeout: float = 10, **options: Any) -> None:
        unknown = sorted(set(options) - set(_OPTION_KEYS))
        if unknown:
            raise TypeError(f"unknown subscription option(s): {', '.join(unknown)}")
        self.url = url
        self.topic = topic
        self.timeout = timeout
        self.confirm_timeout = confirm_timeout
        self.confirm = confirm  # False for servers that do not confirm (the tutorial's Go one)
        self.metadata = {CONFIRM_KEY: "1"} if confirm else {}
        for k, v in options.items():
            if v is not None and v is not False:
                self.metadata[_OPTION_KEYS[k]] = "1" if v is True else str(v)
        self._client: Client | None = None
        self._stream: Any = None
        self._json = _scheme(url) in _JSON_SCHEMES

    async def __aenter__(self) -> RemoteSubscription:
        self._client = await _connect(self.url)
        try:
            if self._json:
                self._stream = self._client.stream(
                    "pubsub.PubSub.Subscribe", {"topic": self.topic},
                    metadata=self.metadata, timeout=self.timeout)
            else:
                self._stream = PubSubStub(self._client).Subscribe(
                    SubscribeRequest(topic=self.topic), metadata=self.metadata,
                    timeout=self.timeout)
            if self.confirm:  # the first message is the confirmation (it carries the topic)
                await asyncio.wait_for(self._stream.recv(), self.confirm_timeout)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
            await self._stream.aclose()
            self._stream = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def recv(self) -> str:
        """The next message (raises the stream's error, ``StopAsyncIteration`` at its end)."""
        from ..streaming import EOF

        item = await self._stream.recv()
        if item is EOF:
            raise StopAsyncIteration
        return str(item["message"] if self._json else item.message)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[str]:
        while True:
            try:
                yield await self.recv()
            except StopAsyncIteration:
                return


def remote_subscription(url: str, topic: str, **options: Any) -> RemoteSubscription:
    return RemoteSubscription(url, topic, **options)
