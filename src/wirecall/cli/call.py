"""``wirecall call URL Service.Method [PARAMS]``: call a method and print its JSON result.

The method's mode decides the shape: a unary call prints one JSON value; a server stream one
JSON line per message; client and bidi streams read JSON lines from stdin (one message each)
and print the reply (client stream) or one line per reply (bidi). On grpc:// a ``.proto``
method's messages are converted from and to JSON (types from ``--proto`` or reflection).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

from wirecall.client import Client
from wirecall.errors import RpcError

from . import protojson
from .common import (
    CommandError,
    Subparsers,
    add_command,
    client_options,
    json_out,
    metadata,
    params,
    with_client,
)

__all__ = ["add_parser", "call", "method_mode"]

EXAMPLES = (
    "wirecall call tcp://127.0.0.1:1234 Calculator.Add '{\"A\": 1, \"B\": 2}'",
    "wirecall call tcp://127.0.0.1:1234 Calculator.Add -d @args.json",
    "echo '{\"A\": 1, \"B\": 2}' | wirecall call ws://127.0.0.1:8080/ws Calculator.Add -d @-",
    "wirecall call tcp://127.0.0.1:1234 Numbers.Range '[5]'      # one JSON line per message",
    "printf '1\\n2\\n3\\n' | wirecall call tcp://127.0.0.1:1234 Numbers.Sum  # client stream",
    "wirecall call grpc://127.0.0.1:50051 helloworld.Greeter/SayHello '{\"name\": \"x\"}'",
    "wirecall call grpc://127.0.0.1:50051 helloworld.Greeter.SayHello --proto hello.proto "
    "-d '{\"name\": \"x\"}'",
)


def add_parser(sub: Subparsers) -> None:
    c = add_command(sub, "call", "call a method and print its JSON result", EXAMPLES,
                    description=__doc__)
    c.add_argument("url", help="the server's address (tcp://, unix://, http://, ws://, grpc://, "
                   "grpcs://, gob://, jsonrpc://, any://)")
    c.add_argument("method", help="Service.Method (gRPC's pkg.Service/Method is accepted)")
    c.add_argument("params", nargs="?", default=None,
                   help="JSON: an array (positional), an object (named, or the fields of a "
                        "single struct argument) or a single value; @FILE reads a file, @- "
                        "stdin")
    c.add_argument("-d", "--data", default=None, metavar="JSON|@FILE|@-",
                   help="the params, as PARAMS (use one or the other)")
    c.add_argument("--proto", default=None, metavar="FILE",
                   help="a .proto file describing the method (else gRPC reflection is asked)")
    c.add_argument("--metadata", "-m", action="append", default=[], metavar="K=V",
                   help="call metadata (repeatable)")
    client_options(c)
    c.set_defaults(handler=call)


async def method_mode(client: Client, method: str) -> str:
    """The method's mode from the server's ``rpc.describe`` ("unary" when it cannot say)."""
    try:
        desc = await client.call("rpc.describe", timeout=10)
    except RpcError:
        return "unary"
    for methods in desc.values() if isinstance(desc, dict) else ():
        for m in methods:
            if isinstance(m, dict) and m.get("name") == method:
                return str(m.get("mode") or "unary")
    return "unary"


async def call(args: argparse.Namespace) -> int:
    if args.params is not None and args.data is not None:
        raise CommandError("give the params once: as PARAMS or with -d, not both")
    raw = args.data if args.data is not None else args.params
    md = metadata(args.metadata)

    async def body(client: Client) -> int:
        method = args.method
        pm = await protojson.resolve(client, client.url.scheme, method, args.proto)
        if pm is not None:
            method = pm.name
            mode = pm.mode
        else:
            method = method.replace("/", ".")
            mode = await method_mode(client, method)
        streams_in = mode in ("client_stream", "bidi_stream")
        call_params = None if streams_in else params(raw)
        if streams_in and raw is not None:
            raise CommandError(f"{method} is a {mode.replace('_', ' ')}: it reads its messages "
                               "as JSON lines from stdin, not from PARAMS/-d")
        return await _run(client, method, mode, call_params, pm, md, args.timeout)

    return await with_client(args, body)


async def _run(client: Client, method: str, mode: str, call_params: Any,
               pm: protojson.ProtoMethod | None, md: dict[str, str],
               timeout: float | None) -> int:
    out = protojson.to_json if pm is not None else json_out
    rtype = pm.response if pm is not None else Any
    if mode == "unary":
        p = [protojson.from_json(pm, call_params)] if pm is not None else call_params
        print(out(await client.invoke(method, p, timeout=timeout, metadata=md,
                                      result_type=rtype)))
        return 0
    if mode == "server_stream":
        p = [protojson.from_json(pm, call_params)] if pm is not None else call_params
        async for item in client.stream(method, p, timeout=timeout, metadata=md,
                                        result_type=rtype):
            print(out(item), flush=True)
        return 0
    st = client.stream(method, _stdin_messages(pm), timeout=timeout, metadata=md,
                       result_type=rtype)
    if mode == "client_stream":
        print(out(await st.result()))
        return 0
    async for item in st:
        print(out(item), flush=True)
    return 0


async def _stdin_messages(pm: protojson.ProtoMethod | None) -> AsyncIterator[Any]:
    """One message per non-empty stdin line (JSON), read without blocking the loop."""
    loop = asyncio.get_running_loop()
    n = 0
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        n += 1
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CommandError(f"stdin line {n} is not valid JSON: {exc}") from None
        yield protojson.from_json(pm, value) if pm is not None else value
