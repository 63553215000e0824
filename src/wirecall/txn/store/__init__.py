"""Where the coordinator keeps its transactions: :func:`open_store` by URL.

``sqlite:///path/to/file.db`` (the default; stdlib ``sqlite3``, WAL, synchronous=FULL) or
``postgresql://user@host:port/db`` (psycopg 3, the ``txn-postgres`` extra): several
coordinators may share one PostgreSQL database and claim due transactions by lease.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .base import DEFAULT_URL, Store

__all__ = ["DEFAULT_URL", "Store", "open_store"]


def open_store(url: str | None = None, **options: Any) -> Store:
    """A :class:`Store` for ``url`` (not yet opened: ``await store.open()``)."""
    url = url or DEFAULT_URL
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from .sqlite import SqliteStore

        return SqliteStore(url, **options)
    if scheme in ("postgres", "postgresql"):
        from .postgres import PostgresStore

        return PostgresStore(url, **options)
    raise ValueError(f"unknown store URL scheme {scheme!r} in {url!r} "
                     "(sqlite:///path or postgresql://...)")
