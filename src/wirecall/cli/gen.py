"""``wirecall gen FILE.proto [--out DIR]``: messages, a service base and a stub from a
.proto (``wirecall.gen``, which needs the grpc extra)."""

from __future__ import annotations

import argparse
import importlib
import sys

from .common import Subparsers, add_command

__all__ = ["add_parser", "gen"]


def add_parser(sub: Subparsers) -> None:
    g = add_command(sub, "gen", "generate messages, service base and stub from a .proto", (
        "wirecall gen helloworld.proto --out src/myapp",
    ))
    g.add_argument("proto", help="the .proto file")
    g.add_argument("--out", default=".", help="the directory to write the modules to")
    g.set_defaults(handler=gen)


def gen(args: argparse.Namespace) -> int:
    try:  # protoc comes from grpcio-tools (the grpc extra), imported when generating
        generator = importlib.import_module("wirecall.gen")
        rc: int = generator.main([args.proto, "--out", args.out])
    except ImportError as exc:
        print(f"wirecall: gen needs the grpc extra ({exc.name} is missing): "
              "pip install 'wirecall[grpc]'", file=sys.stderr)
        return 1
    return rc
