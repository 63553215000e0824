"""The transactional outbox, its relay and the idempotent consumer: events commit with the
state change or not at all; the relay publishes in order to real Redis Streams and to a real
wirecall consumer; a crash between publish and mark redelivers, and the consumer's dedupe
keeps the effect single; a consumer that is down is retried with backoff."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import wirecall
from support.redis import RedisServer
from wirecall.txn.outbox import (
    Relay,
    add_event,
    broker_publisher,
    consume_once,
    create_tables,
    rpc_publisher,
)

pytestmark = pytest.mark.timeout(60)


def order_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, total INTEGER)")
    create_tables(conn.cursor())
    return conn


def place(conn: sqlite3.Connection, oid: str, total: int, fail: bool = False) -> None:
    cur = conn.cursor()
    cur.execute("BEGIN")
    cur.execute("INSERT INTO orders VALUES (?, ?)", (oid, total))
    add_event(cur, "orders", {"order": oid, "total": total}, msg_id=f"order-{oid}")
    if fail:
        cur.execute("ROLLBACK")
        return
    cur.execute("COMMIT")


def test_event_commits_with_the_state_change_or_not_at_all(tmp_path: Path) -> None:
    conn = order_db(tmp_path / "o.db")
    place(conn, "a", 10)
    place(conn, "b", 20, fail=True)
    assert conn.execute("SELECT msg_id FROM wirecall_outbox").fetchall() == [("order-a",)]
    assert conn.execute("SELECT id FROM orders").fetchall() == [("a",)]


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as r:
        yield r


async def test_relay_publishes_in_order_to_redis_streams(tmp_path: Path,
                                                         redis_server: RedisServer) -> None:
    import redis.asyncio as aioredis

    from wirecall.pubsub.redis_streams import RedisStreamsBroker

    path = tmp_path / "o.db"
    conn = order_db(path)
    for i in range(5):
        place(conn, f"o{i}", i)
    broker = RedisStreamsBroker(redis_server.url)
    relay = Relay(lambda: sqlite3.connect(path), broker_publisher(broker))
    try:
        assert await relay.run_once() == 5
        assert await relay.run_once() == 0
    finally:
        relay.close()
        await broker.aclose()
    r = aioredis.from_url(redis_server.url)
    try:
        entries = await r.xrange("orders")
    finally:
        await r.aclose()
    import json

    got = [json.loads(fields[b"m"]) for _id, fields in entries]
    assert [g["msg_id"] for g in got] == [f"order-o{i}" for i in range(5)]
    assert got[3]["payload"] == {"order": "o3", "total": 3}
    assert conn.execute("SELECT COUNT(*) FROM wirecall_outbox WHERE published_at IS NULL"
                        ).fetchone() == (0,)


class Shipping:
    """A consumer whose effect (a shipment row) is deduplicated by message id."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("CREATE TABLE IF NOT EXISTS shipments (order_id TEXT, total INT)")
        create_tables(self.conn.cursor())
        self.deliveries = 0

    @wirecall.method(inline=True)
    def Deliver(self, msg_id: str, topic: str, payload: dict[str, Any]) -> bool:
        self.deliveries += 1
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        ran = consume_once(cur, "shipping", msg_id, lambda c: c.execute(
            "INSERT INTO shipments VALUES (?, ?)", (payload["order"], payload["total"])))
        cur.execute("COMMIT")
        return ran


async def test_redelivery_after_a_relay_crash_has_one_effect(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    conn = order_db(path)
    for i in range(3):
        place(conn, f"o{i}", i)
    shipping = Shipping(tmp_path / "ship.db")
    server = wirecall.Server()
    server.register(shipping)
    url = (await server.start("tcp://127.0.0.1:0"))[0]
    client = await wirecall.connect(url)
    publish = rpc_publisher(client, "Shipping.Deliver")
    calls = 0

    async def crash_after_second_publish(topic: str, payload: Any, msg_id: str) -> Any:
        nonlocal calls
        calls += 1
        await publish(topic, payload, msg_id)
        if calls == 2:  # published, then "died" before marking it
            raise ConnectionResetError("relay died")

    relay = Relay(lambda: sqlite3.connect(path), crash_after_second_publish)
    try:
        with pytest.raises(ConnectionResetError):
            await relay.run_once()
        assert await relay.run_once() == 2  # o1 again, then o2
        assert shipping.deliveries == 4
        rows = shipping.conn.execute("SELECT order_id FROM shipments ORDER BY rowid").fetchall()
        assert rows == [("o0",), ("o1",), ("o2",)]
    finally:
        relay.close()
        await client.close()
        await server.close()


async def test_relay_retries_a_consumer_that_is_down(tmp_path: Path) -> None:
    from support.servers import free_port

    path = tmp_path / "o.db"
    conn = order_db(path)
    place(conn, "x", 1)
    port = free_port()
    client = wirecall.Client(f"tcp://127.0.0.1:{port}", connect_timeout=0.5)
    relay = Relay(lambda: sqlite3.connect(path), rpc_publisher(client, "Shipping.Deliver", 1.0),
                  interval=0.05, max_backoff=0.2)
    task = asyncio.create_task(relay.run())
    for _ in range(200):  # the consumer is down: the relay fails and retries
        if relay.failures >= 2:
            break
        await asyncio.sleep(0.05)
    assert relay.failures >= 2 and relay.published == 0
    shipping = Shipping(tmp_path / "ship.db")
    server = wirecall.Server()
    server.register(shipping)
    await server.start(f"tcp://127.0.0.1:{port}")
    try:
        for _ in range(100):
            if relay.published:
                break
            await asyncio.sleep(0.05)
        assert relay.published == 1
        assert shipping.conn.execute("SELECT COUNT(*) FROM shipments").fetchone() == (1,)
    finally:
        relay.stop()
        await task
        relay.close()
        await client.close()
        await server.close()
