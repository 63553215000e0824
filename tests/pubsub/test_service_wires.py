"""One PubSub class on grpc://, tcp:// and ws:// over a real Redis: the subscription is
confirmed when live (gRPC: a header before any message; any wire: a first message on
request), cancelling frees the Redis subscription at once, a subscriber that stops reading
slows nobody, and bad requests are INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
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
            # on tcp:// a message is acked once 16 more were sent after it (then the remote
            # application has consumed it): o0..o2 come again, then o3, published while
            # b1 was away
            assert [await asyncio.wait_for(sub.recv(), 5) for _ in range(4)] == [
                "o0", "o1", "o2", "o3"]
        async with remote_subscription(url, "orders", start="0") as replay:
            assert [await asyncio.wait_for(replay.recv(), 5) for _ in range(4)] == [
                "o0", "o1", "o2", "o3"]
    finally:
        await server.close(drain_timeout=1)
        await service.broker.aclose()


KILLED_SUBSCRIBER = """
import asyncio, os, signal, sys
from wirecall.pubsub.client import remote_subscription

async def main(url, n):
    async with remote_subscription(url, "jobs", group="workers") as sub:
        print("live", flush=True)
        for _ in range(n):
            print(await sub.recv(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # dies holding unacknowledged messages

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


@pytest.mark.parametrize("scheme", ["tcp", "ws"])
async def test_a_killed_subscribers_unacked_messages_go_to_another(
        scheme: str, redis_server: RedisServer) -> None:
    server = wirecall.Server()
    service = PubSub(redis_server.url.replace("redis://", "redis+streams://")
                     + "?claim_ms=300")
    server.register(service)
    [url] = await server.start(f"{scheme}://127.0.0.1:0")
    try:
        proc = subprocess.Popen([sys.executable, "-c", KILLED_SUBSCRIBER, url, "20"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
        assert proc.stdout is not None
        assert await asyncio.to_thread(proc.stdout.readline) == "live\n"
        sent = [f"j{i}" for i in range(60)]
        for m in sent:
            assert await publish(url, "jobs", m)
        out, err = await asyncio.to_thread(proc.communicate, timeout=20)
        assert proc.returncode == -9, err
        first = out.split()
        assert first == sent[:20]  # what the killed subscriber's application consumed
        async with remote_subscription(url, "jobs", group="workers") as other:
            got: list[str] = []
            while not set(sent[20:]) <= set(got):
                got.append(await asyncio.wait_for(other.recv(), 10))
        assert set(first) | set(got) == set(sent)  # at-least-once: nothing lost
    finally:
        await server.close(drain_timeout=1)
        await service.broker.aclose()


@pytest.mark.parametrize("mode", ["redis", "redis+streams"])
async def test_redis_killed_and_restarted_under_remote_subscribers(
        mode: str, redis_persistent: RedisServer) -> None:
    r = redis_persistent
    server = wirecall.Server()
    service = PubSub(r.url.replace("redis://", f"{mode}://"))
    server.register(service)
    [url] = await server.start("grpc://127.0.0.1:0")
    try:
        async with remote_subscription(url, "t") as sub:
            received: list[str] = []

            async def read() -> None:
                async for m in sub:
                    received.append(m)

            reader = asyncio.ensure_future(read())
            sent: list[str] = []
            for i in range(40):
                if i == 10:
                    r.kill()
                if i == 15 and r.proc is None:  # (not restarted by the retry below already:
                    r.start()  # a second redis-server on the port would be left running)
                while True:  # the publisher retries what was not acknowledged
                    try:
                        assert await publish(url, "t", f"m{i}")
                        break
                    except wirecall.RpcError as exc:
                        assert exc.status.name == "UNAVAILABLE", exc
                        await asyncio.sleep(0.05)
                        if r.proc is None:
                            r.start()
                sent.append(f"m{i}")
                await asyncio.sleep(0.01)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and received[-1:] != [sent[-1]]:
                if mode == "redis":  # at-most-once: publish until the stream is back
                    await publish(url, "t", "late")
                    sent.append("late")
                await asyncio.sleep(0.05)
            reader.cancel()
        assert received[:10] == sent[:10]  # before the crash: all of them
        if mode == "redis+streams":  # at-least-once: nothing published is lost
            assert set(received) >= set(sent)
        # the subscription came back by itself: the stream went on to the last message
        assert received[-1] == sent[-1]
    finally:
        await server.close(drain_timeout=1)
        await service.broker.aclose()


async def test_a_pattern_subscription_through_the_service(urls: dict[str, str],
                                                          redis_server: RedisServer) -> None:
    url = urls["tcp"]
    async with remote_subscription(url, "news.*", pattern=True) as sub:
        assert redis_server.command("PUBSUB", "NUMPAT") == b":1\r\n"  # PSUBSCRIBE live
        assert await publish(url, "news.sport", "goal")
        assert await publish(url, "weather", "rain")  # not matched
        assert await publish(url, "news.tech", "chip")
        assert [await asyncio.wait_for(sub.recv(), 5) for _ in range(2)] == ["goal", "chip"]
    with pytest.raises(InvalidArgument, match="wirecall-pattern"):
        async with remote_subscription(url, "x", pattern="yes"):
            pass
