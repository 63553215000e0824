"""One PubSub class on grpc://, tcp:// and ws:// over a real Redis: the subscription is
confirmed when live (gRPC: a header before any message; any wire: a first message on
request), cancelling frees the Redis subscription at once, a subscriber that stops reading
slows nobody, and bad requests are INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

import wirecall
from support.redis import RedisServer
from wirecall.errors import InvalidArgument
from wirecall.pubsub.client import publish, remote_subscription
from wirecall.pubsub.service import (
    SUBSCRIBED_HEADER,
    PubSub,
    PubSubStub,
    SubscribeRequest,
)
from wirecall.transport import grpc as tg
from wirecall.transport.base import parse_url


def numsub(r: RedisServer, channel: str) -> int:
    return int(r.command("PUBSUB", "NUMSUB", channel).split(b"\r\n")[-2][1:])


@pytest.fixture
async def urls(redis_server: RedisServer) -> AsyncIterator[dict[str, str]]:
    server = wirecall.Server()
    service = PubSub(redis_server.url + "?limit=50")
    server.register(service)
    got = await server.start("grpc://127.0.0.1:0", "tcp://127.0.0.1:0", "ws://127.0.0.1:0")
    yield {u.split(":")[0]: u for u in got}
    await server.close(drain_timeout=1)
    await service.broker.aclose()


@pytest.mark.parametrize("scheme", ["grpc", "tcp", "ws"])
async def test_confirmed_when_live_then_messages_then_cancel_unsubscribes_at_once(
        scheme: str, urls: dict[str, str], redis_server: RedisServer) -> None:
    url = urls[scheme]
    async with remote_subscription(url, "news") as sub:
        # confirmed: Redis has the subscription now, so this publish cannot be lost
        assert numsub(redis_server, "news") == 1
        assert await publish(url, "news", "你好 世界")
        assert await asyncio.wait_for(sub.recv(), 5) == "你好 世界"
    t0 = time.monotonic()
    while numsub(redis_server, "news") and time.monotonic() - t0 < 2:
        await asyncio.sleep(0.005)
    assert numsub(redis_server, "news") == 0  # the client left: Redis unsubscribed


async def test_grpc_confirms_with_a_header_before_any_message(urls: dict[str, str],
                                                              redis_server: RedisServer) -> None:
    conn = await tg.connect(parse_url(urls["grpc"]))
    try:
        stream = PubSubStub(conn).Subscribe(SubscribeRequest(topic="t"), timeout=10)
        md = await asyncio.wait_for(stream.initial_metadata(), 5)
        assert md[SUBSCRIBED_HEADER] == "t"
        assert numsub(redis_server, "t") == 1  # the header came once Redis confirmed
        assert not stream._items  # and no message: what the Go subscriber expects
        stream.cancel()
    finally:
        await conn.aclose()


@pytest.mark.parametrize("scheme", ["grpc", "tcp"])
async def test_a_subscriber_that_stops_reading_slows_nobody(scheme: str, urls: dict[str, str]
                                                           ) -> None:
    url = urls[scheme]
    async with remote_subscription(url, "t") as stuck, remote_subscription(url, "t") as live:
        t0 = time.monotonic()
        for i in range(400):  # far beyond the stuck one's windows and its buffer of 50
            assert await publish(url, "t", f"m{i}-" + "x" * 200)
            assert (await asyncio.wait_for(live.recv(), 5)).startswith(f"m{i}-")
        assert time.monotonic() - t0 < 30
        first = await asyncio.wait_for(stuck.recv(), 5)  # it lost the middle, not the end
        assert first.startswith("m")


@pytest.mark.parametrize("scheme", ["grpc", "tcp", "ws"])
async def test_bad_requests_name_the_field(scheme: str, urls: dict[str, str]) -> None:
    url = urls[scheme]
    with pytest.raises(InvalidArgument, match="topic"):
        await publish(url, "", "x")
    with pytest.raises(InvalidArgument, match="wirecall-group"):
        async with remote_subscription(url, "t", group="g"):  # Pub/Sub has no groups
            pass
    with pytest.raises(InvalidArgument, match="wirecall-pubsub-bogus"):
        async with await wirecall.connect(url, **({"codec": "proto"} if scheme == "tcp"
                                                  else {})) as c:
            if scheme == "ws":
                st = c.stream("pubsub.PubSub.Subscribe", {"topic": "t"},
                              metadata={"wirecall-pubsub-bogus": "1"}, timeout=5)
            else:
                st = PubSubStub(c).Subscribe(SubscribeRequest(topic="t"),
                                             metadata={"wirecall-pubsub-bogus": "1"}, timeout=5)
            await st.recv()


async def test_ws_json_requests_name_unknown_fields(urls: dict[str, str]) -> None:
    async with await wirecall.connect(urls["ws"]) as c:
        with pytest.raises(InvalidArgument, match="colour"):
            await c.call("pubsub.PubSub.Publish", {"topic": "t", "colour": "red"}, timeout=5)
        with pytest.raises(InvalidArgument, match="message: must be a string"):
            await c.call("pubsub.PubSub.Publish", {"topic": "t", "message": 3}, timeout=5)


async def test_streams_through_the_service_with_a_group(redis_server: RedisServer) -> None:
    server = wirecall.Server()
    service = PubSub(redis_server.url.replace("redis://", "redis+streams://"))
    server.register(service)
    [url] = await server.start("tcp://127.0.0.1:0")
    try:
        async with remote_subscription(url, "orders", group="billing",
                                       consumer="b1") as sub:
            for i in range(3):
                assert await publish(url, "orders", f"o{i}")
            assert [await asyncio.wait_for(sub.recv(), 5) for _ in range(3)] == [
                "o0", "o1", "o2"]
        assert await publish(url, "orders", "o3")  # while the subscriber is away
        async with remote_subscription(url, "orders", group="billing", consumer="b1") as sub:
            # o0..o2 were acked when the transport took them (the handler asked for the
            # next one); o3 was published while b1 was away: it resumes with it
            assert await asyncio.wait_for(sub.recv(), 5) == "o3"
        async with remote_subscription(url, "orders", start="0") as replay:
            assert [await asyncio.wait_for(replay.recv(), 5) for _ in range(4)] == [
                "o0", "o1", "o2", "o3"]
    finally:
        await server.close(drain_timeout=1)
        await service.broker.aclose()
