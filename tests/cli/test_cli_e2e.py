"""The ``wirecall`` command end to end (issue #10): the real command in a subprocess against
real servers (wirecall on several wires, grpcio): call's params from files and stdin, the
streaming modes as JSON lines, grpc:// JSON <-> protobuf by reflection and by ``--proto``,
exit codes, describe, bench (statuses, percentiles, histogram, -n, --rate, JSON, Ctrl-C),
serve's targets, --version and help."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from support.servers import ROOT

WIRECALL = [sys.executable, "-m", "wirecall.cli"]
ENV = dict(os.environ, PYTHONPATH=str(ROOT / "tests"), PYTHONUNBUFFERED="1")
INTEROP_PROTO = ROOT / "tests" / "protos" / "interop_test.proto"
GREETER = "wirecall.tutorial.greeter:Greeter"
UNAVAILABLE, NOT_FOUND, INVALID_ARGUMENT, UNIMPLEMENTED = 64 + 14, 64 + 5, 64 + 3, 64 + 12


def run(*args: str, stdin: str | None = None, timeout: float = 30,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WIRECALL, *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, env=ENV, cwd=cwd)


async def arun(*args: str, stdin: str | None = None, timeout: float = 30) -> tuple[int, str, str]:
    """``run`` for tests whose server lives on this event loop (grpcio's aio server)."""
    p = await asyncio.create_subprocess_exec(
        *WIRECALL, *args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=ENV)
    out, err = await asyncio.wait_for(p.communicate(stdin.encode() if stdin else None), timeout)
    assert p.returncode is not None
    return p.returncode, out.decode(), err.decode()


def one_line_error(r: subprocess.CompletedProcess[str], status: str) -> None:
    err = r.stderr.strip()
    assert err.startswith(f"wirecall: {status}: "), err
    assert "\n" not in err and "Traceback" not in err and err.count(status) == 1, err


# -- call -------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["tcp", "http"])  # (params are read before any wire)
def test_call_params_from_a_file_and_stdin(server_process: Any, tmp_path: Path,
                                           scheme: str) -> None:
    url = server_process("support.services:Calc", f"{scheme}://127.0.0.1:0").start()
    args = tmp_path / "args.json"
    args.write_text("[20, 22]")
    r = run("call", url, "Calc.Add", "-d", f"@{args}")
    assert (r.returncode, r.stdout.strip()) == (0, "42"), r.stderr
    r = run("call", url, "Calc.Add", "-d", "@-", stdin='{"a": 1, "b": 2}')
    assert (r.returncode, r.stdout.strip()) == (0, "3"), r.stderr
    r = run("call", url, "Calc.Add", "@-", stdin="[5, 5]")
    assert r.stdout.strip() == "10"
    r = run("call", url, "Calc.Add", "-d", f"@{tmp_path / 'missing.json'}")
    assert r.returncode == 2 and "cannot read" in r.stderr and "missing.json" in r.stderr


@pytest.mark.parametrize("scheme", ["tcp", "ws", "grpc"])
def test_call_streams_by_the_methods_mode(server_process: Any, scheme: str) -> None:
    url = server_process("support.services:Calc", f"{scheme}://127.0.0.1:0").start()
    r = run("call", url, "Calc.Count", "[4]")  # server stream: one JSON line per message
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["0", "1", "2", "3"]
    r = run("call", url, "Calc.Sum", stdin='{"x": 1, "y": 2}\n\n{"x": 10, "y": 20}\n')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"x": 11, "y": 22}  # client stream: the one reply
    r = run("call", url, "Calc.Double", stdin="1\n2\n3\n")  # bidi: a line per reply
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["2", "4", "6"]


def test_call_exit_codes_and_one_error_line(server_process: Any) -> None:
    from conftest import free_port

    url = server_process("support.services:Probe", "tcp://127.0.0.1:0").start()
    r = run("call", url, "Probe.Nope")
    assert r.returncode == UNIMPLEMENTED
    one_line_error(r, "UNIMPLEMENTED")
    r = run("call", url, "Probe.Fail", '"rpc"')  # FAILED_PRECONDITION raised on purpose
    assert r.returncode == 64 + 9 and "not now" in r.stderr
    one_line_error(r, "FAILED_PRECONDITION")
    r = run("call", url, "Probe.Fail", '"value"')  # an unexpected exception: opaque
    assert r.returncode == 64 + 13 and "boom" not in r.stderr and "ref " in r.stderr
    r = run("call", url, "Probe.Echo", "[1")
    assert r.returncode == 2 and "not valid JSON" in r.stderr and "Traceback" not in r.stderr
    for scheme in ("tcp", "grpc", "ws"):
        dead = f"{scheme}://127.0.0.1:{free_port()}" + ("/ws" if scheme == "ws" else "")
        r = run("call", dead, "A.b")
        assert r.returncode == UNAVAILABLE, (scheme, r.stderr)
        one_line_error(r, "UNAVAILABLE")


def test_call_a_proto_service_by_reflection(server_process: Any) -> None:
    url = server_process(GREETER, "grpc://127.0.0.1:0", "--reflection").start()
    r = run("call", url, "helloworld.Greeter/SayHello", '{"name": "shell"}')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"message": "Hello, shell"}
    r = run("call", url, "helloworld.Greeter.SayHello", "-d", "@-", stdin='{"nmae": "x"}')
    assert r.returncode == INVALID_ARGUMENT
    one_line_error(r, "INVALID_ARGUMENT")
    assert "nmae" in r.stderr  # unknown fields are an error naming them, not dropped
    r = run("describe", url, "helloworld.Greeter.SayHello")
    assert r.returncode == 0, r.stderr
    assert "rpc SayHello(helloworld.HelloRequest) returns (helloworld.HelloReply)" in r.stdout
    assert "string name = 1;" in r.stdout and "string message = 1;" in r.stdout


async def test_call_a_grpcio_server_with_a_proto_file() -> None:
    from support.grpc_peer import start_grpcio

    server, port = await start_grpcio()
    url = f"grpc://127.0.0.1:{port}"
    proto = str(INTEROP_PROTO)
    try:
        rc, out, err = await arun("call", url, "grpc.testing.TestService/UnaryCall",
                                  "--proto", proto, "-d", '{"response_size": 3}')
        assert rc == 0, err
        assert json.loads(out) == {"payload": {"body": "AAAA"}}  # 3 zero bytes, base64
        rc, out, err = await arun(
            "call", url, "grpc.testing.TestService.StreamingOutputCall",
            '{"response_parameters": [{"size": 1}, {"size": 2}]}', "--proto", proto)
        assert rc == 0, err
        assert [json.loads(x) for x in out.splitlines()] == [
            {"payload": {"body": "AA=="}}, {"payload": {"body": "AAA="}}]
        rc, out, err = await arun(
            "call", url, "grpc.testing.TestService.StreamingInputCall", "--proto", proto,
            stdin='{"payload": {"body": "AAA="}}\n{"payload": {"body": "AA=="}}\n')
        assert rc == 0, err
        assert json.loads(out) == {"aggregated_payload_size": 3}
        rc, out, err = await arun(
            "call", url, "grpc.testing.TestService.UnaryCall",
            '{"response_status": {"code": 5, "message": "gone"}}', "--proto", proto)
        assert rc == NOT_FOUND and err.strip() == "wirecall: NOT_FOUND: gone"
        rc, out, err = await arun("call", url, "grpc.testing.TestService.UnaryCall",
                                  '{"bogus": 1}', "--proto", proto)
        assert rc == INVALID_ARGUMENT and "bogus" in err
        rc, out, err = await arun("describe", url, "grpc.testing.TestService.FullDuplexCall",
                                  "--proto", proto)
        assert rc == 0 and "[bidi_stream]" in out and "ResponseParameters" in out
    finally:
        await server.stop(None)


# -- describe and list ---------------------------------------------------------------------


def test_describe_shows_the_fields_of_argument_and_result_types(server_process: Any) -> None:
    url = server_process("support.services:Calc", "ws://127.0.0.1:0/ws").start()
    assert url.startswith("ws://") and url.endswith("/ws")
    r = run("describe", url, "Calc.Sum")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("Calc.Sum(") and lines[0].endswith("-> Point  [client_stream]")
    assert "  Point:" in lines and "    x: int" in lines and "    y: int" in lines
    r = run("describe", url)
    assert "Calc.Add(a: int, b: int) -> int" in r.stdout and "Calc.Count(" in r.stdout
    r = run("describe", url, "Calc.Nope")
    assert r.returncode == 2 and "no method 'Calc.Nope'" in r.stderr


# -- bench ---------------------------------------------------------------------------------


def test_bench_reports_statuses_percentiles_and_histogram(server_process: Any) -> None:
    url = server_process("support.services:Probe", "tcp://127.0.0.1:0").start()
    r = run("bench", url, "Probe.Echo", "[1]", "-n", "300", "-c", "4", "--format", "json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["calls"] == 300 and rep["statuses"] == {"OK": 300}
    lat = rep["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] \
        <= lat["p99.9"] <= lat["max"]
    assert lat["min"] <= lat["mean"] <= lat["max"]
    assert sum(c for _, c in rep["histogram_ms"]) == 300

    r = run("bench", url, "Probe.Fail", '"rpc"', "-n", "50", "-c", "2")  # all failing
    assert r.returncode == 1
    assert "[FAILED_PRECONDITION] 50 calls" in r.stdout and "not now" in r.stdout
    assert "Latency histogram" in r.stdout and "p99.9" in r.stdout
    assert "every call failed" in r.stderr


def test_bench_rate_and_duration(server_process: Any) -> None:
    url = server_process("support.services:Probe", "tcp://127.0.0.1:0").start()
    r = run("bench", url, "Probe.Echo", "[1]", "--rate", "100", "-d", "1", "-c", "4",
            "--warmup", "0", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert 80 <= rep["calls"] <= 101, rep  # paced: about 100 in the second, never more
    r = run("bench", url, "Probe.Echo", "[1]", "-n", "20", "--rate", "50", "--warmup", "0",
            "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads(r.stdout)
    assert rep["calls"] == 20 and rep["duration_s"] >= 0.35  # 20 calls at 50/s: >= 0.38 s


@pytest.mark.parametrize("bad", [["-c", "0"], ["-d", "0"], ["-n", "-5"], ["--rate", "0"],
                                 ["-c", "-1"], ["--connections", "0"], ["-d", "x"]])
def test_bench_refuses_zero_and_negative_values(bad: list[str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from wirecall import cli

    with pytest.raises(SystemExit) as ei:  # argparse: exit 2 with the reason
        cli.main(["bench", "tcp://127.0.0.1:1", "A.b", *bad])
    err = capsys.readouterr().err
    assert ei.value.code == 2 and ("must be above 0" in err or "not a number" in err), err


def test_bench_ctrl_c_prints_the_partial_summary(server_process: Any) -> None:
    url = server_process("support.services:Probe", "tcp://127.0.0.1:0").start()
    p = subprocess.Popen([*WIRECALL, "bench", url, "Probe.Echo", "[1]", "-d", "60", "-c", "2",
                          "--warmup", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=ENV)
    time.sleep(2.0)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 130, err
    assert out.startswith("interrupted: partial summary") and "[OK]" in out
    assert "Traceback" not in err


def test_bench_a_protobuf_method_over_grpc(server_process: Any) -> None:
    url = server_process(GREETER, "grpc://127.0.0.1:0", "--reflection").start()
    r = run("bench", url, "helloworld.Greeter.SayHello", '{"name": "b"}', "-n", "100",
            "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["statuses"] == {"OK": 100}


# -- serve, version, help --------------------------------------------------------------------


def test_serve_targets_fail_in_one_line_and_factories_are_called(
    server_process: Any, tmp_path: Path
) -> None:
    r = run("serve", "nosuchmod:X")
    assert r.returncode == 2
    assert r.stderr.strip() == "wirecall: no module named 'nosuchmod' (from 'nosuchmod:X')"
    r = run("serve", "support.services:Nope")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no attribute 'Nope'" in r.stderr
    r = run("serve", "justamodule")
    assert r.returncode == 2 and "expected MODULE:ATTR" in r.stderr
    mod = tmp_path / "factory.py"
    mod.write_text(
        "import wirecall\n"
        "from support.services import Calc\n"
        "def make_server():\n"
        "    s = wirecall.Server()\n"
        "    s.register(Calc(), name='Made')\n"
        "    return s\n"
        "def make_services():\n"
        "    return [Calc()]\n"
    )
    url = server_process(f"{mod}:make_server", "tcp://127.0.0.1:0").start()
    assert run("call", url, "Made.Add", "[1, 1]").stdout.strip() == "2"
    listing = run("list", url).stdout
    assert "make_server" not in listing and "Made.Add" in listing
    url = server_process(f"{mod}:make_services", "tcp://127.0.0.1:0").start()
    assert run("call", url, "Calc.Add", "[2, 2]").stdout.strip() == "4"


def test_version_and_help_with_defaults_and_examples(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from wirecall import __version__, cli

    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"wirecall {__version__}"
    for cmd in ("serve", "call", "list", "describe", "bench"):
        with pytest.raises(SystemExit) as ei:
            cli.main([cmd, "--help"])
        out = capsys.readouterr().out
        assert ei.value.code == 0, cmd
        assert "examples:" in out and f"wirecall {cmd}" in out, cmd
        if cmd == "bench":
            for needle in ("(default: 16)", "(default: 1)", "(default: 0.5)",
                           "(default: text)"):
                assert needle in out, needle
