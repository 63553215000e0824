"""``wirecall describe URL [Service.Method]``: a method's full signature with the fields of its
argument and result types (from the server's ``rpc.describe`` and OpenRPC ``rpc.discover``;
on grpc:// from ``--proto`` or reflection for ``.proto`` services)."""

from __future__ import annotations

import argparse
from typing import Any

from wirecall.client import Client

from . import protojson
from .common import CommandError, Subparsers, add_command, client_options, json_out, with_client

__all__ = ["add_parser", "describe", "render_method", "schema_type"]

EXAMPLES = (
    "wirecall describe tcp://127.0.0.1:1234                 # every method, with its types",
    "wirecall describe tcp://127.0.0.1:1234 Calculator.Add",
    "wirecall describe grpc://127.0.0.1:50051 helloworld.Greeter.SayHello   # via reflection",
    "wirecall describe grpc://127.0.0.1:50051 helloworld.Greeter.SayHello --proto hello.proto",
)


def add_parser(sub: Subparsers) -> None:
    d = add_command(sub, "describe", "a method's signature with the fields of its types",
                    EXAMPLES, description=__doc__)
    d.add_argument("url", help="the server's address")
    d.add_argument("method", nargs="?", default=None,
                   help="Service.Method (all methods when left out)")
    d.add_argument("--proto", default=None, metavar="FILE",
                   help="a .proto file describing the method (else gRPC reflection is asked)")
    d.add_argument("--json", action="store_true", help="print the OpenRPC entries as JSON")
    client_options(d)
    d.set_defaults(handler=describe)


async def describe(args: argparse.Namespace) -> int:
    async def body(client: Client) -> int:
        if args.method is not None:
            pm = await protojson.resolve(client, client.url.scheme, args.method,
                                         args.proto)
            if pm is not None:
                print(_render_proto(pm))
                return 0
        print(await _from_openrpc(client, args))
        return 0

    return await with_client(args, body)


async def _from_openrpc(client: Client, args: argparse.Namespace) -> str:
    desc = await client.call("rpc.describe", timeout=args.timeout or 10)
    doc = await client.call("rpc.discover", timeout=args.timeout or 10)
    modes = {m["name"]: m["mode"] for ms in desc.values() for m in ms}
    methods = [m for m in doc.get("methods", []) if not m["name"].startswith("rpc.")]
    want = args.method.replace("/", ".") if args.method else None
    if want is not None:
        methods = [m for m in methods if m["name"] == want]
        if not methods:
            raise CommandError(f"the server has no method {want!r} (try: wirecall list URL)")
    schemas = doc.get("components", {}).get("schemas", {})
    if args.json:
        return json_out({"methods": methods, "schemas": schemas})
    return "\n\n".join(render_method(m, modes.get(m["name"], "unary"), schemas)
                       for m in methods)


def schema_type(s: dict[str, Any]) -> str:
    """A JSON schema as a short type name (``Args``, ``list[int]``, ``int | null``)."""
    if "$ref" in s:
        return str(s["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in s:
        return " | ".join(schema_type(x) for x in s["anyOf"])
    t = s.get("type")
    if t == "array":
        return f"list[{schema_type(s.get('items', {}))}]"
    if t == "object" and "additionalProperties" in s and "properties" not in s:
        return f"dict[str, {schema_type(s['additionalProperties'] or {})}]"
    names = {"integer": "int", "number": "float", "string": "str", "boolean": "bool",
             "null": "None", "object": "object"}
    return names.get(str(t), str(t) if t else "any")


def _refs(s: Any) -> list[str]:
    if isinstance(s, dict):
        out = [str(s["$ref"]).rsplit("/", 1)[-1]] if "$ref" in s else []
        for v in s.values():
            out += _refs(v)
        return out
    if isinstance(s, list):
        return [r for v in s for r in _refs(v)]
    return []


def render_method(m: dict[str, Any], mode: str, schemas: dict[str, Any]) -> str:
    """``Service.Method(a: T, ...) -> R  [mode]`` then each named type's fields."""
    ps = ", ".join(f"{p['name']}: {schema_type(p.get('schema', {}))}"
                   + ("" if p.get("required") else " = ...") for p in m.get("params", []))
    result = schema_type(m.get("result", {}).get("schema", {}))
    lines = [f"{m['name']}({ps}) -> {result}" + ("" if mode == "unary" else f"  [{mode}]")]
    if m.get("summary"):
        lines.append(f"  {m['summary']}")
    todo = _refs(m.get("params", [])) + _refs(m.get("result", {}))
    seen: set[str] = set()
    while todo:
        name = todo.pop(0)
        if name in seen or name not in schemas:
            continue
        seen.add(name)
        sch = schemas[name]
        req = set(sch.get("required", []))
        lines.append(f"  {name}:")
        for fname, fs in sch.get("properties", {}).items():
            opt = "" if fname in req else " (optional)"
            lines.append(f"    {fname}: {schema_type(fs)}{opt}")
            todo += _refs(fs)
    return "\n".join(lines)


def _render_proto(pm: protojson.ProtoMethod) -> str:
    req, res = pm.request.DESCRIPTOR, pm.response.DESCRIPTOR
    cs = "stream " if pm.mode in ("client_stream", "bidi_stream") else ""
    ss = "stream " if pm.mode in ("server_stream", "bidi_stream") else ""
    lines = [f"rpc {pm.descriptor.name}({cs}{req.full_name}) returns ({ss}{res.full_name})"
             f"  [{pm.mode}]  ({pm.name})"]
    for d in (req, res) if req is not res else (req,):
        lines.append(f"  message {d.full_name} {{")
        lines += protojson.describe_message(d)
        lines.append("  }")
    return "\n".join(lines)
