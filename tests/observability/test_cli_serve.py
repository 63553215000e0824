"""``wirecall serve`` with --admin, --metrics, --tracing and --access-log, as a subprocess:
the dashboard's snapshot and /metrics answer, access log lines and spans reach stderr, and
nothing is lost when the server stops (SIGTERM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from support.servers import ROOT
from wirecall import sync

TARGET = "wirecall.tutorial.calculator:Calculator"


def start(*flags: str) -> tuple[subprocess.Popen[str], str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [sys.executable, "-m", "wirecall.cli", "serve", TARGET, "--listen",
         "tcp://127.0.0.1:0", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    url = admin = ""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (url and admin):
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("listening on "):
            url = line.split()[-1]
        if line.startswith("admin on "):
            admin = line.split()[-1]
    if not (url and admin):
        proc.kill()
        raise AssertionError(f"serve did not start: {proc.stderr.read() if proc.stderr else ''}")
    return proc, url, admin


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 0, err
    return err


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        body: bytes = r.read()
        return body


def test_serve_with_everything_on(tmp_path: Path) -> None:
    proc, url, admin = start("--admin", "http://127.0.0.1:0", "--metrics", "--tracing",
                             "--access-log", "json")
    try:
        with sync.connect(url) as c:
            for i in range(3):
                assert c.call("Calculator.Add", {"A": i, "B": 1}) == i + 1
        snap = json.loads(get(admin + "/api/snapshot"))
        [row] = [r for r in snap["methods"] if r["method"] == "Calculator.Add"]
        assert row["count"] == 3 and row["wire"] == "tcp"
        text = get(admin + "/metrics").decode()
        assert ('wirecall_server_calls_total{method="Add",service="Calculator",status="OK",'
                'wire="tcp"} 3.0') in text
        assert b"<title>wirecall dashboard</title>" in get(admin + "/")
    finally:
        err = stop(proc)
    lines = [json.loads(x) for x in err.splitlines() if x.startswith('{"ts"')]
    assert [(x["method"], x["status"]) for x in lines] == [("Calculator.Add", "OK")] * 3
    # the console exporter prints each span as a JSON object over several lines
    assert err.count('"name": "Calculator.Add"') == 3
    assert '"kind": "SpanKind.SERVER"' in err


def test_metrics_without_admin_is_refused() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "wirecall.cli", "serve", TARGET, "--listen",
         "tcp://127.0.0.1:0", "--metrics"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "--metrics needs --admin URL" in proc.stderr


@pytest.mark.parametrize("bad", ["https://127.0.0.1:0", "http://127.0.0.1"])
def test_bad_admin_url_is_refused(bad: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "wirecall.cli", "serve", TARGET, "--listen",
         "tcp://127.0.0.1:0", "--admin", bad], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "admin URL" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_access_log_loses_no_line_at_sigterm() -> None:
    """More lines than one batch (FLUSH_LINES), the last ones still queued when SIGTERM
    arrives: every call has its line once the server has stopped."""
    proc, url, _ = start("--admin", "http://127.0.0.1:0", "--access-log", "text")
    try:
        with sync.connect(url) as c:
            for i in range(600):  # (< 64 KiB of lines: stderr is read at the end)
                assert c.call("Calculator.Add", {"A": i, "B": 1}) == i + 1
    finally:
        err = stop(proc)
    lines = [x for x in err.splitlines() if " Calculator.Add call OK " in x]
    assert len(lines) == 600
