"""The Redis Streams broker (redis+streams://) against a real redis-server: acks when taken,
a killed consumer's messages claimed by another, resume by name, Redis killed and restarted
(AOF) with nothing lost, retention, replay from an id or a time, slow subscribers lag
without losing."""

from __future__ import annotations

import asyncio
import time

import pytest

from support.redis import RedisServer
from wirecall.errors import InvalidArgument, Unavailable
from wirecall.pubsub import open_broker
from wirecall.pubsub.redis_streams import RedisStreamsBroker


def streams_url(r: RedisServer, query: str = "") -> str:
    return r.url.replace("redis://", "redis+streams://") + query


def pending(r: RedisServer, key: str, group: str) -> int:
    return int(r.command("XPENDING", key, group).split(b"\r\n")[1][1:])


async def take(sub: object, n: int, timeout: float = 5) -> list[str]:
    return [await asyncio.wait_for(sub.__anext__(), timeout) for _ in range(n)]  # type: ignore


async def test_acked_when_taken_and_groups_each_get_everything(redis_server: RedisServer
                                                               ) -> None:
    broker = open_broker(streams_url(redis_server))
    assert isinstance(broker, RedisStreamsBroker)
    try:
        a = broker.subscribe("orders", group="billing")
        b = broker.subscribe("orders", group="shipping")
        await a.live()
        await b.live()
        for i in range(3):
            assert await broker.publish("orders", f"o{i}") == 1
        assert await take(a, 3) == ["o0", "o1", "o2"]
        assert await take(b, 3) == ["o0", "o1", "o2"]
        await asyncio.sleep(0.05)
        assert pending(redis_server, "orders", "billing") == 1  # o2: taken, next not asked
        await broker.publish("orders", "o3")
        assert await take(a, 1) == ["o3"]
        await asyncio.sleep(0.05)
        assert pending(redis_server, "orders", "billing") == 1  # o2 acked now, o3 pending
    finally:
        await broker.aclose()


async def test_a_killed_consumers_unacked_messages_go_to_another(redis_server: RedisServer
                                                                 ) -> None:
    broker = RedisStreamsBroker(redis_server.url, claim_ms=200, block_ms=100)
    gone = RedisStreamsBroker(redis_server.url, claim_ms=200, block_ms=100)  # its process
    try:
        dying = gone.subscribe("jobs", consumer="worker-1")
        await dying.live()
        for i in range(6):
            await broker.publish("jobs", f"j{i}")
        assert await take(dying, 2) == ["j0", "j1"]  # j0 acked; j1..j5 delivered, unacked
        await asyncio.sleep(0.05)
        task = gone._readers["jobs"]._task
        assert task is not None
        task.cancel()  # the consumer's process dies: no more reads, no acks
        other = broker.subscribe("jobs", consumer="worker-2")
        got = await take(other, 5, timeout=5)
        assert sorted(got) == ["j1", "j2", "j3", "j4", "j5"]
        assert other.redeliveries == 5
    finally:
        await gone.aclose()
        await broker.aclose()


async def test_a_named_consumer_resumes_after_its_last_ack(redis_server: RedisServer) -> None:
    broker = RedisStreamsBroker(redis_server.url)
    try:
        sub = broker.subscribe("t", consumer="c1")
        await sub.live()
        for i in range(4):
            await broker.publish("t", str(i))
        assert await take(sub, 3) == ["0", "1", "2"]  # 0 and 1 acked, 2 taken not acked
        await asyncio.sleep(0.05)
        await sub.aclose()
        await broker.publish("t", "4")  # published while the subscriber is away
        back = broker.subscribe("t", consumer="c1")
        assert await take(back, 3) == ["2", "3", "4"]  # its pending first, then new ones
        await back.aclose()
    finally:
        await broker.aclose()


async def test_redis_killed_and_restarted_mid_stream_loses_nothing(
        redis_persistent: RedisServer) -> None:
    r = redis_persistent
    broker = RedisStreamsBroker(r.url, block_ms=100, retry_max=0.2)
    try:
        sub = broker.subscribe("t", consumer="c")
        await sub.live()
        received: list[str] = []

        async def read() -> None:
            async for m in sub:
                received.append(m)

        reader = asyncio.ensure_future(read())
        sent: list[str] = []
        for i in range(60):
            if i == 20:
                r.kill()
            if i == 30 and r.proc is None:  # (not restarted by the retry below already:
                r.start()  # a second redis-server on the port would be left running)
            while True:  # a publisher retries what Redis did not acknowledge
                try:
                    await broker.publish("t", f"m{i}")
                    break
                except Unavailable:
                    await asyncio.sleep(0.05)
                    if r.proc is None:
                        r.start()
            sent.append(f"m{i}")
        deadline = time.monotonic() + 10
        while set(received) < set(sent) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert set(received) >= set(sent)  # at-least-once: all of them (maybe twice)
        assert sorted(set(received), key=lambda m: int(m[1:])) == sent  # in order
        reader.cancel()
    finally:
        await broker.aclose()


async def test_retention_by_length_and_by_age(redis_server: RedisServer) -> None:
    by_len = open_broker(streams_url(redis_server, "?maxlen=10"))
    by_age = RedisStreamsBroker(redis_server.url, max_age_ms=50)
    try:
        for i in range(1000):
            await by_len.publish("len", str(i))
            await by_age.publish("age", str(i))
        await asyncio.sleep(0.1)
        await by_age.publish("age", "last")
        xlen_len = int(redis_server.command("XLEN", "len")[1:-2])
        xlen_age = int(redis_server.command("XLEN", "age")[1:-2])
        assert 10 <= xlen_len < 250  # MAXLEN ~: trimmed by whole nodes (100 entries)
        assert 1 <= xlen_age < 250  # MINID ~ now-50ms
    finally:
        await by_len.aclose()
        await by_age.aclose()


async def test_replay_from_an_id_and_from_a_time(redis_server: RedisServer) -> None:
    broker = RedisStreamsBroker(redis_server.url)
    try:
        for i in range(3):
            await broker.publish("t", f"a{i}")
        await asyncio.sleep(0.01)
        t_ms = int(time.time() * 1000)
        await asyncio.sleep(0.01)
        for i in range(2):
            await broker.publish("t", f"b{i}")
        first_id = redis_server.command("XRANGE", "t", "-", "+", "COUNT", "1").split(
            b"\r\n")[3].decode()
        async with broker.subscribe("t", start="0") as everything:
            assert await take(everything, 5) == ["a0", "a1", "a2", "b0", "b1"]
        async with broker.subscribe("t", start=first_id) as after:
            assert await take(after, 4) == ["a1", "a2", "b0", "b1"]
        async with broker.subscribe("t", start=f"@{t_ms}") as since:
            assert await take(since, 2) == ["b0", "b1"]
            await broker.publish("t", "live")  # then it goes on live
            assert await take(since, 1) == ["live"]
        with pytest.raises(InvalidArgument, match="start"):
            broker.subscribe("t", start="yesterday")
        with pytest.raises(InvalidArgument, match="group"):
            broker.subscribe("t", start="0", group="g")
        with pytest.raises(InvalidArgument, match="pattern"):
            broker.subscribe("t*", pattern=True)
    finally:
        await broker.aclose()


async def test_a_slow_subscriber_lags_in_redis_without_losing(redis_server: RedisServer
                                                              ) -> None:
    broker = RedisStreamsBroker(redis_server.url, limit=5, batch=5)
    try:
        slow = broker.subscribe("t")
        await slow.live()
        for i in range(50):
            await broker.publish("t", str(i))
        await asyncio.sleep(0.1)
        assert len(slow.buffer) <= 5  # reads only while it has room
        assert await take(slow, 50) == [str(i) for i in range(50)]
        assert slow.dropped == 0
    finally:
        await broker.aclose()


def connected_clients(r: RedisServer) -> int:
    info = r.command("INFO", "clients").decode()
    return int(info.split("connected_clients:")[1].split("\r\n")[0])


async def test_many_groups_on_one_topic_share_one_reader(redis_server: RedisServer) -> None:
    """40 consumers, each its own group (fan-out), each gets everything in order; they are
    read together (a doorbell connection and the pipelined one), not a connection each."""
    broker = RedisStreamsBroker(redis_server.url, block_ms=60_000)  # no wake-up by timeout
    try:
        subs = [broker.subscribe("t", group=f"g{i}") for i in range(40)]
        for s in subs:
            await s.live()
        for i in range(30):
            await broker.publish("t", str(i))
        for s in subs:
            assert await take(s, 30) == [str(i) for i in range(30)]
        assert connected_clients(redis_server) <= 5  # (40 before: one per consumer)
        await asyncio.sleep(0.2)  # all idle, the doorbell blocked: a new message wakes them
        await broker.publish("t", "later")
        for s in subs:
            assert await take(s, 1) == ["later"]
    finally:
        await broker.aclose()


async def test_a_consumer_with_room_again_reads_without_waiting_for_the_doorbell(
        redis_server: RedisServer) -> None:
    """A slow consumer's buffer fills; the others go on; once it takes, it reads again at
    once (block_ms is a minute: a consumer left waiting for a timeout fails the test)."""
    broker = RedisStreamsBroker(redis_server.url, limit=5, batch=5, block_ms=60_000)
    try:
        slow = broker.subscribe("t", group="slow")
        fast = broker.subscribe("t", group="fast")
        await slow.live()
        await fast.live()
        for i in range(40):
            await broker.publish("t", str(i))
        assert await take(fast, 40) == [str(i) for i in range(40)]
        assert len(slow.buffer) <= 5
        assert await take(slow, 40) == [str(i) for i in range(40)]
        assert pending(redis_server, "t", "slow") <= 1  # taken ones acked as it went
    finally:
        await broker.aclose()


async def test_consumers_read_in_one_round_share_one_item_per_message(
        redis_server: RedisServer) -> None:
    """``convert`` (the service's reply) runs once per message for the consumers of a topic
    read together, and each gets the same object; acks still go per group."""
    broker = RedisStreamsBroker(redis_server.url)
    made: list[str] = []

    def convert(m: str) -> tuple[str]:
        made.append(m)
        return (m,)

    try:
        subs = [broker.subscribe("t", group=f"g{i}", convert=convert) for i in range(3)]
        for s in subs:
            await s.live()
        await asyncio.sleep(0.1)  # all idle, waiting on the doorbell
        await broker.publish("t", "a")
        got = [await take(s, 1) for s in subs]
        assert got[0] == [("a",)] and all(g[0] is got[0][0] for g in got)
        assert made == ["a"]
        await broker.publish("t", "b")
        assert [await take(s, 1) for s in subs] == [[("b",)]] * 3  # "a" acked now
        await asyncio.sleep(0.05)
        assert [pending(redis_server, "t", f"g{i}") for i in range(3)] == [1, 1, 1]
    finally:
        await broker.aclose()
