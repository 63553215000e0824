"""Brokers chosen by URL: ``memory://``, ``redis://host:port/db`` (Pub/Sub),
``redis+streams://host:port/db`` (Streams). Query parameters are broker options
(``?limit=1000&overflow=close``, Streams: ``&group=g&maxlen=100000&claim_ms=30000``);
an unknown one is an error naming it."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..errors import InvalidArgument
from .broker import Broker

__all__ = ["SCHEMES", "open_broker"]

SCHEMES = ("memory", "redis", "rediss", "redis+streams", "rediss+streams")


def open_broker(url: str, **options: Any) -> Broker:
    """A broker for ``url``; keyword options override the URL's query parameters."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update(options)
    if scheme == "memory":
        from .memory import MemoryBroker

        return MemoryBroker(**_ints(query, ("limit",)))
    if scheme in ("redis", "rediss"):
        from .redis_pubsub import RedisPubSubBroker

        return RedisPubSubBroker(parts._replace(query="").geturl(),
                                 **_ints(query, ("limit", "max_connections")))
    if scheme in ("redis+streams", "rediss+streams"):
        from .redis_streams import RedisStreamsBroker

        base = parts._replace(scheme=scheme.split("+")[0], query="").geturl()
        return RedisStreamsBroker(base, **_ints(
            query, ("limit", "maxlen", "claim_ms", "batch", "max_age_ms", "max_connections",
                    "block_ms")))
    raise InvalidArgument(message=f"broker URL {url!r}: scheme must be one of "
                          f"{', '.join(s + '://' for s in SCHEMES)}")


def _ints(query: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    from .options import positive_int

    out = dict(query)
    for n in names:
        if n in out and isinstance(out[n], str):
            out[n] = positive_int(n, out[n])
    if isinstance(out.get("retry_max"), str):
        try:
            out["retry_max"] = float(out["retry_max"])
        except ValueError:
            raise InvalidArgument(message=f"retry_max: {out['retry_max']!r} is not a number "
                                  "of seconds") from None
    return out
