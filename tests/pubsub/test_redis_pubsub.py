"""The Redis Pub/Sub broker (redis://) against a real redis-server: fan-out, patterns, one
dedicated subscription connection, live means live, unsubscribing at once, slow subscribers,
Redis killed and restarted."""

from __future__ import annotations

import asyncio
import re

import pytest

from support.redis import RedisServer
from wirecall.errors import InvalidArgument, ResourceExhausted, Unavailable
from wirecall.pubsub import open_broker
from wirecall.pubsub.redis_pubsub import RedisPubSubBroker


def numsub(r: RedisServer, channel: str) -> int:
    return int(r.command("PUBSUB", "NUMSUB", channel).split(b"\r\n")[-2][1:])


def pubsub_clients(r: RedisServer) -> int:
    listing = r.command("CLIENT", "LIST").decode()
    return sum(1 for line in listing.splitlines() if re.search(r" (sub|psub)=[1-9]", line))


async def test_fan_out_on_one_dedicated_connection_and_patterns(redis_server: RedisServer
                                                                ) -> None:
    broker = open_broker(redis_server.url)
    assert isinstance(broker, RedisPubSubBroker)
    try:
        a, b = broker.subscribe("news"), broker.subscribe("news")
        p = broker.subscribe("ne*", pattern=True)
        for s in (a, b, p):
            await asyncio.wait_for(s.live(), 5)  # confirmed by Redis: publishing reaches it
        assert numsub(redis_server, "news") == 1  # one SUBSCRIBE for both local subscribers
        assert pubsub_clients(redis_server) == 1  # ... on one dedicated connection
        assert await broker.publish("news", "你好") == 2  # the channel and the pattern
        assert await broker.publish("nest", "x") == 1
        assert await broker.publish("other", "y") == 0
        assert [await a.__anext__(), await b.__anext__()] == ["你好", "你好"]
        assert [await p.__anext__(), await p.__anext__()] == ["你好", "x"]
        await a.aclose()
        assert numsub(redis_server, "news") == 1  # b still listens
        await b.aclose()
        assert numsub(redis_server, "news") == 0  # the last one left: unsubscribed at once
        await p.aclose()
        assert pubsub_clients(redis_server) == 0  # nothing left subscribed in Redis
    finally:
        await broker.aclose()


async def test_a_slow_subscriber_loses_its_oldest_and_slows_nobody(redis_server: RedisServer
                                                                   ) -> None:
    broker = open_broker(redis_server.url + "?limit=5")
    try:
        async with broker.subscribe("t") as slow, broker.subscribe("t") as fast:
            await slow.live()
            await fast.live()
            got: list[str] = []
            for i in range(50):
                await broker.publish("t", str(i))
                got.append(await asyncio.wait_for(fast.__anext__(), 5))
            assert got == [str(i) for i in range(50)]
            assert slow.dropped == 45
            assert [await slow.__anext__() for _ in range(5)] == ["45", "46", "47", "48", "49"]
    finally:
        await broker.aclose()


async def test_overflow_close_ends_the_subscription_with_resource_exhausted(
        redis_server: RedisServer) -> None:
    broker = RedisPubSubBroker(redis_server.url, limit=3, overflow="close")
    try:
        sub = broker.subscribe("t")
        await sub.live()
        for i in range(4):
            await broker.publish("t", str(i))
        # PUBLISH is answered before Redis delivers on the subscription connection: read only
        # once the 4th message has arrived (reading earlier makes room, and nothing overflows)
        for _ in range(500):
            if sub.buffer.closed:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(ResourceExhausted, match="3 messages behind"):
            for _ in range(5):
                await asyncio.wait_for(sub.__anext__(), 5)
        for _ in range(100):  # the overflowed subscriber was unsubscribed
            if numsub(redis_server, "t") == 0:
                break
            await asyncio.sleep(0.01)
        assert numsub(redis_server, "t") == 0
    finally:
        await broker.aclose()


async def test_subscriptions_come_back_after_redis_is_killed_and_restarted(
        redis_server: RedisServer) -> None:
    broker = RedisPubSubBroker(redis_server.url, retry_max=0.2)
    try:
        sub = broker.subscribe("t")
        pat = broker.subscribe("t.*", pattern=True)
        await sub.live()
        await pat.live()
        await broker.publish("t", "before")
        assert await sub.__anext__() == "before"
        redis_server.kill()
        with pytest.raises(Unavailable, match="unavailable"):  # the cause stays in the log
            await broker.publish("t", "while down")
        redis_server.start()
        got: list[str] = []
        for i in range(200):  # at-most-once: publish until the resubscription is back
            if await broker.publish("t", f"after{i}") and await broker.publish("t.x", "p"):
                break
            await asyncio.sleep(0.02)
        got.append(await asyncio.wait_for(sub.__anext__(), 5))
        assert got[0].startswith("after")
        assert await asyncio.wait_for(pat.__anext__(), 5) == "p"
        assert broker.reconnects >= 1
        assert numsub(redis_server, "t") == 1
    finally:
        await broker.aclose()


async def test_options_are_checked() -> None:
    with pytest.raises(InvalidArgument, match="scheme"):
        open_broker("kafka://x")
    with pytest.raises(InvalidArgument, match="overflow"):
        RedisPubSubBroker("redis://127.0.0.1:1/0", overflow="block")
    with pytest.raises(InvalidArgument, match="limit"):
        open_broker("redis://127.0.0.1:1/0?limit=0")
    with pytest.raises(InvalidArgument, match="bogus"):
        open_broker("redis://127.0.0.1:1/0?bogus=1")
    broker = RedisPubSubBroker("redis://127.0.0.1:1/0")
    try:
        with pytest.raises(InvalidArgument, match="group"):
            broker.subscribe("t", group="g")
    finally:
        await broker.aclose()


@pytest.mark.parametrize("url", ["redis", "memory://"])
async def test_convert_makes_one_item_per_message_for_all_subscribers(
        url: str, redis_server: RedisServer) -> None:
    """What a server's subscribers share: ``convert`` runs once per message, and each
    subscriber with that ``convert`` gets the same object (one reply built, not one each)."""
    broker = open_broker(redis_server.url if url == "redis" else url)
    made: list[str] = []

    def convert(m: str) -> tuple[str]:
        made.append(m)
        return (m,)

    try:
        subs = [broker.subscribe("t", convert=convert) for _ in range(3)]
        plain = broker.subscribe("t")
        for s in (*subs, plain):
            await asyncio.wait_for(s.live(), 5)
        await broker.publish("t", "a")
        await broker.publish("t", "b")
        got = [[await asyncio.wait_for(s.__anext__(), 5) for _ in range(2)] for s in subs]
        assert got[0] == [("a",), ("b",)]
        assert all(g[i] is got[0][i] for g in got for i in range(2))  # the same objects
        assert made == ["a", "b"]  # once per message
        assert [await asyncio.wait_for(plain.__anext__(), 5) for _ in range(2)] == ["a", "b"]
        for s in (*subs, plain):
            await s.aclose()
    finally:
        await broker.aclose()
