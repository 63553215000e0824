"""``wirecall list URL [--json]``: the services, methods and signatures a server describes
(``rpc.describe``)."""

from __future__ import annotations

import argparse
from typing import Any

from wirecall.client import Client

from .common import Subparsers, add_command, client_options, json_out, with_client

__all__ = ["add_parser", "list_methods", "render"]


def add_parser(sub: Subparsers) -> None:
    ls = add_command(sub, "list", "list services, methods and signatures", (
        "wirecall list tcp://127.0.0.1:1234",
        "wirecall list http://127.0.0.1:8080 --json",
        "wirecall describe tcp://127.0.0.1:1234 Calculator.Add   # with the fields of the types",
    ))
    ls.add_argument("url", help="the server's address")
    ls.add_argument("--json", action="store_true", help="print rpc.describe's answer as JSON")
    client_options(ls)
    ls.set_defaults(handler=list_methods)


async def list_methods(args: argparse.Namespace) -> int:
    async def body(client: Client) -> int:
        desc = await client.call("rpc.describe", timeout=args.timeout)
        text = json_out(desc) if args.json else render(desc)
        if text:
            print(text)
        return 0

    return await with_client(args, body)


def render(desc: dict[str, Any]) -> str:
    """``rpc.describe``'s answer as text: a service per line, its methods indented."""
    lines: list[str] = []
    for svc, methods in desc.items():
        lines.append(svc or "(functions)")
        for m in methods:
            ps = ", ".join(
                f"{p['name']}: {p['type']}" + ("" if p["required"] else " = ...")
                for p in m["params"]
            )
            mode = "" if m["mode"] == "unary" else f"  [{m['mode']}]"
            lines.append(f"  {m['name']}({ps}) -> {m['result']}{mode}")
            if m.get("doc"):
                lines.append(f"      {m['doc'].splitlines()[0]}")
    return "\n".join(lines)
