"""Core benchmark (issue: wirecall's TCP transport vs the peers), side by side in one run.

Workload: the tutorial's ``Calculator.Add`` (DESIGN.md), plus a 64 KiB bytes echo. Each
server runs in its own process; each measurement runs its client in a fresh process for
``--seconds``; rounds are interleaved (every system once per round, in rotating order) and
the table reports medians over rounds, then the ratios the issue sets as targets.

    python benchmarks/bench_core.py [--rounds 5] [--seconds 2] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PY = sys.executable


def start(cmd: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env, cwd=HERE)
    assert p.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if line.startswith("listening on"):
            return p, line.split()[-1]
        if p.poll() is not None:
            break
    p.kill()
    raise RuntimeError(f"{cmd} did not start: {p.stderr.read() if p.stderr else ''}")


def build_go() -> str | None:
    go = shutil.which("go")
    if go is None:
        return None
    out = Path(tempfile.mkdtemp(prefix="wirecall-bench-go-")) / "calc_netrpc"
    env = dict(os.environ, GO111MODULE="off", GOPATH=str(out.parent / "gopath"),
               GOCACHE=str(out.parent / "gocache"), GOFLAGS="")
    subprocess.run([go, "build", "-o", str(out), str(HERE / "go" / "calc_netrpc" / "main.go")],
                   check=True, env=env, capture_output=True, timeout=300)
    return str(out)


def measure(cmd: list[str]) -> dict[str, Any]:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=HERE)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd}: {r.stderr[-2000:]}")
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--only", default="", help="semicolon-separated system names to run")
    args = ap.parse_args()

    procs: list[subprocess.Popen[str]] = []
    try:
        p, raw_url = start([PY, "peers.py", "server", "raw", "127.0.0.1:0"])
        procs.append(p)
        p, grpc_url = start([PY, "peers.py", "server", "grpcio", "127.0.0.1:0"])
        procs.append(p)
        p, wc_url = start([PY, "-m", "wirecall.cli", "serve", "bench_services.py:server",
                           "--listen", "tcp://127.0.0.1:0"])
        procs.append(p)
        go_bin = build_go()
        go_addr = ""
        if go_bin:
            p, go_addr = start([go_bin, "server", "127.0.0.1:0"])
            procs.append(p)
        else:
            print("go not found: Go net/rpc column skipped", file=sys.stderr)

        def client(kind: str, url: str, mode: str) -> list[str]:
            return [PY, "peers.py", "client", kind, url, mode, str(args.seconds)]

        cases: dict[tuple[str, str], list[str]] = {
            ("raw pipelined (msgspec, uvloop)", "seq"): client("raw", raw_url, "seq"),
            ("raw pipelined (msgspec, uvloop)", "inflight64"): client("raw", raw_url, "inflight64"),
            ("raw pipelined (msgspec, uvloop)", "echo64k"): client("raw", raw_url, "echo64k"),
            ("raw blocking socket", "seq"): client("raw-blocking", raw_url, "seq"),
            ("wirecall async", "seq"): client("wirecall", wc_url, "seq"),
            ("wirecall async", "inflight64"): client("wirecall", wc_url, "inflight64"),
            ("wirecall async", "echo64k"): client("wirecall", wc_url, "echo64k"),
            ("wirecall sync", "seq"): client("wirecall-sync", wc_url, "seq"),
            ("wirecall server, hand-framed blocking client (floor)", "seq"):
                client("wire-floor", wc_url, "seq"),
            ("grpcio asyncio", "seq"): client("grpcio", grpc_url, "seq"),
            ("grpcio asyncio", "inflight64"): client("grpcio", grpc_url, "inflight64"),
        }
        if go_bin:
            for mode in ("seq", "inflight64"):
                cases[("Go net/rpc (gob)", mode)] = [go_bin, "client", go_addr, mode,
                                                     str(args.seconds)]
        if args.only:
            keep = set(args.only.split(";"))
            cases = {k: v for k, v in cases.items() if k[0] in keep}
        results: dict[tuple[str, str], list[float]] = {k: [] for k in cases}
        keys = list(cases)
        for rnd in range(args.rounds):
            order = keys[rnd % len(keys):] + keys[: rnd % len(keys)]
            for key in order:
                res = measure(cases[key])
                if key[1] == "echo64k":
                    val = res["bytes"] / res["seconds"] / 1e6
                else:
                    val = res["calls"] / res["seconds"]
                results[key].append(val)
            print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    finally:
        for p in procs:
            p.kill()
            p.wait()

    med = {k: statistics.median(v) for k, v in results.items() if v}
    systems = sorted({k[0] for k in med}, key=lambda s: list(k[0] for k in keys).index(s))
    lines = [
        f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{args.rounds} interleaved rounds x {args.seconds:g}s, medians.",
        "",
        "| system | sequential calls/s | 64 in flight calls/s | 64 KiB echo MB/s |",
        "|---|---|---|---|",
    ]
    for s in systems:
        def cell(mode: str, s: str = s) -> str:
            v = med.get((s, mode))
            return "—" if v is None else (f"{v:,.1f}" if mode == "echo64k" else f"{v:,.0f}")
        lines.append(f"| {s} | {cell('seq')} | {cell('inflight64')} | {cell('echo64k')} |")

    def ratio(a: tuple[str, str], b: tuple[str, str]) -> float | None:
        if a in med and b in med:
            return med[a] / med[b]
        return None

    raw = "raw pipelined (msgspec, uvloop)"
    targets = [
        ("64 in flight vs raw pipelined", ("wirecall async", "inflight64"), (raw, "inflight64"),
         0.6),
        ("64 in flight vs grpcio asyncio", ("wirecall async", "inflight64"),
         ("grpcio asyncio", "inflight64"), 30.0),
        ("64 in flight vs Go net/rpc", ("wirecall async", "inflight64"),
         ("Go net/rpc (gob)", "inflight64"), 1.0),
        ("sequential async vs raw", ("wirecall async", "seq"), (raw, "seq"), 0.85),
        ("sequential sync vs raw blocking", ("wirecall sync", "seq"),
         ("raw blocking socket", "seq"), 0.85),
        ("64 KiB echo vs raw", ("wirecall async", "echo64k"), (raw, "echo64k"), 0.8),
    ]
    lines += ["", "| target | ratio | wanted | met |", "|---|---|---|---|"]
    for name, a, b, want in targets:
        r = ratio(a, b)
        if r is None:
            lines.append(f"| {name} | — | ≥ {want:g}x | not measured |")
        else:
            lines.append(f"| {name} | {r:.2f}x | ≥ {want:g}x | {'yes' if r >= want else 'NO'} |")
    floor = ratio(("wirecall server, hand-framed blocking client (floor)", "seq"),
                  ("raw blocking socket", "seq"))
    if floor is not None:
        lines += ["", f"Floor for the sync target: a hand-framed blocking client (no client "
                  f"library at all) against the wirecall server reaches {floor:.2f}x the raw "
                  f"blocking client against the raw server."]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
