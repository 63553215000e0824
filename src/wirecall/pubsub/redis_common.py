"""What both Redis brokers share: the lazy import of ``redis`` (the ``redis`` extra), and the
mapping of Redis failures to statuses (the cause is logged on the server, not sent)."""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

from ..errors import Unavailable

__all__ = ["LOG", "import_redis", "unavailable"]

LOG = logging.getLogger("wirecall.pubsub")


def import_redis() -> ModuleType:
    """``redis.asyncio``, or one line naming the extra to install."""
    try:
        import redis.asyncio as aioredis
    except ImportError:
        raise ImportError(
            "the Redis brokers need redis-py: pip install 'wirecall[redis]'") from None
    return aioredis


def redis_errors() -> tuple[type[BaseException], ...]:
    import redis.exceptions as rex

    return (rex.ConnectionError, rex.TimeoutError, OSError)


def unavailable(what: str, exc: BaseException, **extra: Any) -> Unavailable:
    """The error a caller gets when Redis failed (details stay in the server's log)."""
    LOG.warning("%s: %r %s", what, exc, extra or "")
    return Unavailable(message=f"{what}: the Redis broker is unavailable")
