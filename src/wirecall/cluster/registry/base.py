"""What every registry backend offers: leases, keys, atomic create, prefix reads and watches.

The contract is written once here and implemented by ``etcd.py`` and ``zookeeper.py``; the
package docstring (``wirecall.cluster.registry``) explains it for users.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

__all__ = [
    "Lease",
    "LeaseLost",
    "Registry",
    "RegistryError",
    "RegistryUnavailable",
    "WatchEvent",
    "missing_extra",
    "parse_registry_url",
]

log = logging.getLogger("wirecall.cluster.registry")


class RegistryError(Exception):
    """A registry operation failed (bad key, refused by the registry...)."""


class RegistryUnavailable(RegistryError, ConnectionError):
    """The registry could not be reached in time."""


class LeaseLost(RegistryError):
    """The lease expired or was revoked: keys written with it are gone (or about to be)."""


def missing_extra(extra: str, module: str) -> ImportError:
    return ImportError(
        f"the {extra} registry needs {module}: pip install 'wirecall[{extra}]'"
    )


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change under a watched prefix.

    ``kind`` is ``"put"`` (``value`` is the new value), ``"delete"`` (``value`` is None), or
    ``"reset"``: the watch could not resume where it was (first batch, registry restarted,
    etcd history compacted, new ZooKeeper session); forget what you knew, the ``put`` events
    that follow in the same batch are the complete current contents.
    """

    kind: Literal["put", "delete", "reset"]
    key: str
    value: bytes | None = None


class Lease(abc.ABC):
    """A liveness token: keys written with it vanish when it is revoked or expires.

    etcd: a lease kept alive by a background task (every ``ttl / 3``). ZooKeeper: a session,
    whose negotiated timeout is ``ttl``; keys written with it are ephemeral nodes.
    """

    def __init__(self, lease_id: int, ttl: float) -> None:
        self.id = lease_id
        self.ttl = ttl
        self.last_renewed = time.monotonic()
        self.lost = asyncio.Event()
        self._lost_callbacks: list[Callable[[Lease], None]] = []

    @property
    def expires_at(self) -> float:
        """Local ``time.monotonic()`` estimate of the latest moment the registry may consider
        the lease expired: the last successful renewal + ``ttl``."""
        return self.last_renewed + self.ttl

    @property
    def alive(self) -> bool:
        return not self.lost.is_set() and time.monotonic() < self.expires_at

    def on_lost(self, callback: Callable[[Lease], None]) -> None:
        """Call ``callback(lease)`` once when the lease is lost (at once if it already is)."""
        if self.lost.is_set():
            callback(self)
        else:
            self._lost_callbacks.append(callback)

    def mark_renewed(self, at: float | None = None) -> None:
        self.last_renewed = time.monotonic() if at is None else at

    def mark_lost(self, why: str, *, expected: bool = False) -> None:
        if self.lost.is_set():
            return
        (log.info if expected else log.warning)("lease %x lost: %s", self.id, why)
        self.lost.set()
        callbacks, self._lost_callbacks = self._lost_callbacks, []
        for cb in callbacks:
            try:
                cb(self)
            except Exception:
                log.exception("lease on_lost callback failed")

    async def _keepalive_loop(self) -> None:
        """Renew every ``ttl / 3`` until lost; while the registry is unreachable, retry more
        often, and give the lease up once it cannot have been renewed within its ttl."""
        while not self.lost.is_set():
            try:
                await self.keepalive_once()
                delay = self.ttl / 3
            except LeaseLost:
                return
            except RegistryError:
                if time.monotonic() >= self.expires_at:
                    self.mark_lost("not renewed within its ttl (registry unreachable)")
                    return
                delay = min(0.5, self.ttl / 10)
            await asyncio.sleep(delay)

    @abc.abstractmethod
    async def keepalive_once(self) -> None:
        """Renew now (raises ``LeaseLost`` if the registry no longer knows the lease)."""

    @abc.abstractmethod
    async def revoke(self) -> None:
        """End the lease now: its keys are deleted by the registry."""


class Registry(abc.ABC):
    """An async key-value registry with leases. Keys are ``/``-separated strings."""

    url: str

    @abc.abstractmethod
    async def grant_lease(self, ttl: float) -> Lease: ...

    @abc.abstractmethod
    async def put(self, key: str, value: bytes, *, lease: Lease | None = None) -> None: ...

    @abc.abstractmethod
    async def create(self, key: str, value: bytes, *, lease: Lease | None = None) -> bool:
        """Create ``key`` only if absent (atomically); True if this call created it."""

    @abc.abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abc.abstractmethod
    async def get_prefix(self, prefix: str) -> dict[str, bytes]: ...

    @abc.abstractmethod
    async def delete(self, key: str) -> None: ...

    @abc.abstractmethod
    def watch_prefix(
        self, prefix: str, *, on_error: Callable[[BaseException], None] | None = None
    ) -> AsyncIterator[list[WatchEvent]]:
        """Batches of changes under ``prefix``; the first batch is a ``reset`` + the current
        contents. Never ends on a registry outage: it retries, calling ``on_error`` (default:
        a warning in the log) each time, and resumes with a ``reset`` batch when it cannot
        resume exactly."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Registry:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def parse_registry_url(url: str) -> tuple[str, str, int, str]:
    """``etcd://host:port/path`` -> ``("etcd", host, port, "/path")`` (path may be "")."""
    parts = urlsplit(url)
    scheme = parts.scheme
    defaults = {"etcd": 2379, "zk": 2181}
    if scheme not in defaults:
        raise ValueError(f"registry URL {url!r}: scheme must be etcd:// or zk://")
    if not parts.hostname:
        raise ValueError(f"registry URL {url!r}: no host")
    try:
        port = parts.port or defaults[scheme]
    except ValueError as exc:
        raise ValueError(f"registry URL {url!r}: bad port") from exc
    if parts.query or parts.fragment:
        raise ValueError(f"registry URL {url!r}: unknown options {parts.query or parts.fragment!r}")
    return scheme, parts.hostname, port, parts.path.rstrip("/")


def warn_watch_error(prefix: str) -> Callable[[BaseException], None]:
    def warn(exc: BaseException) -> None:
        log.warning("registry watch on %r interrupted (%s); keeping the last known state, "
                    "retrying", prefix, exc or type(exc).__name__)
    return warn
