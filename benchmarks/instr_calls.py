"""Instructions per call, counted by valgrind's callgrind: a load-independent A/B.

Wall-clock benchmarks on a shared 2-core machine drift by tens of percent; instruction
counts do not (callgrind counts what the CPU executes, whatever else runs). This script runs
a wirecall server and client in one process on one loop (tcp:// on 127.0.0.1, the tutorial's
``Calculator.Add`` as an inline handler, i.e. the native fast lane) and makes ``--calls``
sequential calls, then ``--calls`` calls 64 at a time. Run it under callgrind twice, with
``--calls 0`` and with ``--calls N``, and the difference divided by the calls is the cost of
one call on both sides (client + server, kernel excluded)::

    python benchmarks/instr_calls.py --ab /tmp/before /tmp/after --calls 2000

(``--ab`` runs everything for two source trees and prints the table.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import msgspec

import wirecall
from wirecall import method


class Args(msgspec.Struct):
    A: int
    B: int


class Calculator:
    @method(inline=True)
    def Add(self, args: Args) -> int:
        return args.A + args.B


async def workload(calls: int, mode: str, scheme: str) -> None:
    server = wirecall.Server()
    server.register(Calculator())
    [url] = await server.start(f"{scheme}://127.0.0.1:0")
    client = await wirecall.connect(url)
    await client.call("Calculator.Add", Args(1, 2))  # warm: connection, lane, caches
    if mode == "seq":
        for i in range(calls):
            await client.call("Calculator.Add", Args(i, 1))
    else:
        sem = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with sem:
                await client.call("Calculator.Add", Args(i, 1))

        await asyncio.gather(*(one(i) for i in range(calls)))
    await client.close()
    await server.close()


def count(tree: Path, calls: int, mode: str, scheme: str) -> int:
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    r = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, __file__, "--run", mode, "--calls", str(calls), "--scheme", scheme],
        capture_output=True, text=True, env=env, timeout=1800,
    )
    m = re.search(r"Collected : (\d+)", r.stderr)
    if r.returncode != 0 or m is None:
        raise SystemExit(f"callgrind failed for {tree}:\n{r.stderr[-2000:]}")
    return int(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", choices=["seq", "inflight64"], help="run the workload (internal)")
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--scheme", default="tcp", help="tcp (default), grpc, http, ws, ...")
    ap.add_argument("--ab", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    a = ap.parse_args()
    if a.run:
        try:
            import uvloop
            uvloop.run(workload(a.calls, a.run, a.scheme))
        except ImportError:
            asyncio.run(workload(a.calls, a.run, a.scheme))
        return 0
    if not a.ab:
        ap.error("--ab BEFORE AFTER or --run MODE")
    print(f"{a.scheme}://: instructions per call (client + server, one process), "
          f"{a.calls} calls, callgrind\n")
    print("| mode | before | after | after/before (instructions; < 1 is cheaper) |")
    print("|---|---|---|---|")
    for mode in ("seq", "inflight64"):
        per = []
        for tree in a.ab:
            base = count(tree.resolve(), 0, mode, a.scheme)
            full = count(tree.resolve(), a.calls, mode, a.scheme)
            per.append((full - base) / a.calls)
        print(f"| {mode} | {per[0]:,.0f} | {per[1]:,.0f} | {per[1] / per[0]:.3f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
