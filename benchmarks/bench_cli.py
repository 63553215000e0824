"""How ``wirecall bench`` figures relate to the benchmarks (docs/cli.md).

One ``wirecall serve wirecall.tutorial.calculator:Calculator`` process on tcp://; in
interleaved rounds, against it:

* ``cli``: ``wirecall bench URL Calculator.Add ... -c 64 -d S --warmup 0.5 --json`` (one
  Python client process that also times and records every call);
* ``library``: a client process doing what ``benchmarks/bench_core.py`` measures for
  wirecall: 64 tasks calling ``client.call("Calculator.Add", Args(10, 5))`` in a loop (the
  client's fast path, nothing recorded per call).

Prints the medians (calls/s) and the ratio cli/library.

    python benchmarks/bench_cli.py --rounds 3 --seconds 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

LIBRARY = textwrap.dedent("""
    import asyncio, sys, time
    import wirecall
    from wirecall.tutorial.calculator import Args

    async def main(url, seconds, conc):
        c = await wirecall.connect(url)
        args = Args(10, 5)
        end = time.perf_counter() + 0.5
        n = 0
        async def loop(measure_until):
            nonlocal n
            while time.perf_counter() < measure_until:
                await c.call("Calculator.Add", args)
                n += 1
        await asyncio.gather(*(loop(end) for _ in range(conc)))  # warm-up
        n = 0
        t0 = time.perf_counter()
        await asyncio.gather(*(loop(t0 + seconds) for _ in range(conc)))
        print(n / (time.perf_counter() - t0))
        await c.close()

    try:
        import uvloop
        uvloop.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
    except ImportError:
        asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
""")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--concurrency", type=int, default=64)
    a = ap.parse_args()
    server = subprocess.Popen(
        [PY, "-m", "wirecall.cli", "serve", "wirecall.tutorial.calculator:Calculator",
         "--listen", "tcp://127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    url = server.stdout.readline().split()[-1]
    cli: list[float] = []
    lib: list[float] = []
    try:
        for _ in range(a.rounds):
            r = subprocess.run(
                [PY, "-m", "wirecall.cli", "bench", url, "Calculator.Add", '{"A": 10, "B": 5}',
                 "-c", str(a.concurrency), "-d", str(a.seconds), "--json"],
                capture_output=True, text=True, check=True)
            cli.append(json.loads(r.stdout)["calls_per_s"])
            r = subprocess.run([PY, "-c", LIBRARY, url, str(a.seconds), str(a.concurrency)],
                               capture_output=True, text=True, check=True)
            lib.append(float(r.stdout))
    finally:
        server.terminate()
        server.wait(10)
    mc, ml = statistics.median(cli), statistics.median(lib)
    print(f"rounds: {a.rounds} x {a.seconds:g} s, {a.concurrency} calls in flight, tcp://")
    print("| client | calls/s (median) | rounds |")
    print("|---|---|---|")
    print(f"| wirecall bench (CLI) | {mc:,.0f} | {', '.join(f'{x:,.0f}' for x in cli)} |")
    print(f"| library client loop | {ml:,.0f} | {', '.join(f'{x:,.0f}' for x in lib)} |")
    print(f"cli / library: {mc / ml:.2f}x")


if __name__ == "__main__":
    main()
