"""AutoPipeline (the publishers' pipelined connection) against a real redis-server: one write
per loop turn, replies in order, an error reply fails only its command, a lost connection
fails what was in flight and the next command reconnects."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
import redis.exceptions as rex

from support.redis import RedisServer
from wirecall.pubsub.redis_common import AutoPipeline


def counting_pool(url: str, writes: list[int]) -> Any:
    pool = aioredis.ConnectionPool.from_url(url, protocol=2)
    make = pool.make_connection

    def make_connection() -> Any:
        conn = make()
        send = conn.send_packed_command

        async def counted(command: Any, check_health: bool = True) -> None:
            writes.append(len(command))
            await send(command, check_health=check_health)

        conn.send_packed_command = counted
        return conn

    pool.make_connection = make_connection
    return pool


async def test_a_loop_turns_commands_go_in_one_write_and_replies_keep_order(
        redis_server: RedisServer) -> None:
    writes: list[int] = []
    pipe = AutoPipeline(counting_pool(redis_server.url, writes))
    try:
        assert await pipe.execute("PING") == b"PONG"  # connected (its handshake writes too)
        writes.clear()
        replies = await asyncio.gather(*(pipe.execute("INCR", "n") for _ in range(200)))
        assert replies == list(range(1, 201))  # each caller its own reply, in order
        assert len(writes) == 1  # one write carried the 200 commands
        with pytest.raises(rex.ResponseError):  # an error reply fails its command only
            await asyncio.gather(pipe.execute("INCR", "n"), pipe.execute("LPUSH", "n", "x"))
        assert await pipe.execute("GET", "n") == b"201"
    finally:
        await pipe.aclose()


async def test_a_lost_connection_fails_in_flight_commands_and_the_next_reconnects(
        redis_server: RedisServer) -> None:
    pipe = AutoPipeline(aioredis.ConnectionPool.from_url(redis_server.url, protocol=2))
    try:
        assert await pipe.execute("PING") == b"PONG"
        redis_server.kill()
        with pytest.raises((rex.ConnectionError, OSError)):
            await asyncio.wait_for(pipe.execute("PING"), 5)
        redis_server.start()
        assert await asyncio.wait_for(pipe.execute("PING"), 5) == b"PONG"
    finally:
        await pipe.aclose()
