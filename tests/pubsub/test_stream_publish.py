"""``wirecall_pubsub.PubSubStream.Publish`` (a client stream of messages, published without a
round trip each) on grpc://, tcp:// and ws:// over a real Redis: every message reaches the
subscribers in order and the summary counts them; a bad message ends the stream with
INVALID_ARGUMENT after the ones before it; a message lost with the broker's connection is
published again; Redis down is UNAVAILABLE."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

import wirecall
from support.redis import RedisServer
from wirecall.errors import InvalidArgument, RpcError
from wirecall.pubsub.client import remote_subscription, stream_publisher
from wirecall.pubsub.service import PubSub, PubSubStream


def numsub(r: RedisServer, channel: str) -> int:
    return int(r.command("PUBSUB", "NUMSUB", channel).split(b"\r\n")[-2][1:])


async def serve(broker_url: str) -> tuple[wirecall.Server, PubSub, dict[str, str]]:
    server = wirecall.Server()
    service = PubSub(broker_url)
    server.register(service)
    server.register(PubSubStream(service))  # the same broker
    got = await server.start("grpc://127.0.0.1:0", "tcp://127.0.0.1:0", "ws://127.0.0.1:0")
    return server, service, {u.split(":")[0]: u for u in got}


@pytest.fixture
async def urls(redis_server: RedisServer) -> AsyncIterator[dict[str, str]]:
    server, service, urls = await serve(redis_server.url)
    yield urls
    await server.close(drain_timeout=1)
    await service.broker.aclose()


@pytest.mark.parametrize("scheme", ["grpc", "tcp", "ws"])
async def test_a_stream_of_messages_reaches_every_subscriber_in_order(
        scheme: str, urls: dict[str, str]) -> None:
    url = urls[scheme]
    sent = [f"m{i} 你好" for i in range(1500)]
    async with remote_subscription(url, "t") as a, remote_subscription(url, "t") as b:
        async with stream_publisher(url) as pub:
            for m in sent:
                await pub.send("t", m)
        # receivers: what PUBLISH said, Redis connections (the server's one) per message
        assert (pub.published, pub.receivers) == (1500, 1500)
        for sub in (a, b):
            got = [await asyncio.wait_for(sub.recv(), 5) for _ in sent]
            assert got == sent


async def test_on_streams_every_message_is_stored(redis_server: RedisServer) -> None:
    server, service, urls = await serve(redis_server.url.replace("redis://",
                                                                 "redis+streams://"))
    try:
        async with remote_subscription(urls["tcp"], "orders") as sub:
            async with stream_publisher(urls["tcp"]) as pub:
                for i in range(300):
                    await pub.send("orders", f"o{i}")
            assert (pub.published, pub.receivers) == (300, 300)
            assert redis_server.command("XLEN", "orders") == b":300\r\n"
            assert [await asyncio.wait_for(sub.recv(), 5) for _ in range(300)] == \
                [f"o{i}" for i in range(300)]
    finally:
        await server.close(drain_timeout=1)
        await service.broker.aclose()


async def test_on_memory_too() -> None:
    server, _service, urls = await serve("memory://")
    try:
        async with remote_subscription(urls["tcp"], "t") as sub:
            async with stream_publisher(urls["tcp"]) as pub:
                for i in range(50):
                    await pub.send("t", str(i))
            assert (pub.published, pub.receivers) == (50, 50)
            assert [await asyncio.wait_for(sub.recv(), 5) for _ in range(50)] == \
                [str(i) for i in range(50)]
    finally:
        await server.close(drain_timeout=1)


@pytest.mark.parametrize("scheme", ["tcp", "ws"])
async def test_an_empty_topic_ends_the_stream_after_the_messages_before_it(
        scheme: str, urls: dict[str, str]) -> None:
    url = urls[scheme]
    async with remote_subscription(url, "t") as sub:
        with pytest.raises(InvalidArgument, match="topic: must not be empty"):
            async with stream_publisher(url) as pub:
                for i in range(5):
                    await pub.send("t", f"ok{i}")
                await pub.send("", "bad")
        assert [await asyncio.wait_for(sub.recv(), 5) for _ in range(5)] == \
            [f"ok{i}" for i in range(5)]


async def test_a_message_lost_with_the_connection_is_published_again(
        redis_server: RedisServer) -> None:
    server, service, urls = await serve(redis_server.url)
    url = urls["tcp"]
    try:
        async with remote_subscription(url, "t") as sub, stream_publisher(url) as pub:
            await pub.send("t", "before")
            assert await asyncio.wait_for(sub.recv(), 5) == "before"
            redis_server.kill()
            redis_server.start()  # same port; the pipelined connection is dead now
            deadline = time.monotonic() + 10
            while numsub(redis_server, "t") == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)  # the broker subscribes again by itself
            for i in range(20):
                await pub.send("t", f"after{i}")
            got = [await asyncio.wait_for(sub.recv(), 5) for _ in range(20)]
            assert sorted(got) == sorted(f"after{i}" for i in range(20))  # none lost
        assert pub.published == 21
    finally:
        await server.close(drain_timeout=1)
        await service.broker.aclose()


async def test_redis_down_is_unavailable(redis_server: RedisServer) -> None:
    server, service, urls = await serve(redis_server.url)
    try:
        redis_server.kill()
        with pytest.raises(RpcError) as ei:
            async with stream_publisher(urls["tcp"], timeout=20) as pub:
                for i in range(10):
                    await pub.send("t", f"m{i}")
        assert ei.value.status.name == "UNAVAILABLE"
        assert "the Redis broker is unavailable" in ei.value.message
    finally:
        await server.close(drain_timeout=1)
        await service.broker.aclose()
