"""examples/http_jsonrpc.py runs and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_http_jsonrpc_example() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "http_jsonrpc.py")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "服务器响应: {'id': 1, 'result': 15, 'error': None}" in out  # as from Go
    assert "Add: 15" in out
    assert "Divide by zero: 除数不能为零" in out
    assert "batch: [3, 3.0, 'INVALID_ARGUMENT']" in out
    assert "OpenRPC methods: ['Calculator.Add', 'Calculator.Divide', 'Clock.Countdown']" in out
    assert out.index("tick 3") < out.index("tick 2") < out.index("tick 1")
    assert "liftoff, example client!" in out
    assert "healthz: 200 readyz: 200" in out
