"""The cluster layer's cost and quality (issue #11), side by side in one run.

1. cost: ``static://`` with 1 endpoint vs a direct ``tcp://`` connection, 64 calls in flight
   (the tutorial's ``Calculator.Add`` served by ``wirecall serve`` in its own process);
   target >= 0.9x;
2. 3 local servers behind P2C (and round robin): total calls/s at 64 in flight;
3. P2C distribution quality like go-zero's test: 10,000 picks over 100 endpoints with 1%
   deadline errors, normalized entropy (> 0.95);
4. slow-node table: one of 3 servers 50 ms slower (fault proxy): p50/p99 and the share of
   calls it gets, for round robin, least pending and P2C.

Within each round the configurations take turns in short slices (0.25 s: direct, static,
..., then in reverse order), so each ratio compares runs that saw the same load; medians
of the per-round figures are reported. The machine is shared, absolute numbers drift,
ratios are what to read.

    .venv/bin/python benchmarks/bench_cluster.py --rounds 5 --seconds 2 [--instr 4000]

``--instr N`` first counts instructions per call (callgrind, client and server in one
process): unlike calls/s, that count does not drift with the load on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import wirecall  # noqa: E402
from support.cluster_nodes import start_nodes, static_target  # noqa: E402
from support.faultproxy import FaultProxy  # noqa: E402
from wirecall.cluster.balancer import P2CPeakEwma  # noqa: E402
from wirecall.cluster.breaker import CircuitBreaker  # noqa: E402
from wirecall.cluster.client import ClusterClient  # noqa: E402
from wirecall.cluster.endpoint import EndpointState  # noqa: E402
from wirecall.cluster.entry import Entry  # noqa: E402
from wirecall.cluster.outlier import OutlierPolicy  # noqa: E402

ARGS = {"A": 10, "B": 5}


def spawn_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "wirecall.cli", "serve", "wirecall.tutorial.calculator:Calculator",
         "--listen", "tcp://127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line.split()[-1]


async def inflight(client: Any, seconds: float, depth: int = 64) -> tuple[float, float]:
    """(calls/s, client CPU microseconds per call) at ``depth`` calls in flight."""
    stop = time.perf_counter() + seconds
    cpu0 = time.process_time()
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await client.call("Calculator.Add", ARGS)
            done += 1
    await asyncio.gather(*(worker() for _ in range(depth)))
    return done / seconds, (time.process_time() - cpu0) / max(done, 1) * 1e6


async def cost(rounds: int, seconds: float, slice_s: float = 0.25,
               ) -> dict[str, list[tuple[float, float]]]:
    """Each configuration's (calls/s, client CPU us/call) per round. Within a round the
    configurations take turns in slices of ``slice_s`` seconds (order reversed every other
    slice) until each has run ``seconds``: load on the shared machine drifts over seconds,
    so configurations measured side by side in short turns see the same drift."""
    procs = [spawn_server() for _ in range(3)]
    urls = [u for _, u in procs]
    names = ["direct tcp://", "static:// 1 endpoint", "static:// 3 servers, p2c",
             "static:// 3 servers, round_robin"]
    res: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    clients: dict[str, Any] = {}
    try:
        for name in names:
            if name == "direct tcp://":
                clients[name] = await wirecall.connect(urls[0])
            elif name == "static:// 1 endpoint":
                clients[name] = await wirecall.connect(f"static://{urls[0]}")
            else:
                clients[name] = await wirecall.connect(static_target(urls),
                                                       balancer=name.rsplit(" ", 1)[-1])
            await inflight(clients[name], 0.3)  # warm up: connections, caches, EWMA
        slices = max(1, round(seconds / slice_s))
        for _ in range(rounds):
            calls = dict.fromkeys(names, 0.0)
            cpu = dict.fromkeys(names, 0.0)
            for k in range(slices):
                for name in (names if k % 2 == 0 else names[::-1]):
                    rate, us = await inflight(clients[name], seconds / slices)
                    calls[name] += rate * seconds / slices
                    cpu[name] += us * rate * seconds / slices
            for name in names:
                res[name].append((calls[name] / seconds, cpu[name] / max(calls[name], 1)))
    finally:
        for c in clients.values():
            await c.close()
        for p, _ in procs:
            p.terminate()
            p.wait(10)
    return res


def entropy_test(seed: int) -> tuple[float, float]:
    rnd = random.Random(seed)
    now = [0.0]
    p2c = P2CPeakEwma(clock=lambda: now[0], rand=random.Random(seed + 1))

    def run(n: int) -> float:
        eps = [EndpointState(entry=Entry(id=str(i), addrs={"tcp": str(i)}), url=str(i),
                             client=None, breaker=CircuitBreaker()) for i in range(n)]
        counts: Counter[str] = Counter()
        for _ in range(10_000):
            now[0] += 0.001
            ep = p2c.pick(eps, None)
            counts[ep.id] += 1
            ep.observe(1.0 if rnd.random() < 0.01 else rnd.uniform(0.001, 0.003), now[0])
        total = sum(counts.values())
        h = -sum(c / total * math.log(c / total) for c in counts.values())
        return h / math.log(n)
    return run(100), run(2)


async def slow_node(calls_per_worker: int = 300) -> dict[str, tuple[float, float, float]]:
    servers, _, urls = await start_nodes(3)
    proxy = await FaultProxy.start("127.0.0.1", int(urls[2].rsplit(":", 1)[1]))
    proxy.latency = 0.05
    slow = f"tcp://{proxy.addr}"
    target = static_target([urls[0], urls[1], slow])
    out = {}
    try:
        for bal in ("round_robin", "least_pending", "p2c"):
            client = ClusterClient(target, balancer=bal,
                                   outlier=OutlierPolicy(latency_factor=None))
            await client.connect()
            lat: list[float] = []

            async def worker(c: ClusterClient = client, sink: list[float] = lat) -> None:
                for _ in range(calls_per_worker):
                    t0 = time.perf_counter()
                    await c.call("Node.Work", 1.0)
                    sink.append(time.perf_counter() - t0)
            await asyncio.gather(*(worker() for _ in range(8)))
            calls = {ep["url"]: ep["calls"] for ep in client.endpoints()}
            q = statistics.quantiles(lat, n=100)
            out[bal] = (q[49] * 1000, q[98] * 1000, calls[slow] / sum(calls.values()))
            await client.close()
    finally:
        await proxy.close()
        for s in servers:
            await s.close()
    return out


async def amain(args: argparse.Namespace) -> None:
    print(f"# bench_cluster: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{args.rounds} interleaved rounds x {args.seconds}s, medians; shared 2-core machine")
    print("load average at start: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    res = await cost(args.rounds, args.seconds, args.slice)
    print("load average after the cost rounds: "
          + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    direct = res["direct tcp://"]
    print("\n| client (64 in flight, Calculator.Add) | calls/s (median) | vs direct "
          "(median of per-round ratios) | client CPU us/call (median) | calls/s per round |")
    print("|---|---|---|---|---|")
    for name, xs in res.items():
        rate = statistics.median(x[0] for x in xs)
        ratio = statistics.median(x[0] / d[0] for x, d in zip(xs, direct, strict=True))
        cpu = statistics.median(x[1] for x in xs)
        print(f"| {name} | {rate:,.0f} | {ratio:.2f}x | {cpu:.2f} | "
              f"{', '.join(f'{x[0]:,.0f}' for x in xs)} |")
    h100, h2 = entropy_test(7)
    print("\n| P2C distribution (10,000 picks, 1% deadline errors) | normalized entropy |")
    print("|---|---|")
    print(f"| 100 endpoints (go-zero bar > 0.95) | {h100:.4f} |")
    print(f"| 2 endpoints (go-zero bar > 0.5) | {h2:.4f} |")
    table = await slow_node()
    print("\n| one of 3 servers +50 ms, 8 workers x 300 calls | p50 ms | p99 ms "
          "| share to slow node |")
    print("|---|---|---|---|")
    for bal, (p50, p99, share) in table.items():
        print(f"| {bal} | {p50:.1f} | {p99:.1f} | {share:.1%} |")


class Calc:
    @wirecall.method(inline=True)
    def Add(self, args: dict[str, int]) -> int:
        return args["A"] + args["B"]


async def instr_workload(calls: int, kind: str) -> None:
    """Server and client in one process (for callgrind): 64 calls in flight."""
    server = wirecall.Server()
    server.register(Calc(), name="Calculator")
    [url] = await server.start("tcp://127.0.0.1:0")
    client: Any = await wirecall.connect(url if kind == "direct" else f"static://{url}",
                                         timeout=600)  # valgrind is slow
    for _ in range(200):
        await client.call("Calculator.Add", ARGS)  # warm: connection, lane, caches, ready
    sem = asyncio.Semaphore(64)

    async def one() -> None:
        async with sem:
            await client.call("Calculator.Add", ARGS)
    await asyncio.gather(*(one() for _ in range(calls)))
    await client.close()
    await server.close()


def instructions(calls: int, kind: str) -> int:
    r = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         __file__, "--instr-run", kind, "--calls", str(calls)],
        capture_output=True, text=True, timeout=1800)
    m = re.search(r"Collected : (\d+)", r.stderr)
    if r.returncode != 0 or m is None:
        raise SystemExit(f"callgrind failed:\n{r.stderr[-2000:]}")
    return int(m.group(1))


def instr_table(calls: int) -> None:
    print(f"\n| 64 in flight, client + server in one process ({calls} calls, callgrind) "
          "| instructions per call | vs direct |")
    print("|---|---|---|")
    per = {}
    for kind in ("direct", "static"):
        per[kind] = (instructions(calls, kind) - instructions(0, kind)) / calls
    for kind, n in per.items():
        label = "direct tcp://" if kind == "direct" else "static:// 1 endpoint"
        print(f"| {label} | {n:,.0f} | {per['direct'] / n:.3f}x (throughput, CPU-bound) |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0,
                    help="seconds each configuration runs per round")
    ap.add_argument("--slice", type=float, default=0.25,
                    help="the configurations take turns in slices of this many seconds")
    ap.add_argument("--instr", type=int, default=0, metavar="CALLS",
                    help="also count instructions per call under callgrind (load-independent)")
    ap.add_argument("--instr-run", choices=["direct", "static"], help=argparse.SUPPRESS)
    ap.add_argument("--calls", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.instr_run:
        run_loop(instr_workload(args.calls, args.instr_run))
        return 0
    if args.instr:
        instr_table(args.instr)
    run_loop(amain(args))
    return 0


def run_loop(coro: Any) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)


if __name__ == "__main__":
    raise SystemExit(main())
