"""The tutorial's Go Pub/Sub programs (server on Redis via redigo, publisher, subscriber) and
wirecall's PubSub on one real Redis, in every direction:

* Go publisher -> wirecall server -> Go and wirecall subscribers;
* wirecall publisher -> Go server (on Redis) -> wirecall subscriber;
* mixed servers on one Redis: Go publisher -> Go server -> Redis -> wirecall server ->
  subscribers of both kinds, and wirecall publisher -> wirecall server -> Redis -> Go
  server -> Go subscriber.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import pytest

import wirecall
from interop.grpc_go import harness
from support.redis import RedisServer
from wirecall.pubsub.client import publish, remote_subscription
from wirecall.pubsub.redis_pubsub import RedisPubSubBroker
from wirecall.pubsub.service import PubSub

MESSAGES = ("你好 世界", "gRPC 流", "推送")


def numsub(r: RedisServer, channel: str) -> int:
    return int(r.command("PUBSUB", "NUMSUB", channel).split(b"\r\n")[-2][1:])


async def until(cond: object, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with RedisServer() as r:
        yield r


@pytest.fixture
async def wc(redis: RedisServer) -> AsyncIterator[tuple[str, RedisPubSubBroker]]:
    server = wirecall.Server()
    broker = RedisPubSubBroker(redis.url)
    server.register(PubSub(broker))
    [url] = await server.start("grpc://127.0.0.1:0")
    yield url, broker
    await server.close(drain_timeout=1)
    await broker.aclose()


@pytest.fixture
def go_server(redis: RedisServer) -> Iterator[str]:
    srv = harness.start("pubsub_server", "127.0.0.1:0", redis.address)
    yield f"grpc://{srv.addr}"
    srv.stop()


async def go_publish(url: str, topic: str, *messages: str) -> None:
    exe = await asyncio.to_thread(harness.build, "pubsub_publisher")
    proc = await asyncio.create_subprocess_exec(
        str(exe), url.removeprefix("grpc://"), topic, *messages,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert [json.loads(x) for x in out.decode().splitlines()] == [
        {"topic": topic, "success": True}] * len(messages)


async def go_subscriber(url: str, topic: str, n: int) -> asyncio.subprocess.Process:
    exe = await asyncio.to_thread(harness.build, "pubsub_subscriber")
    return await asyncio.create_subprocess_exec(
        str(exe), url.removeprefix("grpc://"), topic, str(n),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)


async def go_messages(proc: asyncio.subprocess.Process) -> list[str]:
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    lines = [json.loads(x) for x in out.decode().splitlines()]
    return [x["message"] for x in lines if "message" in x]


async def test_go_publisher_to_wirecall_server_to_go_and_wirecall_subscribers(
        redis: RedisServer, wc: tuple[str, RedisPubSubBroker]) -> None:
    url, broker = wc
    go_sub = await go_subscriber(url, "topic1", len(MESSAGES))
    async with remote_subscription(url, "topic1") as py_sub:
        # the Go subscriber prints nothing when it is live: wait until the server has both
        await until(lambda: broker.subscribed().get("topic1") == 2, "Go never subscribed")
        assert numsub(redis, "topic1") == 1  # one Redis subscription serves both
        await go_publish(url, "topic1", *MESSAGES)
        got = [await asyncio.wait_for(py_sub.recv(), 10) for _ in MESSAGES]
    assert got == list(MESSAGES)
    assert await go_messages(go_sub) == list(MESSAGES)


async def test_wirecall_publisher_to_go_server_on_redis_to_wirecall_subscriber(
        redis: RedisServer, go_server: str) -> None:
    async with remote_subscription(go_server, "t", confirm=False) as sub:
        await until(lambda: numsub(redis, "t") == 1, "the Go server never subscribed")
        for m in MESSAGES:
            assert await publish(go_server, "t", m)
        assert [await asyncio.wait_for(sub.recv(), 10) for _ in MESSAGES] == list(MESSAGES)
    await until(lambda: numsub(redis, "t") == 0, "the Go server kept the subscription")


async def test_mixed_servers_on_one_redis(redis: RedisServer, go_server: str,
                                          wc: tuple[str, RedisPubSubBroker]) -> None:
    url, broker = wc
    # Go publisher -> Go server -> Redis -> wirecall server -> wirecall and Go subscribers
    go_sub = await go_subscriber(url, "mixed", len(MESSAGES))
    async with remote_subscription(url, "mixed") as py_sub:
        await until(lambda: broker.subscribed().get("mixed") == 2, "Go never subscribed")
        await go_publish(go_server, "mixed", *MESSAGES)
        assert [await asyncio.wait_for(py_sub.recv(), 10) for _ in MESSAGES] == list(MESSAGES)
    assert await go_messages(go_sub) == list(MESSAGES)
    # wirecall publisher -> wirecall server -> Redis -> Go server -> Go subscriber
    go_sub = await go_subscriber(go_server, "back", len(MESSAGES))
    await until(lambda: numsub(redis, "back") == 1, "the Go server never subscribed")
    for m in MESSAGES:
        assert await publish(url, "back", m)
    assert await go_messages(go_sub) == list(MESSAGES)
