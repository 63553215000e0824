"""examples/go_interop.py runs, and its --serve mode answers the tutorial's Go client."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from interop import goharness

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "go_interop.py"


def test_example_runs() -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    lines = out.splitlines()
    assert sum("10 + 5 = 15" in x for x in lines) == 3
    assert sum("10 / 5 = 2.0" in x for x in lines) == 3
    assert sum("error 除数不能为零" in x for x in lines) == 3


def test_example_server_answers_go_client() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # "serving Calculator on gob://h:p and jsonrpc://h:p"
        gob_addr = first.split()[3].split("//")[1]
        json_addr = first.split()[5].split("//")[1]
        for addr, mode in ((gob_addr, "tcp"), (gob_addr, "http"), (json_addr, "jsonrpc")):
            res = {r["case"]: r for r in goharness.run(
                "calcclient", "-addr", addr, "-mode", mode, "-case", "basic", timeout=30
            )}
            assert res["add"]["result"] == 15, (mode, res)
            assert res["divide0"]["error"] == "除数不能为零", (mode, res)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
