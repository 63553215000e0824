"""A server registering itself in etcd or ZooKeeper, and leaving first on shutdown.

::

    server = wirecall.Server(); server.register(Calc())
    await server.start("tcp://0.0.0.0:9000", "grpc://0.0.0.0:9001")
    reg = await server.register_in("etcd://10.0.0.2:2379", "calc", zone="eu-1a", weight=100)
    ...
    await server.close()    # 1. deregister  2. wait for clients to see it  3. drain

The entry (``wirecall.cluster.entry.Entry``, JSON) lives at ``wirecall/services/<service>/<id>``
under a lease (etcd: lease with keepalive every ttl/3; ZooKeeper: an ephemeral node of the
lease's session), so a server that dies without deregistering disappears after ``ttl``. When
the lease is lost (registry unreachable longer than ttl, session expired) the registration
grants a new lease and writes the entry again, retrying with backoff until it succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import uuid
from collections.abc import Mapping
from typing import Any

from ..transport.base import parse_url
from .entry import Entry, encode_entry, make_entry, service_prefix
from .registry import Lease, Registry, RegistryError, open_registry

__all__ = ["Registration", "advertised_addrs", "register"]

log = logging.getLogger("wirecall.cluster")

WILDCARDS = {"0.0.0.0", "::", ""}


def advertised_addrs(urls: list[str], host: str | None = None) -> dict[str, str]:
    """``{scheme: url}`` from listener URLs; a wildcard host becomes ``host`` (default: this
    machine's name)."""
    out: dict[str, str] = {}
    for text in urls:
        url = parse_url(text)
        if url.scheme in out or url.scheme == "any":
            continue
        if url.scheme == "unix":
            out[url.scheme] = text
            continue
        h = url.host
        if h in WILDCARDS:
            h = host or socket.gethostname()
        h = f"[{h}]" if ":" in h else h
        out[url.scheme] = f"{url.scheme}://{h}:{url.port}{url.path}"
    return out


class Registration:
    def __init__(
        self,
        registry: Registry,
        service: str,
        entry: Entry,
        *,
        ttl: float = 10.0,
        propagation_wait: float = 1.0,
    ) -> None:
        self.registry = registry
        self.service = service
        self.entry = entry
        self.key = service_prefix(service) + entry.id
        self.ttl = ttl
        self.propagation_wait = propagation_wait
        self.lease: Lease | None = None
        self.registrations = 0
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    async def start(self) -> Registration:
        await self._register()
        self._task = asyncio.ensure_future(self._supervise())
        return self

    async def _register(self) -> None:
        lease = await self.registry.grant_lease(self.ttl)
        await self.registry.put(self.key, encode_entry(self.entry), lease=lease)
        self.lease = lease
        self.registrations += 1
        log.info("registered %s at %s (lease %x, ttl %.0fs)", self.entry.id,
                 self.registry.url, lease.id, lease.ttl)

    async def _supervise(self) -> None:
        backoff = 0.2
        while not self._stopped:
            lease = self.lease
            if lease is not None:
                await lease.lost.wait()
                if self._stopped:
                    return
                log.warning("registration of %s lost its lease; registering again",
                            self.entry.id)
            try:
                await self._register()
                backoff = 0.2
            except (RegistryError, OSError) as exc:
                self.lease = None
                log.warning("registering %s failed (%s); retrying in %.1fs", self.entry.id,
                            exc, backoff)
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 5.0)

    async def update(self, **changes: Any) -> None:
        """Publish a changed entry (weight, zone, version, metadata) under the same lease."""
        unknown = set(changes) - (set(self.entry.__struct_fields__) - {"id"})
        if unknown:
            raise ValueError(f"cannot update {', '.join(sorted(unknown))} of an entry")
        self.entry = Entry(**{**{f: getattr(self.entry, f) for f in self.entry.__struct_fields__},
                              **changes})
        if self.lease is None or self.lease.lost.is_set():
            return  # the supervisor writes the new entry when it registers again
        await self.registry.put(self.key, encode_entry(self.entry), lease=self.lease)

    async def stop(self, wait: bool = True) -> None:
        """Deregister: delete the entry, wait ``propagation_wait`` for clients to see it
        (when ``wait``), revoke the lease, close the registry client."""
        if self._stopped:
            return
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
        try:
            await self.registry.delete(self.key)
        except (RegistryError, OSError) as exc:
            log.warning("deregistering %s failed (%s): it leaves when its lease expires",
                        self.entry.id, exc)
        if wait and self.propagation_wait > 0:
            await asyncio.sleep(self.propagation_wait)
        if self.lease is not None:
            with contextlib.suppress(RegistryError, OSError):
                await self.lease.revoke()
        await self.registry.close()


async def register(
    server: Any,
    registry_url: str,
    service: str,
    *,
    id: str | None = None,
    addrs: Mapping[str, str] | None = None,
    advertise_host: str | None = None,
    ttl: float = 10.0,
    weight: int = 100,
    zone: str = "",
    version: str = "",
    metadata: Mapping[str, Any] | None = None,
    propagation_wait: float = 1.0,
) -> Registration:
    """Register ``server`` (its listeners' URLs, or ``addrs``) under ``service``."""
    found = dict(addrs) if addrs else advertised_addrs(list(server.urls), advertise_host)
    if not found:
        raise ValueError("nothing to register: start a listener first or pass addrs=")
    entry = make_entry(id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
                       found, weight=weight, zone=zone, version=version, metadata=metadata)
    reg = Registration(open_registry(registry_url), service, entry, ttl=ttl,
                       propagation_wait=propagation_wait)
    try:
        await reg.start()
    except BaseException:
        await reg.registry.close()
        raise
    return reg
