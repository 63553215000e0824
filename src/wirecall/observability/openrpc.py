"""OpenRPC (https://spec.open-rpc.org) documents from the registry's type hints.

``rpc.discover`` (registered on the server by :func:`register_discover`, reachable on every
transport) answers :func:`document`: one OpenRPC method per registered method (``rpc.*``
internals excluded), its parameters and result as JSON Schemas made by
``msgspec.json.schema_components`` from the handler's annotations (msgspec Structs,
dataclasses, TypedDicts, enums, containers...), shared types under ``components.schemas``.
An unannotated or un-schema-able type is ``{}`` (any)."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import msgspec

from ..version import __version__

if TYPE_CHECKING:
    from ..server import Server
    from ..service import MethodSpec, ServiceRegistry

__all__ = ["OPENRPC_VERSION", "document", "register_discover"]

OPENRPC_VERSION = "1.3.2"
_REF = "#/components/schemas/{name}"


def _schemable(tp: Any) -> bool:
    if tp is inspect.Parameter.empty or tp is Any or tp is object:
        return False
    try:
        msgspec.json.schema(tp)
    except (TypeError, ValueError):
        return False
    return True


def document(
    registry: ServiceRegistry,
    *,
    title: str = "wirecall",
    version: str | None = None,
    servers: list[str] | None = None,
) -> dict[str, Any]:
    """The OpenRPC document describing every method in ``registry``."""
    if version is None:
        version = __version__
    specs = [s for name, s in sorted(registry.methods.items()) if not name.startswith("rpc.")]
    types: list[Any] = []
    index: dict[int, int] = {}

    def slot(tp: Any) -> int | None:
        if not _schemable(tp):
            return None
        key = id(tp)
        if key not in index:
            index[key] = len(types)
            types.append(tp)
        return index[key]

    plan: list[tuple[MethodSpec, list[int | None], int | None]] = []
    for spec in specs:
        plan.append((spec, [slot(p.type) for p in spec.params], slot(spec.result_type)))
    schemas, components = msgspec.json.schema_components(types, ref_template=_REF)

    def schema(i: int | None) -> dict[str, Any]:
        return dict(schemas[i]) if i is not None else {}

    methods = []
    for spec, pslots, rslot in plan:
        m: dict[str, Any] = {
            "name": spec.name,
            "params": [
                {"name": p.name, "required": p.required, "schema": schema(i)}
                for p, i in zip(spec.params, pslots, strict=True)
            ],
            "result": {"name": "result", "schema": schema(rslot)},
            "paramStructure": "either",
        }
        if spec.doc:
            summary, _, rest = spec.doc.partition("\n")
            m["summary"] = summary.strip()
            if rest.strip():
                m["description"] = spec.doc
        if spec.mode != "unary":
            m["x-wirecall-mode"] = spec.mode
        methods.append(m)
    doc: dict[str, Any] = {
        "openrpc": OPENRPC_VERSION,
        "info": {"title": title, "version": version},
        "methods": methods,
        "components": {"schemas": components},
    }
    if servers:
        doc["servers"] = [{"name": u, "url": u} for u in servers]
    return doc


def register_discover(server: Server) -> None:
    """Register ``rpc.discover`` on ``server`` (once), answering :func:`document`."""
    if "rpc.discover" in server.registry.methods:
        return
    cache: list[Any] = [None, None]

    def discover() -> dict[str, Any]:
        """The OpenRPC document of this server."""
        key = tuple(server.registry.methods)
        if cache[0] != key:
            cache[0] = key
            cache[1] = document(server.registry, servers=list(server.urls) or None)
        result: dict[str, Any] = cache[1]
        return result

    from ..service import method

    method(inline=True)(discover)  # cheap once cached: run on the loop, not in a thread
    server.register_function(discover, name="rpc.discover")
