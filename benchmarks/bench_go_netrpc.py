"""Go net/rpc (gob) side by side: the Go client driving a Go server and the wirecall server,
and the wirecall gob client driving the Go server.

    .venv/bin/python benchmarks/bench_go_netrpc.py [--rounds 5] [--seconds-per-run ~1]

Workload: ``Calculator.Add(Args{1, 2})``, sequential (one call at a time) and 64 in flight on
one connection (64 goroutines sharing one ``rpc.Client``, or 64 asyncio tasks sharing one
wirecall connection). Rounds are interleaved (each round runs every configuration once) and
the table shows medians of calls/s and the ratios. Every reply is checked.

The Go programs are the tutorial's (tests/interop/go/calcserver, calcclient), built with
Debian's golang-go in GOPATH mode; the wirecall server runs in its own process on uvloop.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from interop import goharness  # noqa: E402

PY_SERVER = """
import asyncio, json, sys
import uvloop
import wirecall
from wirecall.tutorial.calculator import Calculator

async def main():
    srv = wirecall.Server()
    srv.register(Calculator())
    (url,) = await srv.start("gob://127.0.0.1:0")
    print(json.dumps({"listen": url.split("//", 1)[1]}), flush=True)
    await srv.serve_forever(handle_signals=True)

uvloop.run(main())
"""

PY_CLIENT = """
import asyncio, json, sys, time
import uvloop
from wirecall.tutorial.calculator import Args
from wirecall.transport.base import parse_url
from wirecall.transport.gob import connect

async def main(addr, n, conc):
    conn = await connect(parse_url("gob://" + addr))
    args = Args(1, 2)
    call = conn.call
    bad = 0
    async def worker(k):
        nonlocal bad
        for _ in range(k):
            if await call("Calculator.Add", [args], None, None, int) != 3:
                bad += 1
    t0 = time.perf_counter()
    per = n // conc
    await asyncio.gather(*(worker(per) for _ in range(conc)))
    secs = time.perf_counter() - t0
    print(json.dumps({"calls": per * conc, "seconds": secs, "errors": bad}))
    await conn.aclose()

uvloop.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def start_py_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", PY_SERVER], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, json.loads(line)["listen"]


def go_client(addr: str, n: int, conc: int) -> float:
    res = goharness.run(
        "calcclient", "-addr", addr, "-mode", "tcp", "-case", "bench",
        "-n", str(n), "-conc", str(conc), timeout=300,
    )[0]
    assert res["errors"] == 0, res
    return float(res["calls"]) / float(res["seconds"])


def py_client(addr: str, n: int, conc: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", PY_CLIENT, addr, str(n), str(conc)],
        capture_output=True, text=True, timeout=300, cwd=ROOT, check=True,
    ).stdout
    res = json.loads(out)
    assert res["errors"] == 0, res
    return float(res["calls"]) / float(res["seconds"])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seq-calls", type=int, default=10000)
    ap.add_argument("--inflight-calls", type=int, default=64000)
    ns = ap.parse_args()

    go_srv = goharness.start_server("calcserver", "-mode", "tcp")
    py_proc, py_addr = start_py_server()
    results: dict[tuple[str, str], list[float]] = {}
    configs = [
        ("Go client -> Go server", "go", go_srv.addr),
        ("Go client -> wirecall server", "go", py_addr),
        ("wirecall client -> Go server", "py", go_srv.addr),
    ]
    try:
        # warm up both servers (and the Go build cache)
        go_client(go_srv.addr, 2000, 8)
        go_client(py_addr, 2000, 8)
        for r in range(ns.rounds):
            for name, kind, addr in configs:
                for mode, n, conc in (("seq", ns.seq_calls, 1), ("64", ns.inflight_calls, 64)):
                    fn = go_client if kind == "go" else py_client
                    rate = fn(addr, n, conc)
                    results.setdefault((name, mode), []).append(rate)
            print(f"round {r + 1}/{ns.rounds} done", file=sys.stderr)
    finally:
        go_srv.stop()
        py_proc.terminate()
        py_proc.wait(timeout=10)

    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\nGo net/rpc (gob), Calculator.Add, medians of {ns.rounds} interleaved rounds, "
          f"{os.cpu_count()} CPUs\n")
    print("| configuration | sequential calls/s | 64 in flight calls/s |")
    print("|---|---|---|")
    for name, _, _ in configs:
        print(f"| {name} | {med[(name, 'seq')]:,.0f} | {med[(name, '64')]:,.0f} |")
    base = "Go client -> Go server"
    print()
    for name, _, _ in configs[1:]:
        print(
            f"{name} / {base}: sequential {med[(name, 'seq')] / med[(base, 'seq')]:.2f}x, "
            f"64 in flight {med[(name, '64')] / med[(base, '64')]:.2f}x"
        )
    return 0


if __name__ == "__main__":
    t0 = time.time()
    rc = main()
    print(f"\n(total {time.time() - t0:.0f}s)", file=sys.stderr)
    raise SystemExit(rc)
