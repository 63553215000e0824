"""``wirecall demo``: serve the tutorial's Calculator and call it every way
(:mod:`wirecall.tutorial.demo`)."""

from __future__ import annotations

import argparse

from .common import Subparsers, add_command

__all__ = ["add_parser", "demo"]


def add_parser(sub: Subparsers) -> None:
    d = add_command(sub, "demo", "serve the tutorial's Calculator and call it every way", (
        "wirecall demo",
    ))
    d.set_defaults(handler=demo)


def demo(args: argparse.Namespace) -> int:
    from wirecall.tutorial.demo import main as run_demo

    rc: int = run_demo()
    return rc
