"""The runnable examples do what they say."""

from __future__ import annotations

import re
import subprocess
import sys

from support.servers import ROOT


def test_main_demo_passes() -> None:
    r = subprocess.run([sys.executable, "-m", "wirecall.tutorial.demo"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "demo passed" in r.stdout
    assert "BAD" not in r.stdout
    for wire in ("gob:// listener, gob client", "jsonrpc:// listener, jsonrpc client",
                 "http:// listener, http client /jsonrpc", "http client /_goRPC_",
                 "grpc:// listener, grpc client", "any:// listener, tcp client",
                 "any:// listener, grpc client", "streams on tcp", "streams on grpc",
                 "streams on ws://", "JSON-RPC 2.0 batch", "health: grpc.health.v1.Health/Check",
                 "health: Health.set over the network is refused", "(TLS, the demo's own CA)",
                 "ws:// carries the deadline"):
        assert f"ok  {wire}" in r.stdout or wire in r.stdout, wire
    # readable lines: no raw tuples, no float noise (issue #10)
    assert "-> (" not in r.stdout and "(15, " not in r.stdout
    assert not re.search(r"\d\.\d{6,}", r.stdout), r.stdout


def test_tutorial_client_flows_example() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "calculator_flows.py")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "10 + 5 = 15" in out
    assert "10 / 5 = 2.0" in out
    assert "pool: 4 connections" in out
    assert "timeout: DEADLINE_EXCEEDED" in out
    assert "RPC 调用失败: 除数不能为零" in out
