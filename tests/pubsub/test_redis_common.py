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


async def test_a_loop_turns_commands_go_in_one_write_and_replies_keep_order(
        redis_server: RedisServer) -> None:
    pipe = AutoPipeline(aioredis.ConnectionPool.from_url(redis_server.url, protocol=2))
    try:
        assert await pipe.execute("PING") == b"PONG"  # connected
        link = pipe._link
        assert link is not None
        writes: list[int] = []
        request = link.request

        def counted(data: bytes, futures: Any) -> None:
            writes.append(len(data))
            request(data, futures)

        link.request = counted  # type: ignore[method-assign]
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


def test_the_fallback_reader_and_packer_agree_with_hiredis() -> None:
    """Without hiredis (PyPy) the links parse with _PyReader and pack with _py_pack: the
    same replies as hiredis's reader for every reply type, fed whole or a byte at a time."""
    import hiredis

    from wirecall.pubsub.redis_common import _py_pack, _PyReader, _reply_error

    stream = (b"+OK\r\n:42\r\n:-7\r\n$5\r\nhello\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n"
              b"-NOGROUP No such key 'k'\r\n-LOADING Redis is loading\r\n"
              b"*2\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nm\r\n$3\r\n\xe4\xbd\xa0\r\n:1\r\n"
              b"$6\r\na\r\nb\r\n\r\n")

    def replies(reader: Any, chunks: list[bytes]) -> list[Any]:
        out = []
        for c in chunks:
            reader.feed(c)
            while (r := reader.gets()) is not False:
                out.append(r if not isinstance(r, Exception) else (type(r), str(r)))
        return out

    want = replies(hiredis.Reader(replyError=_reply_error()), [stream])
    assert len(want) == 12
    assert want[8][0] is rex.ResponseError and want[9][0] is rex.BusyLoadingError
    assert replies(_PyReader(_reply_error()), [stream]) == want
    assert replies(_PyReader(_reply_error()), [stream[i:i + 1] for i in range(len(stream))]) \
        == want
    args = ("XADD", "t", "MAXLEN", "~", 100, "*", "m", "你好", b"\x00\r\n")
    assert _py_pack(args) == hiredis.pack_command(args)
