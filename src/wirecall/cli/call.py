"""``wirecall call URL Service.Method [PARAMS]``: call a method and print its JSON result."""

from __future__ import annotations

import argparse

from wirecall.client import connect
from wirecall.errors import RpcError

from .common import Subparsers, client_options, json_out, metadata, params, print_rpc_error

__all__ = ["add_parser", "call"]


def add_parser(sub: Subparsers) -> None:
    c = sub.add_parser("call", help="call a method and print its JSON result")
    c.add_argument("url")
    c.add_argument("method", help="Service.Method")
    c.add_argument("params", nargs="?", help="JSON: an array (positional), an object (named, "
                   "or the fields of a single struct argument) or a single value")
    c.add_argument("--metadata", "-m", action="append", default=[], metavar="K=V")
    client_options(c)
    c.set_defaults(handler=call)


async def call(args: argparse.Namespace) -> int:
    try:
        client = await connect(args.url, timeout=args.connect_timeout)
    except RpcError as exc:
        return print_rpc_error(exc)
    try:
        result = await client.invoke(
            args.method, params(args.params), timeout=args.timeout,
            metadata=metadata(args.metadata),
        )
    except RpcError as exc:
        return print_rpc_error(exc)
    finally:
        await client.close()
    print(json_out(result))
    return 0
