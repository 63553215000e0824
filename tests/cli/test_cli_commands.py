"""The ``wirecall.cli`` package: one module per command, assembled from ``COMMANDS``; a new
command group is one module and one line. In process (no subprocess, no server)."""

from __future__ import annotations

import argparse
import types

import pytest

from wirecall import cli
from wirecall.cli import bench, common, listing


def test_every_command_module_adds_its_command_with_a_handler() -> None:
    parser = cli.build_parser()
    for argv in (["serve", "m:A"], ["call", "tcp://h:1", "S.m"], ["list", "tcp://h:1"],
                 ["bench", "tcp://h:1", "S.m"], ["gen", "x.proto"], ["demo"],
                 ["describe", "tcp://h:1", "S.m"]):
        args = parser.parse_args(argv)
        assert callable(args.handler), argv
    assert len(cli.COMMANDS) >= 7  # (feature rooms add their own groups)
    assert cli.main.__module__ == "wirecall.cli"


def test_a_command_group_is_one_module_and_one_line(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """What the package docstring tells a feature room to do, done with a stand-in module."""
    group = types.ModuleType("wirecall.cli.pubsub_standin")

    async def publish(args: argparse.Namespace) -> int:
        print(f"published {args.message} to {args.topic}")
        return 3

    def add_parser(sub: common.Subparsers) -> None:
        g = sub.add_parser("standin", help="publish and subscribe")
        actions = g.add_subparsers(dest="action", required=True)
        p = actions.add_parser("publish")
        p.add_argument("topic")
        p.add_argument("message")
        p.set_defaults(handler=publish)

    group.add_parser = add_parser  # type: ignore[attr-defined]
    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, group))
    assert cli.main(["standin", "publish", "news", "hello"]) == 3  # async: run on a loop
    assert capsys.readouterr().out == "published hello to news\n"


def test_errors_from_an_async_command_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["call", "nope://127.0.0.1:1", "S.m"])  # an unknown scheme: ValueError
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("wirecall: ") and "Traceback" not in err


def test_params_metadata_and_percentile() -> None:
    assert common.params(None) == [] and common.params("") == []
    assert common.params("[1, 2]") == [1, 2] and common.params('{"a": 1}') == {"a": 1}
    assert common.params("5") == [5]
    with pytest.raises(common.CommandError, match="not valid JSON"):
        common.params("[1")
    assert common.metadata(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(common.CommandError, match="key=value"):
        common.metadata(["nope"])
    values = [float(i) for i in range(101)]
    assert bench.percentile(values, 0.5) == 50.0 and bench.percentile(values, 0.99) == 99.0
    assert bench.percentile([], 0.5) == 0.0


def test_list_renders_services_methods_and_modes() -> None:
    desc = {
        "Calc": [{"name": "Add", "params": [{"name": "a", "type": "int", "required": True},
                                            {"name": "b", "type": "int", "required": False}],
                  "result": "int", "mode": "unary", "doc": "Adds.\nMore."},
                 {"name": "Watch", "params": [], "result": "str", "mode": "server_stream"}],
        "": [{"name": "ping", "params": [], "result": "str", "mode": "unary"}],
    }
    assert listing.render(desc).splitlines() == [
        "Calc",
        "  Add(a: int, b: int = ...) -> int",
        "      Adds.",
        "  Watch() -> str  [server_stream]",
        "(functions)",
        "  ping() -> str",
    ]


def test_every_argument_of_the_core_commands_has_help_and_examples() -> None:
    import argparse

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("serve", "call", "list", "describe", "bench", "gen", "demo"):
        p = sub.choices[name]
        assert p.epilog and p.epilog.startswith("examples:"), name
        assert issubclass(p.formatter_class, argparse.ArgumentDefaultsHelpFormatter), name
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, (name, action.dest)
