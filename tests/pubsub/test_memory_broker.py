"""The Pub/Sub room: the in-memory broker (``wirecall.pubsub.memory``) and the PubSub service
(``wirecall.pubsub.service``) over it, on a tcp:// loopback server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import wirecall
from wirecall.pubsub import MemoryBroker


async def test_subscribers_get_messages_in_order_from_subscription_on() -> None:
    broker = MemoryBroker()
    assert await broker.publish("t", "before") == 0  # nobody listening: dropped
    async with broker.subscribe("t") as a, broker.subscribe("t") as b:
        assert broker.subscribers("t") == 2
        assert await broker.publish("t", "one") == 2
        assert await broker.publish("other", "x") == 0
        assert await broker.publish("t", "two") == 2
        assert [await a.__anext__(), await a.__anext__()] == ["one", "two"]
        assert [await b.__anext__(), await b.__anext__()] == ["one", "two"]
    assert broker.subscribers("t") == 0  # unsubscribed on exit
    assert await broker.publish("t", "after") == 0


async def test_a_waiting_subscriber_is_woken_and_a_closed_one_ends() -> None:
    broker = MemoryBroker()
    sub = broker.subscribe("t")
    waiting = asyncio.ensure_future(sub.__anext__())
    await asyncio.sleep(0)
    assert not waiting.done()
    await broker.publish("t", "hi")
    assert await asyncio.wait_for(waiting, 1) == "hi"
    got: list[str] = []

    async def drain() -> None:
        async for m in sub:
            got.append(m)

    task = asyncio.ensure_future(drain())
    await asyncio.sleep(0)
    await sub.aclose()  # the iteration ends instead of waiting forever
    await asyncio.wait_for(task, 1)
    assert got == []


async def test_a_slow_subscriber_loses_its_oldest_messages() -> None:
    broker = MemoryBroker(limit=3)
    async with broker.subscribe("t") as sub:
        for i in range(5):
            await broker.publish("t", str(i))
        assert sub.dropped == 2
        assert [await sub.__anext__() for _ in range(3)] == ["2", "3", "4"]


async def test_the_pubsub_service_publishes_to_subscribers(serve: Any) -> None:
    service = pytest.importorskip("wirecall.pubsub.service")
    broker = MemoryBroker()
    url = await serve(service.PubSub(broker))
    async with await wirecall.connect(url, codec="proto") as client:
        stub = service.PubSubStub(client)
        stream = stub.Subscribe(service.SubscribeRequest(topic="news"))
        received: list[str] = []

        async def listen() -> None:
            async for msg in stream:
                received.append(msg.message)
                if len(received) == 2:
                    break

        listener = asyncio.ensure_future(listen())
        for _ in range(100):  # wait until the subscription reached the broker
            if broker.subscribers("news"):
                break
            await asyncio.sleep(0.01)
        for text in ("你好", "世界"):
            r = await stub.Publish(service.PublishRequest(topic="news", message=text), timeout=5)
            assert r.success
        await asyncio.wait_for(listener, 5)
    assert received == ["你好", "世界"]
