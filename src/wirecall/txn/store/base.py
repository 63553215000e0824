"""The store interface: run one :mod:`.sql` operation in one durable local transaction."""

from __future__ import annotations

import abc
import asyncio
from typing import Any

from .sql import Op

__all__ = ["DEFAULT_URL", "Store", "settle"]

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


def settle(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """Resolve ``fut`` with a result or an exception (called on its loop)."""
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)
