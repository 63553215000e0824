"""Registry clients for etcd v3 and ZooKeeper, behind one small async API.

::

    from wirecall.cluster.registry import open_registry

    reg = open_registry("etcd://127.0.0.1:2379")      # or "zk://127.0.0.1:2181"
    lease = await reg.grant_lease(10.0)               # etcd lease / ZooKeeper session
    ok = await reg.create("idgen/workers/7", b"me", lease=lease)   # atomic create-if-absent
    await reg.put("svc/calc/a", b"...", lease=lease)  # removed when the lease ends
    await reg.get("svc/calc/a")                       # -> bytes | None
    await reg.get_prefix("svc/calc/")                 # -> {key: value}
    await reg.delete("svc/calc/a")
    async for batch in reg.watch_prefix("svc/calc/"): # -> list[WatchEvent]
        ...
    await lease.revoke(); await reg.close()

``open_registry(url) -> Registry`` (no I/O until first use; the URL's path is ignored here,
targets use it for the service name). Extras: ``pip install 'wirecall[etcd]'`` (aetcd: the
generated stubs of etcd's gRPC API; calls go through grpcio's asyncio channel) and
``pip install 'wirecall[zookeeper]'`` (kazoo; its threads are kept off the event loop).

**Leases** (``grant_lease(ttl) -> Lease``): ``.id``, ``.ttl`` (seconds; etcd rounds up to a
whole second), ``.expires_at`` (``time.monotonic()`` of the last successful renewal + ttl:
the latest moment the registry may consider the lease expired; stop relying on the lease
before it), ``.alive``, ``keepalive_once()`` (renew now; raises ``LeaseLost`` when the
registry no longer knows it), ``revoke()``, ``.lost`` (an ``asyncio.Event``) and
``on_lost(callback)``. A background task renews every ``ttl / 3`` (etcd LeaseKeepAlive;
ZooKeeper: a round trip on the session, kazoo pings on its own); when renewals fail until
``expires_at`` passes, or the registry says the lease is gone, the lease is marked lost.
etcd: a lease. ZooKeeper: a session of its own whose timeout is the ttl (the server must
allow it: ``minSessionTimeout``/``maxSessionTimeout``), keys written with it are ephemeral.

**Keys** are ``/``-separated strings (ZooKeeper: ``a/b`` is the znode ``/a/b``; parents are
created as persistent nodes). ``create`` is atomic: an etcd transaction on
``create_revision == 0``, a ZooKeeper ``create``.

**Watches** (``watch_prefix(prefix) -> AsyncIterator[list[WatchEvent]]``): the first batch
is a ``reset`` event followed by ``put`` events for the current contents; then batches of
``put``/``delete``. A registry outage does not end the iterator: it retries with backoff,
reports each failure through ``on_error`` (default: a warning in the log), and resumes
exactly where it was (etcd: from the next revision; ZooKeeper: by re-reading and diffing),
or with a new ``reset`` batch when etcd has compacted the history.

Errors: ``RegistryUnavailable`` (unreachable, timed out: 5 s per operation), ``LeaseLost``,
``RegistryError`` (everything else); ``ValueError`` for a bad URL or key.
"""

from __future__ import annotations

from .base import (
    Lease,
    LeaseLost,
    Registry,
    RegistryError,
    RegistryUnavailable,
    WatchEvent,
    parse_registry_url,
)

__all__ = [
    "Lease",
    "LeaseLost",
    "Registry",
    "RegistryError",
    "RegistryUnavailable",
    "WatchEvent",
    "open_registry",
    "parse_registry_url",
]


def open_registry(url: str) -> Registry:
    """A registry client for ``etcd://host:port`` or ``zk://host:port``."""
    scheme, host, port, _ = parse_registry_url(url)
    if scheme == "etcd":
        from .etcd import EtcdRegistry

        return EtcdRegistry(host, port, url=url)
    from .zookeeper import ZkRegistry

    return ZkRegistry(host, port, url=url)
