"""The ``wirecall`` command end to end, as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import wirecall.sync
from support.servers import ROOT

WIRECALL = [sys.executable, "-m", "wirecall.cli"]


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"))
    return subprocess.run([*WIRECALL, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def test_serve_call_list_bench_and_graceful_stop(server_process: Any) -> None:
    proc = server_process("wirecall.tutorial.calculator:Calculator", "tcp://127.0.0.1:0")
    url = proc.start()
    assert url.startswith("tcp://127.0.0.1:") and not url.endswith(":0")

    r = run("call", url, "Calculator.Add", '{"A": 10, "B": 5}')
    assert r.returncode == 0 and r.stdout.strip() == "15"
    r = run("call", url, "Calculator.Add", '[{"A": 1, "B": 2}]')
    assert r.stdout.strip() == "3"

    r = run("call", url, "Calculator.Divide", '{"A": 1, "B": 0}')
    assert r.returncode != 0
    assert "INVALID_ARGUMENT" in r.stderr and "除数不能为零" in r.stderr
    r = run("call", url, "Calculator.Nope")
    assert r.returncode != 0 and "UNIMPLEMENTED" in r.stderr

    r = run("list", url)
    assert r.returncode == 0
    assert "Calculator.Add(args: Args) -> int" in r.stdout
    assert "Calculator.Divide(args: Args) -> float" in r.stdout
    r = run("list", url, "--json")
    assert {m["name"] for m in json.loads(r.stdout)["Calculator"]} == {
        "Calculator.Add", "Calculator.Divide"}

    r = run("bench", url, "Calculator.Add", '{"A": 1, "B": 2}', "-c", "8", "-d", "1", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["calls"] > 100 and report["errors"] == 0
    lat = report["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]

    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(10) == 0
    assert "stopped" in proc.proc.stdout.read()


def test_sigint_drains_an_in_flight_call(server_process: Any) -> None:
    proc = server_process("support.services:Probe", "tcp://127.0.0.1:0")
    url = proc.start()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"))
    caller = subprocess.Popen([*WIRECALL, "call", url, "Probe.Sleep", "[3.0]"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    with wirecall.sync.connect(url) as probe:  # wait until the call is in the handler
        deadline = time.monotonic() + 30
        while probe.call("Probe.Entered") < 1:
            assert time.monotonic() < deadline, "the wirecall call never reached the server"
            time.sleep(0.05)
    proc.proc.send_signal(signal.SIGINT)
    out, err = caller.communicate(timeout=15)
    assert caller.returncode == 0, err
    assert out.strip() == '"slept 3.0"'
    assert proc.proc.wait(10) == 0


def test_serve_several_listeners_and_a_server_object(tmp_path: Any, server_process: Any) -> None:
    mod = tmp_path / "mysvc.py"
    mod.write_text(
        "import wirecall\n"
        "from wirecall.tutorial.calculator import Calculator\n"
        "server = wirecall.Server()\n"
        "server.register(Calculator(), name='Calc')\n"
    )
    sock = tmp_path / "s.sock"
    proc = server_process(f"{mod}:server", "tcp://127.0.0.1:0", "--listen", f"unix://{sock}")
    url = proc.start()
    line2 = proc.proc.stdout.readline().strip()
    assert line2 == f"listening on unix://{sock}"
    assert run("call", url, "Calc.Add", '{"A": 2, "B": 2}').stdout.strip() == "4"
    assert run("call", f"unix://{sock}", "Calc.Add", '{"A": 3, "B": 3}').stdout.strip() == "6"


def test_bad_addresses_and_missing_targets_fail_clearly() -> None:
    r = run("call", "tcp://nohost", "A.b")
    assert r.returncode == 2 and "needs a port" in r.stderr
    r = run("call", "bogus://h:1", "A.b")
    assert r.returncode == 2 and "unknown address scheme 'bogus'" in r.stderr
    r = run("serve", "no_such_module_xyz:Thing")
    assert r.returncode != 0 and "no_such_module_xyz" in r.stderr


def test_call_with_timeout_and_metadata(server_process: Any) -> None:
    proc = server_process("support.services:Probe", "tcp://127.0.0.1:0")
    url = proc.start()
    r = run("call", url, "Probe.Meta", "--metadata", "trace=abc", "-m", "k=v", "--timeout", "5")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["metadata"] == {"trace": "abc", "k": "v"}
    assert 3 < out["remaining"] <= 5
    r = run("call", url, "Probe.Sleep", "[2]", "--timeout", "0.2")
    assert r.returncode == 64 + 4 and "DEADLINE_EXCEEDED" in r.stderr


def test_operational_errors_are_one_clear_line(server_process: Any) -> None:
    from conftest import free_port

    dead = f"tcp://127.0.0.1:{free_port()}"
    r = run("bench", dead, "A.b", "-d", "0.5")
    assert r.returncode == 64 + 14  # UNAVAILABLE
    assert "UNAVAILABLE" in r.stderr and "Traceback" not in r.stderr
    proc = server_process("support.services:Probe", "tcp://127.0.0.1:0")
    url = proc.start()
    port = url.rsplit(":", 1)[1]
    r = run("serve", "support.services:Probe", "--listen", f"tcp://127.0.0.1:{port}", timeout=20)
    assert r.returncode == 1
    assert "in use" in r.stderr and "Traceback" not in r.stderr
