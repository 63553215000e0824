"""``wirecall gen FILE.proto [--out DIR]``: messages, a service base and a stub from a
.proto (``wirecall.gen``, which needs the grpc extra)."""

from __future__ import annotations

import argparse
import importlib
import sys

from .common import Subparsers

__all__ = ["add_parser", "gen"]


def add_parser(sub: Subparsers) -> None:
    g = sub.add_parser("gen", help="generate messages, service base and stub from a .proto")
    g.add_argument("proto")
    g.add_argument("--out", default=".")
    g.set_defaults(handler=gen)


def gen(args: argparse.Namespace) -> int:
    try:
        generator = importlib.import_module("wirecall.gen")
    except ImportError as exc:
        print(f"wirecall gen needs the grpc extra: pip install 'wirecall[grpc]' ({exc})",
              file=sys.stderr)
        return 1
    rc: int = generator.main([args.proto, "--out", args.out])
    return rc
