"""``wirecall txn serve|list|show|retry|abort``: the distributed transaction coordinator.

    wirecall txn serve             # SQLite ./wirecall-txn.db, tcp://127.0.0.1:36789
    wirecall txn serve --store postgresql://u@db/txn --listen grpc://0.0.0.0:36790 --name c1
    wirecall txn list [--status aborting] [--url tcp://127.0.0.1:36789]
    wirecall txn show GID | retry GID | abort GID
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import Subparsers

__all__ = ["add_parser"]

DEFAULT_URL = "tcp://127.0.0.1:36789"


def add_parser(sub: Subparsers) -> None:
    group = sub.add_parser("txn", help="distributed transaction coordinator (docs/transactions.md)")
    actions = group.add_subparsers(dest="action", required=True)
    s = actions.add_parser("serve", help="run a coordinator")
    s.add_argument("--store", default=None,
                   help="sqlite:///path.db (default sqlite:///wirecall-txn.db) or postgresql://...")
    s.add_argument("--listen", action="append", metavar="URL",
                   help=f"address to listen on (repeatable; default {DEFAULT_URL})")
    s.add_argument("--name", default=None,
                   help="this coordinator's name in leases (default host:pid); a restarted "
                        "coordinator with the same name takes its transactions back at once")
    s.add_argument("--lease", type=float, default=15.0, help="lease on a transaction, seconds")
    s.add_argument("--poll", type=float, default=1.0, help="due-transaction poll interval, s")
    s.set_defaults(handler=serve)
    for name, help_ in (("list", "list transactions"), ("show", "a transaction's branches and "
                        "history"), ("retry", "make a transaction due now"),
                        ("abort", "abort a transaction")):
        p = actions.add_parser(name, help=help_)
        if name == "list":
            p.add_argument("--status", default="", help="only this status")
            p.add_argument("--limit", type=int, default=100)
        else:
            p.add_argument("gid")
        p.add_argument("--url", default=DEFAULT_URL, help="the coordinator's address")
        p.set_defaults(handler=operate)


async def serve(args: argparse.Namespace) -> int:
    from wirecall.txn import DEFAULT_LISTEN
    from wirecall.txn import serve as start

    server, coordinator, urls = await start(
        args.store, tuple(args.listen or [DEFAULT_LISTEN]), name=args.name, lease=args.lease,
        poll_interval=args.poll)
    print(f"store {coordinator.store.url}", flush=True)
    for u in urls:
        print(f"listening on {u}", flush=True)
    try:
        await server.serve_forever(handle_signals=True)
    finally:
        await coordinator.close()
    print("stopped", flush=True)
    return 0


def _print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'gid':34} {'mode':5} {'status':10} reason")
    for g in rows:
        print(f"{g['gid']:34} {g['mode']:5} {g['status']:10} {g['reason']}")


async def operate(args: argparse.Namespace) -> int:
    from wirecall.txn.client import TxnClient

    txn = await TxnClient.connect(args.url)
    try:
        if args.action == "list":
            _print_table(await txn.call("List", status=args.status, limit=args.limit))
        elif args.action == "show":
            print(json.dumps(await txn.call("Query", gid=args.gid), indent=2, default=str))
        elif args.action == "retry":
            print(json.dumps(await txn.call("Retry", gid=args.gid)))
        else:
            print(json.dumps(await txn.call("Abort", gid=args.gid)))
    finally:
        await txn.close()
    sys.stdout.flush()
    return 0
