"""Fixtures of the Pub/Sub room: a real redis-server per test (tests/support/redis.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.redis import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as r:
        yield r


@pytest.fixture
def redis_persistent() -> Iterator[RedisServer]:
    """AOF with fsync always: what was acknowledged survives kill -9 and a restart."""
    with RedisServer(persist=True) as r:
        yield r
