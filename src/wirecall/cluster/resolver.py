"""Resolvers: where a cluster target's endpoints come from, as a stream of complete sets.

Targets (any client API taking a URL takes one)::

    static://127.0.0.1:9000,127.0.0.1:9001          fixed list, wire tcp://
    static://grpc://10.0.0.1:50051,grpc://10.0.0.2:50051
    dns://calc.internal:9000?wire=grpc&interval=5    A/AAAA records, re-resolved
    etcd://127.0.0.1:2379/calc?wire=tcp              entries registered under a service
    zk://127.0.0.1:2181/calc

Query options on every target: ``wire`` (which address of an entry to use; for ``static`` and
``dns`` the scheme of the addresses; default ``tcp``), ``zone`` (the caller's zone, for
locality), ``balancer``. ``dns`` also takes ``interval`` (seconds). Anything else is an error.

A registry outage never empties the set: the registry's watch keeps the last state and
retries, and the resolver reports ``endpoints_kept`` events (with a warning in the log). An
update that would remove every endpoint is applied only when ``allow_empty`` is set (empty
protection, as Dubbo's ``enable-empty-protection``).
"""

from __future__ import annotations

import abc
import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from .entry import Entry, decode_entry, service_prefix
from .registry import Registry, open_registry, parse_registry_url

__all__ = [
    "CLUSTER_SCHEMES",
    "ClusterTarget",
    "DnsResolver",
    "RegistryResolver",
    "Resolver",
    "StaticResolver",
    "is_cluster_target",
    "make_resolver",
    "parse_target",
]

log = logging.getLogger("wirecall.cluster")

CLUSTER_SCHEMES = ("static", "dns", "etcd", "zk")
_OPTIONS = {"wire", "zone", "balancer", "interval"}


def is_cluster_target(target: str) -> bool:
    return target.partition("://")[0] in CLUSTER_SCHEMES and "://" in target


@dataclass(frozen=True)
class ClusterTarget:
    scheme: str
    body: str  # static: the list; dns: host:port; registry: host:port
    service: str = ""
    wire: str | None = None
    zone: str = ""
    balancer: str | None = None
    options: dict[str, str] = field(default_factory=dict)


def parse_target(target: str) -> ClusterTarget:
    scheme, sep, rest = target.partition("://")
    if not sep or scheme not in CLUSTER_SCHEMES:
        raise ValueError(f"cluster target {target!r}: scheme must be one of "
                         f"{', '.join(s + '://' for s in CLUSTER_SCHEMES)}")
    rest, _, query = rest.partition("?")
    opts = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False)) if query else {}
    unknown = set(opts) - _OPTIONS - ({"interval"} if scheme == "dns" else set())
    if scheme != "dns" and "interval" in opts:
        unknown.add("interval")
    if unknown:
        raise ValueError(f"cluster target {target!r}: unknown option(s) "
                         f"{', '.join(sorted(unknown))}; known: wire, zone, balancer"
                         + (", interval" if scheme == "dns" else ""))
    service = ""
    if scheme in ("etcd", "zk"):
        rest, slash, service = rest.partition("/")
        service = service.strip("/")
        if not slash or not service:
            raise ValueError(f"cluster target {target!r}: name the service "
                             f"({scheme}://host:port/<service>)")
    if not rest:
        raise ValueError(f"cluster target {target!r}: no address")
    return ClusterTarget(scheme, rest, service, opts.get("wire"), opts.get("zone", ""),
                         opts.get("balancer"), opts)


def _static_entries(body: str, wire: str) -> list[Entry]:
    out = []
    for item in body.split(","):
        item = item.strip()
        if not item:
            continue
        url = item if "://" in item else f"{wire}://{item}"
        scheme = url.partition("://")[0]
        out.append(Entry(id=url, addrs={scheme: url}))
    if not out:
        raise ValueError(f"static target lists no address: {body!r}")
    return out


class Resolver(abc.ABC):
    """``updates()`` yields complete endpoint sets, the first as soon as it is known."""

    @abc.abstractmethod
    def updates(self) -> AsyncIterator[list[Entry]]: ...

    async def close(self) -> None:
        return None


class StaticResolver(Resolver):
    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries

    async def updates(self) -> AsyncIterator[list[Entry]]:
        yield list(self.entries)
        await asyncio.Event().wait()  # a fixed list never changes


class DnsResolver(Resolver):
    def __init__(self, host: str, port: int, wire: str, interval: float = 5.0) -> None:
        if interval <= 0:
            raise ValueError(f"dns interval must be > 0, got {interval}")
        self.host, self.port, self.wire, self.interval = host, port, wire, interval

    async def resolve(self) -> list[Entry]:
        infos = await asyncio.get_running_loop().getaddrinfo(
            self.host, self.port, type=socket.SOCK_STREAM)
        addrs = sorted({(info[4][0], info[0]) for info in infos})
        out = []
        for ip, fam in addrs:
            host = f"[{ip}]" if fam == socket.AF_INET6 else ip
            url = f"{self.wire}://{host}:{self.port}"
            out.append(Entry(id=url, addrs={self.wire: url}))
        return out

    async def updates(self) -> AsyncIterator[list[Entry]]:
        last: list[Entry] | None = None
        while True:
            try:
                current = await self.resolve()
            except OSError as exc:
                log.warning("dns %s: %s; keeping the last known endpoints", self.host, exc)
                current = None
            if current is not None and current != last:
                last = current
                yield current
            await asyncio.sleep(self.interval)


class RegistryResolver(Resolver):
    """Entries under ``wirecall/services/<service>/`` of an etcd or ZooKeeper registry."""

    def __init__(self, registry_url: str, service: str,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        # the registry client is opened on the loop that watches (a blocking client builds
        # this in its caller's thread and runs it on its own loop thread); a missing extra
        # fails here, at once
        if parse_registry_url(registry_url)[0] == "etcd":
            from .registry import etcd  # noqa: F401
        else:
            from .registry import zookeeper  # noqa: F401
        self.url = registry_url
        self.registry: Registry | None = None
        self.prefix = service_prefix(service)
        self.on_error = on_error

    async def updates(self) -> AsyncIterator[list[Entry]]:
        known: dict[str, Entry] = {}
        if self.registry is None:
            self.registry = open_registry(self.url)
        async for batch in self.registry.watch_prefix(self.prefix, on_error=self.on_error):
            for ev in batch:
                if ev.kind == "reset":
                    known = {}
                elif ev.kind == "delete":
                    known.pop(ev.key, None)
                elif ev.value is not None:
                    try:
                        known[ev.key] = decode_entry(ev.value)
                    except Exception as exc:
                        log.warning("registry entry %s is not a wirecall entry: %s", ev.key, exc)
            yield list(known.values())

    async def close(self) -> None:
        if self.registry is not None:
            await self.registry.close()


def make_resolver(t: ClusterTarget, on_error: Callable[[BaseException], None] | None = None
                  ) -> Resolver:
    wire = t.wire or "tcp"
    if t.scheme == "static":
        return StaticResolver(_static_entries(t.body, wire))
    if t.scheme == "dns":
        host, _, port = t.body.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"dns target needs host:port, got {t.body!r}")
        try:
            interval = float(t.options.get("interval", "5"))
        except ValueError:
            raise ValueError(f"dns interval must be seconds, got {t.options['interval']!r}"
                             ) from None
        return DnsResolver(host.strip("[]"), int(port), wire, interval)
    return RegistryResolver(f"{t.scheme}://{t.body}", t.service, on_error)
