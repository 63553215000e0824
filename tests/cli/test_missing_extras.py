"""A missing optional package fails when the transport or command is used (listen, dial,
command time) with one line naming the ``pip install 'wirecall[...]'`` to run (issue #10):
never a traceback, never a listener that accepts connections it cannot serve."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from support.servers import ROOT

ENV = dict(os.environ, PYTHONPATH=str(ROOT / "tests"))
CALC = "wirecall.tutorial.calculator:Calculator"


def without(mods: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "support.no_extra", mods, *args],
                          capture_output=True, text=True, timeout=30, env=ENV)


@pytest.mark.parametrize(("mods", "args", "extra"), [
    ("httptools", ["serve", CALC, "--listen", "http://127.0.0.1:0"], "http"),
    ("aiohttp", ["serve", CALC, "--listen", "ws://127.0.0.1:0/ws"], "http"),
    ("aiohttp", ["call", "http://127.0.0.1:1", "A.b"], "http"),
    ("aiohttp", ["call", "ws://127.0.0.1:1/ws", "A.b"], "http"),
    ("h2", ["serve", CALC, "--listen", "grpc://127.0.0.1:0"], "grpc"),
    ("h2", ["call", "grpc://127.0.0.1:1", "A.b"], "grpc"),
    ("h2", ["serve", CALC, "--listen", "any://127.0.0.1:0"], "grpc"),
    ("httptools", ["serve", CALC, "--listen", "any://127.0.0.1:0"], "http"),
    ("google.protobuf", ["serve", CALC, "--health"], "grpc"),
    ("google.protobuf", ["serve", CALC, "--reflection"], "grpc"),
    ("google.protobuf", ["gen", "x.proto"], "grpc"),
])
def test_a_missing_extra_is_one_line_naming_the_pip_command(
    mods: str, args: list[str], extra: str
) -> None:
    r = without(mods, *args)
    err = r.stderr.strip()
    assert r.returncode != 0, r.stdout
    assert "listening on" not in r.stdout  # nothing served that could not be served
    assert err.startswith("wirecall: ") and "\n" not in err and "Traceback" not in err, err
    assert f"pip install 'wirecall[{extra}]'" in err, err


def test_the_library_api_fails_at_listen_and_dial_time() -> None:
    code = (
        "import sys, asyncio; sys.modules['aiohttp'] = None\n"
        "import wirecall\n"
        "async def main():\n"
        "    s = wirecall.Server()\n"
        "    for f in (lambda: s.start('http://127.0.0.1:0'),\n"
        "              lambda: wirecall.connect('http://127.0.0.1:1')):\n"
        "        try:\n"
        "            await f()\n"
        "        except RuntimeError as e:\n"
        "            print(e)\n"
        "asyncio.run(main())\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                       env=ENV)
    lines = r.stdout.strip().splitlines()
    assert lines == ["the http:// transport needs 'aiohttp', which is not installed: "
                     "pip install 'wirecall[http]'"] * 2, r.stdout + r.stderr
