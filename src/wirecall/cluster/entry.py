"""A registration entry: what a server publishes about itself and a client reads back.

Stored as JSON under ``wirecall/services/<service>/<id>`` (etcd key / ZooKeeper znode)::

    {"id": "calc-1", "addrs": {"tcp": "tcp://10.0.0.5:9000", "grpc": "grpc://10.0.0.5:9001"},
     "weight": 100, "zone": "eu-1a", "version": "1.4.0", "metadata": {"canary": "false"}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

__all__ = ["SERVICES_PREFIX", "Entry", "decode_entry", "encode_entry", "service_prefix"]

SERVICES_PREFIX = "wirecall/services/"


class Entry(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    addrs: dict[str, str]
    weight: int = 100
    zone: str = ""
    version: str = ""
    metadata: dict[str, str] = msgspec.field(default_factory=dict)

    def addr(self, wire: str | None) -> str | None:
        """The address for ``wire`` (a scheme), or the first one when ``wire`` is None."""
        if wire is None:
            return next(iter(self.addrs.values()), None)
        return self.addrs.get(wire)


def service_prefix(service: str) -> str:
    service = service.strip("/")
    if not service or any(c in service for c in " \n\t"):
        raise ValueError(f"bad service name {service!r}")
    return f"{SERVICES_PREFIX}{service}/"


def encode_entry(entry: Entry) -> bytes:
    return msgspec.json.encode(entry)


def decode_entry(data: bytes) -> Entry:
    return msgspec.json.decode(data, type=Entry)


def make_entry(
    id: str,
    addrs: Mapping[str, str],
    *,
    weight: int = 100,
    zone: str = "",
    version: str = "",
    metadata: Mapping[str, Any] | None = None,
) -> Entry:
    if not addrs:
        raise ValueError("a registration entry needs at least one address")
    if weight < 0:
        raise ValueError(f"weight must be >= 0, got {weight}")
    return Entry(id=id, addrs=dict(addrs), weight=weight, zone=zone, version=version,
                 metadata={k: str(v) for k, v in (metadata or {}).items()})
