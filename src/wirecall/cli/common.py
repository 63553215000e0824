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

from wirecall.client import Client, connect
from wirecall.errors import RpcError
from wirecall.server import Server
from wirecall.status import Status

__all__ = [
    "EXIT_STATUS_BASE",
    "Command",
    "CommandError",
    "Handler",
    "HelpFormatter",
    "Subparsers",
    "add_command",
    "build_server",
    "client_options",
    "dial_options",
    "error_line",
    "exit_code",
    "json_out",
    "load_target",
    "metadata",
    "params",
    "positive",
    "print_rpc_error",
    "read_data",
    "run",
    "with_client",
]

#: a call that ended with status S exits with ``EXIT_STATUS_BASE + S`` (grpcurl's convention:
#: NOT_FOUND -> 69, UNAVAILABLE -> 78); 1 is a local failure, 2 a usage error
EXIT_STATUS_BASE = 64


class CommandError(Exception):
    """A one-line failure of a command (printed as ``wirecall: <message>``, exit 2)."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every argument's help shows its default; the examples keep their lines."""


def add_command(sub: Subparsers, name: str, help: str, examples: Sequence[str],
                description: str | None = None) -> argparse.ArgumentParser:
    """A sub-command whose help shows the defaults and ``examples`` (one per line)."""
    epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples)
    return sub.add_parser(name, help=help, description=description or help, epilog=epilog,
                          formatter_class=HelpFormatter)

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
    """Import ``module:attr`` (or ``path/to/file.py:attr``); a failure is one line."""
    mod_name, sep, attr = spec.partition(":")
    if not sep or not attr or not mod_name:
        raise CommandError(f"expected MODULE:ATTR (e.g. wirecall.tutorial.calculator:Calculator)"
                           f", got {spec!r}")
    try:
        if mod_name.endswith(".py") or os.sep in mod_name:
            path = os.path.abspath(mod_name)
            if not os.path.exists(path):
                raise CommandError(f"no such file: {path}")
            s = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
            if s is None or s.loader is None:
                raise CommandError(f"cannot load {path}")
            module = importlib.util.module_from_spec(s)
            s.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        if exc.name and mod_name.startswith(exc.name):
            raise CommandError(f"no module named {mod_name!r} (from {spec!r})") from None
        raise CommandError(f"importing {mod_name!r} failed: {exc}") from None
    except SyntaxError as exc:
        raise CommandError(f"importing {mod_name!r} failed: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CommandError(f"{mod_name} has no attribute {attr!r}") from None
    return obj


def build_server(target: Any, debug: bool = False) -> Server:
    """What ``serve MODULE:ATTR`` serves: a :class:`Server` as is; a class is instantiated;
    a plain function is a factory (called with no arguments; it returns a Server, an object
    to register, or a list of objects); any other object is registered as a service."""
    if inspect.isfunction(target):
        try:
            target = target()
        except TypeError as exc:
            raise CommandError(f"the factory {target.__qualname__}() failed: {exc}") from None
        if inspect.isawaitable(target):
            raise CommandError("the factory is async: make it a plain function")
    if isinstance(target, Server):
        return target
    server = Server(debug=debug)
    for obj in target if isinstance(target, (list, tuple)) else [target]:
        server.register(obj() if inspect.isclass(obj) else obj)
    return server


def read_data(text: str | None) -> str | None:
    """``@file`` is the file's text, ``@-`` standard input, anything else the text itself."""
    if text is None or not text.startswith("@"):
        return text
    if text == "@-":
        return sys.stdin.read()
    try:
        with open(text[1:], encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise CommandError(f"cannot read {text[1:]}: {exc.strerror or exc}") from None


def params(text: str | None) -> list[Any] | dict[str, Any]:
    """JSON params (``@file``, ``@-`` read first): an array or an object as is, a single
    value as a one-item array."""
    text = read_data(text)
    if text is None or text.strip() == "":
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"the params are not valid JSON: {exc}") from None
    if isinstance(value, (list, dict)):
        return value
    return [value]


def metadata(items: Sequence[str]) -> dict[str, str]:
    """``["k=v", ...]`` as a dict."""
    md = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep:
            raise CommandError(f"--metadata wants key=value, got {item!r}")
        md[k] = v
    return md


def json_out(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def error_line(exc: RpcError) -> str:
    """``STATUS: message``, the status said once (a message quoting another error's
    ``STATUS: `` prefix loses it)."""
    msg = exc.message
    for st in Status:
        msg = msg.replace(f": {st.name}: ", ": ")
        if msg.startswith(f"{st.name}: "):
            msg = msg[len(st.name) + 2:]
    return f"{exc.status.name}: {msg}"


def exit_code(exc: RpcError) -> int:
    """The exit code of a call that failed with ``exc``: ``EXIT_STATUS_BASE + status``."""
    return EXIT_STATUS_BASE + int(exc.status)


def print_rpc_error(exc: RpcError) -> int:
    """``wirecall: STATUS: message`` on stderr; returns the exit code of the status."""
    print(f"wirecall: {error_line(exc)}", file=sys.stderr)
    return exit_code(exc)


def positive(kind: type[int] | type[float]) -> Callable[[str], Any]:
    """An argparse type: a number above zero (``-c 0``, ``-d -1`` are refused)."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


def client_options(sp: argparse.ArgumentParser) -> None:
    """``--timeout`` and ``--connect-timeout``, for commands that dial a server (TLS and
    other dial options join them here, so every command that dials gets them)."""
    sp.add_argument("--timeout", type=positive(float), default=None,
                    help="call timeout in seconds (none: wait as long as it takes)")
    sp.add_argument("--connect-timeout", type=positive(float), default=5.0,
                    help="dial timeout in seconds")
    g = sp.add_argument_group("TLS (tls://, https://, wss://, gobs://, grpcs://, quic://; "
                              "docs/security.md)")
    g.add_argument("--ca", metavar="PEM", help="CA certificate(s) to verify the server with "
                   "(default: the system's)")
    g.add_argument("--client-cert", metavar="PEM",
                   help="client certificate for mTLS (the file may also hold the key)")
    g.add_argument("--client-key", metavar="PEM", help="the client certificate's key")


#: schemes that take certificates (TLS wires; any:// serves TLS when given one)
TLS_CLIENT_SCHEMES = frozenset({"tls", "https", "wss", "gobs", "jsonrpcs", "grpcs", "quic"})
TLS_SERVER_SCHEMES = TLS_CLIENT_SCHEMES | {"any"}


def dial_options(args: argparse.Namespace, url: str) -> dict[str, Any]:
    """The TLS options ``--ca``/``--client-cert``/``--client-key`` give a dial of ``url``;
    on a plaintext scheme they are an error (they would be silently unused)."""
    given = {k: v for k, v in (("cafile", getattr(args, "ca", None)),
                               ("certfile", getattr(args, "client_cert", None)),
                               ("keyfile", getattr(args, "client_key", None))) if v}
    if not given:
        return {}
    scheme = url.partition("://")[0] if "://" in url else "tcp"
    if scheme not in TLS_CLIENT_SCHEMES:
        names = ", ".join(f"{s}://" for s in sorted(TLS_CLIENT_SCHEMES))
        raise CommandError(f"--ca/--client-cert need a TLS address ({names}), not {scheme}://")
    if scheme == "quic":
        given.pop("certfile", None)
        given.pop("keyfile", None)
    return given


async def with_client(args: argparse.Namespace,
                      body: Callable[[Client], Awaitable[int]]) -> int:
    """Dial ``args.url`` with the command's client options (``--connect-timeout``, TLS), run
    ``body(client)`` and close the client; an ``RpcError`` from the dial or the body is
    printed (``wirecall: STATUS: message``) and its status is the exit code."""
    try:
        client = await connect(args.url, timeout=args.connect_timeout,
                               **dial_options(args, args.url))
    except RpcError as exc:
        return print_rpc_error(exc)
    try:
        return await body(client)
    except RpcError as exc:
        return print_rpc_error(exc)
    finally:
        await client.close()


def add_tls_server_flags(s: argparse.ArgumentParser) -> None:
    """``--cert``, ``--key``, ``--ca``, ``--client-cert`` for ``serve``."""
    g = s.add_argument_group("TLS (docs/security.md): applies to tls://, https://, wss://, "
                             "gobs://, grpcs://, quic:// and any:// listeners")
    g.add_argument("--cert", metavar="PEM", help="server certificate (chain); reloaded on "
                   "change and on SIGHUP")
    g.add_argument("--key", metavar="PEM", help="the server certificate's key")
    g.add_argument("--ca", metavar="PEM", help="verify client certificates against this CA "
                   "(mTLS; the identity reaches handlers as Context.identity)")
    g.add_argument("--client-cert", choices=("required", "optional"), default=None,
                   help="with --ca: whether clients must present a certificate "
                        "(default required)")


def add_auth_flags(s: argparse.ArgumentParser) -> None:
    """``--auth-tokens FILE`` and ``--allow PATTERN=WHO,...`` for ``serve`` (wirecall.auth)."""
    g = s.add_argument_group("authentication (docs/security.md)")
    g.add_argument("--auth-tokens", metavar="FILE",
                   help="require credentials: bearer tokens, one 'TOKEN PRINCIPAL' per line "
                        "(# comments); with --ca, client certificates authenticate too")
    g.add_argument("--allow", action="append", default=[], metavar="PATTERN=WHO[,WHO]",
                   help="who may call the methods matching PATTERN (fnmatch; '*' as WHO: any "
                        "authenticated caller); repeatable, first match wins")


def auth_from_args(args: argparse.Namespace) -> Any:
    """The ``wirecall.auth.Auth`` the flags describe, or None without ``--auth-tokens``."""
    if not getattr(args, "auth_tokens", None):
        if getattr(args, "allow", None):
            raise CommandError("--allow needs --auth-tokens (who the callers are)")
        return None
    from wirecall.auth import Auth

    tokens: dict[str, str] = {}
    try:
        with open(args.auth_tokens, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.split("#", 1)[0].strip()
                if not line:
                    continue
                parts = line.split()
                if len(parts) != 2:
                    raise CommandError(f"{args.auth_tokens}:{n}: want 'TOKEN PRINCIPAL'")
                tokens[parts[0]] = parts[1]
    except OSError as exc:
        raise CommandError(f"--auth-tokens: cannot read {args.auth_tokens}: "
                           f"{exc.strerror}") from None
    rules: dict[str, list[str]] = {}
    for item in args.allow:
        pattern, eq, who = item.partition("=")
        if not eq or not pattern or not who:
            raise CommandError(f"--allow wants PATTERN=WHO[,WHO], got {item!r}")
        rules[pattern] = [w.strip() for w in who.split(",") if w.strip()]
    return Auth(tokens=tokens, rules=rules)


def listen_options(args: argparse.Namespace, url: str) -> dict[str, Any]:
    """``Server.start`` options for ``url`` from the TLS flags (none on a plaintext scheme)."""
    scheme = url.partition("://")[0] if "://" in url else "tcp"
    if not getattr(args, "cert", None):
        if getattr(args, "ca", None):
            raise CommandError("--ca (client certificates) needs --cert and --key")
        return {}
    if scheme not in TLS_SERVER_SCHEMES:
        return {}
    out: dict[str, Any] = {"certfile": args.cert}
    if args.key:
        out["keyfile"] = args.key
    if scheme != "quic":
        if args.ca:
            out["cafile"] = args.ca
            out["client_cert"] = args.client_cert or "required"
        elif args.client_cert:
            raise CommandError("--client-cert needs --ca (the CA client certificates are "
                               "verified against)")
    return out
