"""The ``wirecall`` command: serve, call, list, bench, gen, demo.

One module per command (or command group), each with an ``add_parser(sub)`` that adds its
sub-command to the parser and sets its handler (``p.set_defaults(handler=fn)``); ``fn(args)``
returns the exit code, or is ``async`` and then runs on an event loop (uvloop if installed),
with dial and socket errors printed in one line. Shared helpers (``MODULE:ATTR`` loading,
JSON params, ``--timeout``/``--connect-timeout``) are in :mod:`wirecall.cli.common`.

Adding a command group (``wirecall pubsub publish ...``): write ``cli/pubsub.py``::

    from .common import Subparsers

    def add_parser(sub: Subparsers) -> None:
        group = sub.add_parser("pubsub", help="...").add_subparsers(dest="action", required=True)
        p = group.add_parser("publish", help="...")
        p.add_argument("url")
        p.set_defaults(handler=publish)        # async def publish(args) -> int

and add it to :data:`COMMANDS` below: one module, one line. Import heavy or optional
dependencies inside the handler, so ``wirecall --help`` stays fast and works without extras.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Sequence

from wirecall.errors import RpcError
from wirecall.version import __version__

from . import bench, call, cluster, demo, describe, gen, idgen, listing, pubsub, serve, txn
from .common import Command, CommandError, HelpFormatter, error_line, exit_code, run

__all__ = ["COMMANDS", "build_parser", "main"]

#: the command modules, in ``wirecall --help`` order
COMMANDS: tuple[Command, ...] = (
    serve,
    call,
    listing,
    describe,
    bench,
    gen,
    demo,
    idgen,
    txn,
    cluster,
    pubsub,
)


EXAMPLES = """examples:
  wirecall serve wirecall.tutorial.calculator:Calculator --listen tcp://127.0.0.1:1234
  wirecall call tcp://127.0.0.1:1234 Calculator.Add '{"A": 1, "B": 2}'
  wirecall describe tcp://127.0.0.1:1234 Calculator.Add
  wirecall bench tcp://127.0.0.1:1234 Calculator.Add '{"A": 1, "B": 2}' -c 16 -d 5

'wirecall COMMAND --help' shows each command's options, defaults and examples (docs/cli.md)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wirecall", description="wirecall RPC command line: serve "
                                "a Python object, call, describe and load-test any server",
                                epilog=EXAMPLES, formatter_class=HelpFormatter)
    p.add_argument("--version", action="version", version=f"wirecall {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.raw_argv = list(sys.argv[1:] if argv is None else argv)  # (serve --workers re-runs it)
    handler = args.handler
    try:
        if not inspect.iscoroutinefunction(handler):
            rc: int = handler(args)
            return rc
        rc = run(handler(args))
    except KeyboardInterrupt:
        return 130
    except CommandError as exc:  # a bad target, params or file: one line
        print(f"wirecall: {exc}", file=sys.stderr)
        return 2
    except RpcError as exc:  # dial failures and the like: the status and message, no traceback
        print(f"wirecall: {error_line(exc)}", file=sys.stderr)
        return exit_code(exc)
    except OSError as exc:  # a port already in use, a socket path we cannot create...
        print(f"wirecall: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except (ValueError, RuntimeError) as exc:  # bad address, missing extra...
        print(f"wirecall: {exc}", file=sys.stderr)
        return 2
    return rc
