"""What several commands share: running a coroutine, loading a ``MODULE:ATTR`` target,
parsing JSON params and ``K=V`` metadata, the client options, printing results and errors."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import inspect
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeAlias

import msgspec

from wirecall.errors import RpcError
from wirecall.server import Server

__all__ = [
    "Command",
    "Handler",
    "Subparsers",
    "build_server",
    "client_options",
    "json_out",
    "load_target",
    "metadata",
    "params",
    "print_rpc_error",
    "run",
]

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
#: what a command's parser stores as ``handler``: returns the exit code, or a coroutine that
#: does (run on an event loop by :func:`wirecall.cli.main`)
Handler: TypeAlias = Callable[[argparse.Namespace], "int | Awaitable[int]"]


class Command(Protocol):
    """A command module: ``add_parser`` adds its sub-command (or a group of them) to
    ``wirecall``'s parser and sets ``handler`` on each (``p.set_defaults(handler=...)``)."""

    def add_parser(self, sub: Subparsers) -> None: ...


def run(coro: Any) -> Any:
    """Run ``coro`` on uvloop when it is installed, else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def load_target(spec: str) -> Any:
    """Import ``module:attr`` (or ``path/to/file.py:attr``)."""
    mod_name, sep, attr = spec.partition(":")
    if not sep or not attr:
        raise SystemExit(f"wirecall: expected MODULE:ATTR, got {spec!r}")
    if mod_name.endswith(".py") or os.sep in mod_name:
        path = os.path.abspath(mod_name)
        s = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
        if s is None or s.loader is None:
            raise SystemExit(f"wirecall: cannot load {path}")
        module = importlib.util.module_from_spec(s)
        s.loader.exec_module(module)
    else:
        sys.path.insert(0, os.getcwd())
        module = importlib.import_module(mod_name)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SystemExit(f"wirecall: {mod_name} has no attribute {attr!r}") from None
    return obj


def build_server(target: Any, debug: bool = False) -> Server:
    """A :class:`Server` as is, else a new one serving ``target`` (a class is instantiated)."""
    if isinstance(target, Server):
        return target
    server = Server(debug=debug)
    if inspect.isclass(target):
        target = target()
    if callable(target) and not inspect.isfunction(target) and not hasattr(target, "__dict__"):
        target = target()
    server.register(target)
    return server


def params(text: str | None) -> list[Any] | dict[str, Any]:
    """JSON params: an array or an object as is, a single value as a one-item array."""
    if text is None or text == "":
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"wirecall: the params are not valid JSON: {exc}") from None
    if isinstance(value, (list, dict)):
        return value
    return [value]


def metadata(items: Sequence[str]) -> dict[str, str]:
    """``["k=v", ...]`` as a dict."""
    md = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep:
            raise SystemExit(f"wirecall: --metadata wants key=value, got {item!r}")
        md[k] = v
    return md


def json_out(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def print_rpc_error(exc: RpcError) -> int:
    """``error: STATUS: message`` on stderr; returns the exit code 1."""
    print(f"error: {exc.status.name}: {exc.message}", file=sys.stderr)
    return 1


def client_options(sp: argparse.ArgumentParser) -> None:
    """``--timeout`` and ``--connect-timeout``, for commands that dial a server."""
    sp.add_argument("--timeout", type=float, default=None, help="call timeout in seconds")
    sp.add_argument("--connect-timeout", type=float, default=5.0, help="dial timeout")
