"""Package-level promises: the public surface, sans-IO purity, typed stubs checked by mypy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import wirecall

SRC = Path(wirecall.__file__).resolve().parent


def test_public_names_are_exported_and_exist() -> None:
    for name in wirecall.__all__:
        assert hasattr(wirecall, name), name
    for name in ("Server", "Client", "connect", "Call", "Context", "RpcError", "Status",
                 "method", "current_context"):
        assert name in wirecall.__all__


def test_protocol_cores_do_no_io() -> None:
    """Nothing under wirecall/protocol imports asyncio, socket, ssl or selectors."""
    banned = {"asyncio", "socket", "ssl", "selectors"}
    offenders = []
    for path in (SRC / "protocol").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module.split(".")[0]]
            offenders += [f"{path.name}: {n}" for n in names if n in banned]
    assert offenders == []


def test_typed_stub_calls_are_checked_by_mypy(tmp_path: Path) -> None:
    good = tmp_path / "good.py"
    good.write_text(
        "import wirecall\n"
        "from wirecall.tutorial.calculator import Args, CalculatorAPI\n"
        "async def f(c: wirecall.Client) -> int:\n"
        "    calc = c.stub(CalculatorAPI)\n"
        "    return await calc.Add(Args(1, 2))\n"
    )
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import wirecall\n"
        "from wirecall.tutorial.calculator import CalculatorAPI\n"
        "async def f(c: wirecall.Client) -> str:\n"
        "    calc = c.stub(CalculatorAPI)\n"
        "    return await calc.Add('not args')\n"
    )
    def mypy(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--config-file=",
             str(path)], capture_output=True, text=True, timeout=240, cwd=tmp_path)

    ok = mypy(good)
    assert ok.returncode == 0, ok.stdout
    ko = mypy(bad)
    assert ko.returncode == 1
    assert 'Argument 1 to "Add" of "CalculatorAPI" has incompatible type "str"' in ko.stdout
    assert 'Incompatible return value type (got "int", expected "str")' in ko.stdout
