"""``wirecall cluster endpoints TARGET``: a cluster target's endpoints and their state; and the
``--register`` flags ``wirecall serve`` takes (docs/cluster.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from .common import CommandError, Subparsers

__all__ = ["add_parser", "add_register_flags", "endpoints", "register_from_args"]


def add_parser(sub: Subparsers) -> None:
    group = sub.add_parser("cluster", help="cluster targets: endpoints and their state")
    actions = group.add_subparsers(dest="action", required=True)
    e = actions.add_parser("endpoints", help="list a target's endpoints (static://, dns://, "
                           "etcd://host:port/svc, zk://host:port/svc)")
    e.add_argument("target")
    e.add_argument("--probe", type=int, default=0, metavar="N",
                   help="first send N pings through the balancer, to measure each endpoint")
    e.add_argument("--json", action="store_true", help="one JSON object per endpoint")
    e.add_argument("--timeout", type=float, default=5.0, help="discovery timeout, seconds")
    e.set_defaults(handler=endpoints)


def add_register_flags(s: argparse.ArgumentParser) -> None:
    g = s.add_argument_group("cluster registration (docs/cluster.md)")
    g.add_argument("--register", metavar="URL",
                   help="register in etcd://host:port/SERVICE or zk://host:port/SERVICE; on "
                        "SIGTERM deregister first, wait, then drain")
    g.add_argument("--zone", default="", help="the zone published in the entry")
    g.add_argument("--weight", type=int, default=100, help="the weight published")
    g.add_argument("--ttl", type=float, default=10.0, help="lease / session ttl, seconds")
    g.add_argument("--advertise-host", default=None,
                   help="host published for wildcard listeners (default: the hostname)")


async def register_from_args(server: Any, args: argparse.Namespace) -> str | None:
    url = getattr(args, "register", None)
    if not url:
        return None
    from wirecall.cluster.registry import parse_registry_url

    try:
        scheme, host, port, path = parse_registry_url(url)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    service = path.strip("/")
    if not service:
        raise CommandError(f"--register {url}: name the service ({scheme}://host:port/SERVICE)")
    try:
        reg = await server.register_in(f"{scheme}://{host}:{port}", service, zone=args.zone,
                                       weight=args.weight, ttl=args.ttl,
                                       advertise_host=args.advertise_host)
    except ImportError as exc:
        raise CommandError(str(exc)) from None
    return f"{url} as {reg.entry.id}"


async def endpoints(args: argparse.Namespace) -> int:
    from wirecall.cluster.client import ClusterClient

    try:
        client = ClusterClient(args.target)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    try:
        await client.connect(args.timeout)
        for _ in range(args.probe):
            await asyncio.gather(*(ep.client.ping() for ep in client.live),
                                 return_exceptions=True)
        rows = client.endpoints()
    finally:
        await client.close()
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    cols = ("url", "state", "zone", "weight", "version", "pending", "breaker", "calls",
            "failures", "ejections")
    table = [[str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)))
    for t in table:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)))
    return 0
