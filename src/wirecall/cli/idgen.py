"""``wirecall idgen serve ...`` (an ID node) and ``wirecall idgen next URL [-n N]``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from .common import Subparsers

__all__ = ["add_parser", "next_ids", "serve"]


def _tag_spec(text: str) -> tuple[str, int, int]:
    tag, _, rest = text.partition(":")
    start, _, step = rest.partition(":")
    try:
        return tag, int(start or 1), int(step or 1000)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--tag {text!r}: use NAME[:START[:STEP]]") from None


def add_parser(sub: Subparsers) -> None:
    group = sub.add_parser("idgen", help="globally unique IDs: serve a node, fetch IDs")
    actions = group.add_subparsers(dest="action", required=True)
    s = actions.add_parser("serve", help="run an ID node (snowflake or segment mode)")
    s.add_argument("--listen", action="append", metavar="URL",
                   help="address to listen on (repeatable); default tcp://127.0.0.1:7070")
    mode = s.add_mutually_exclusive_group(required=True)
    mode.add_argument("--worker-id", type=int, help="snowflake mode, a static worker id")
    mode.add_argument("--registry", metavar="URL",
                      help="snowflake mode, worker ids leased from etcd://... or zk://...")
    mode.add_argument("--store", metavar="URL",
                      help="segment mode: sqlite:///path.db or postgresql://...")
    s.add_argument("--tag", action="append", type=_tag_spec, default=[],
                   metavar="NAME[:START[:STEP]]", help="segment tag to create if absent")
    s.add_argument("--register", metavar="URL",
                   help="register the listeners in etcd://... or zk://... (clients: "
                        "IdClient.open('etcd://host:port/SERVICE'))")
    s.add_argument("--service", default="idgen", help="the name to register under")
    s.add_argument("--max-step", type=int, default=1_000_000,
                   help="segment mode: the adaptive step grows up to this")
    s.add_argument("--layout", default="twitter",
                   help="twitter | sonyflake | baidu | time=41,worker=10,seq=12,unit=1ms,"
                        "epoch=MS")
    s.add_argument("--prefix", default="/wirecall/idgen/default",
                   help="registry key prefix (one per ID cluster)")
    s.add_argument("--ttl", type=float, default=6.0, help="worker-id lease ttl, seconds")
    s.add_argument("--margin", type=float, help="stop issuing this long before the lease "
                                                "can expire (default ttl/4, >= 0.5 s)")
    s.add_argument("--max-workers", type=int, help="use only worker ids 0..N-1")
    s.add_argument("--acquire-timeout", type=float,
                   help="give up if no worker id is free for this long (default: wait)")
    s.add_argument("--clock-offset-ms", type=int,
                   help="move this node's clock (tests); default $WIRECALL_IDGEN_CLOCK_OFFSET_MS")
    s.add_argument("--max-backward-ms", type=int, default=5,
                   help="wait out a clock step back up to this; refuse beyond")
    s.add_argument("--data-dir", type=Path,
                   help="where the last issued timestamps persist "
                        "(default $XDG_STATE_HOME/wirecall/idgen)")
    s.set_defaults(handler=serve)

    n = actions.add_parser("next", help="fetch IDs from a node")
    n.add_argument("url")
    n.add_argument("-n", type=int, default=1, help="how many (IdGen.Batch when > 1)")
    n.add_argument("--tag", default="", help="business tag (segment mode)")
    n.add_argument("--decode", action="store_true", help="print time, worker and sequence")
    n.add_argument("--timeout", type=float, default=10.0, help="call timeout, seconds")
    n.set_defaults(handler=next_ids)


def _config(args: argparse.Namespace) -> Any:
    from wirecall.idgen.node import CLOCK_OFFSET_ENV, NodeConfig
    from wirecall.idgen.snowflake import Layout

    offset = args.clock_offset_ms
    if offset is None:
        env = os.environ.get(CLOCK_OFFSET_ENV, "0")
        try:
            offset = int(env)
        except ValueError:
            raise ValueError(f"${CLOCK_OFFSET_ENV}={env!r}: not an integer") from None
    return NodeConfig(
        listen=args.listen or ["tcp://127.0.0.1:7070"], worker_id=args.worker_id,
        registry=args.registry, store=args.store, tags=args.tag,
        layout=Layout.parse(args.layout), prefix=args.prefix, ttl=args.ttl, margin=args.margin,
        max_workers=args.max_workers, acquire_timeout=args.acquire_timeout,
        clock_offset_ms=offset, max_backward_ms=args.max_backward_ms, data_dir=args.data_dir,
        register=args.register, service=args.service,
        segment_options={"max_step": args.max_step})


async def serve(args: argparse.Namespace) -> int:
    from wirecall.idgen.node import IdNode

    node = IdNode(_config(args), on_event=lambda line: print(line, flush=True))
    try:
        urls = await node.start()
        for u in urls:
            print(f"listening on {u}", flush=True)
        await node.serve_forever()
    finally:
        await node.close()
    print("stopped", flush=True)
    return 0


async def next_ids(args: argparse.Namespace) -> int:
    from wirecall.client import Client

    if args.n < 1:
        raise ValueError(f"-n must be >= 1, got {args.n}")
    async with Client(args.url, call_timeout=args.timeout) as client:
        if args.n > 1:
            ids = await client.call("IdGen.Batch", args.tag, args.n)
        else:
            ids = [await client.call("IdGen.Next", args.tag)]
        for i in ids:
            if args.decode:
                d = await client.call("IdGen.Decode", i)
                print(f"{i} time_ms={d['time_ms']} worker={d['worker']} "
                      f"sequence={d['sequence']}")
            else:
                print(i)
    return 0
