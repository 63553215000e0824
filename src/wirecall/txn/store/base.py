"""The store interface: run one :mod:`.sql` operation in one durable local transaction."""

from __future__ import annotations

import abc
from typing import Any
from urllib.parse import urlsplit

from .sql import Op

__all__ = ["DEFAULT_URL", "Store", "open_store"]

DEFAULT_URL = "sqlite:///wirecall-txn.db"


class Store(abc.ABC):
    """An async facade over a database; every :meth:`run` is one committed transaction."""

    url: str

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create the tables if they are missing."""

    @abc.abstractmethod
    async def run(self, op: Op) -> Any:
        """Run ``op`` in its own transaction and return its result once it is durable."""

    @abc.abstractmethod
    async def close(self) -> None: ...


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
