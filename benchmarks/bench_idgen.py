"""ID generator benchmark (issue #14), every system in the same run, interleaved rounds.

In process (IDs/s): wirecall's ``Snowflake.next`` next to a naive lock-and-counter
snowflake written here (the floor; target >= 1x), one thread and several threads, plus
``Snowflake.take`` (runs of a unit) and ``IdClient.next`` from a prefetched buffer. Baidu's
UidGenerator publishes ~6-7M IDs/s (Java, 4 cores, CachedUidGenerator) as the outside anchor.

Over the network (a ``wirecall idgen serve --worker-id`` process, tcp:// on 127.0.0.1):
single-ID ``IdGen.Next`` calls/s with many in flight from one client process (Leaf publishes
~50k QPS on a 4-core VM; target above it on 2 cores), and batched IDs/s through one client
(``IdGen.Batch``; target >= 1M IDs/s).

    python benchmarks/bench_idgen.py [--rounds 5] [--seconds 2] [--markdown]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
TWITTER_EPOCH_MS = 1288834974657


class NaiveSnowflake:
    """The floor: Twitter's algorithm as anyone writes it first (lock, counter, spin)."""

    def __init__(self, worker: int) -> None:
        self.worker = worker
        self.lock = threading.Lock()
        self.last = -1
        self.seq = 0

    def next(self) -> int:
        with self.lock:
            t = time.time_ns() // 1_000_000 - TWITTER_EPOCH_MS
            if t == self.last:
                self.seq = (self.seq + 1) & 4095
                if self.seq == 0:
                    while t <= self.last:
                        t = time.time_ns() // 1_000_000 - TWITTER_EPOCH_MS
            else:
                self.seq = 0
            self.last = t
            return (t << 22) | (self.worker << 12) | self.seq


def ids_per_second(fn: Callable[[], Any], seconds: float, threads: int,
                   per_call: int = 1) -> float:
    stop = time.perf_counter() + seconds
    counts = [0] * threads

    def work(i: int) -> None:
        n = 0
        f = fn
        while True:
            for _ in range(1000):
                f()
            n += 1000
            if time.perf_counter() >= stop:
                break
        counts[i] = n

    t0 = time.perf_counter()
    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(counts) * per_call / (time.perf_counter() - t0)


def in_process(seconds: float, threads: int, slices: int = 10) -> dict[str, float]:
    """Naive and wirecall alternate in short slices, so a change in the machine's load
    (shared while measured) hits both alike."""
    sys.path.insert(0, str(ROOT / "src"))
    from wirecall.idgen.snowflake import Snowflake

    naive, mine = NaiveSnowflake(1), Snowflake(1)
    runs: dict[str, list[float]] = {"naive": [], "wirecall": []}
    for _ in range(slices):
        runs["naive"].append(ids_per_second(naive.next, seconds / slices / 2, threads))
        runs["wirecall"].append(ids_per_second(mine.next, seconds / slices / 2, threads))
    out = {
        f"naive lock-and-counter, {threads} thread(s)": statistics.mean(runs["naive"]),
        f"wirecall Snowflake.next, {threads} thread(s)": statistics.mean(runs["wirecall"]),
    }
    if threads == 1:
        g = Snowflake(2)
        taken = 0

        def take() -> None:
            nonlocal taken
            runs_, _ = g.take(4096)
            for r in runs_:
                taken += len(r)
        t0 = time.perf_counter()
        ids_per_second(take, seconds / 2, 1)
        out["wirecall Snowflake.take (runs of a unit), 1 thread"] = taken / (
            time.perf_counter() - t0)
    return out


# -- network ----------------------------------------------------------------------------------

def start_node(data: str) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    p = subprocess.Popen([PY, "-m", "wirecall.cli", "idgen", "serve", "--worker-id", "1",
                          "--data-dir", data, "--listen", "tcp://127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert p.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if line.startswith("listening on"):
            return p, line.split()[-1]
        if p.poll() is not None:
            break
    p.kill()
    raise RuntimeError("idgen node did not start")


async def client_run(url: str, mode: str, seconds: float, inflight: int, n: int) -> float:
    sys.path.insert(0, str(ROOT / "src"))
    from wirecall.client import Client
    from wirecall.idgen.client import IdClient

    count = 0
    stop = time.perf_counter() + seconds
    async with Client(url) as c:
        await c.call("IdGen.Next", "")
        if mode == "idclient":
            ids = IdClient(c, prefetch=n, low_water=0.5)
            t0 = time.perf_counter()
            while time.perf_counter() < stop:
                for _ in range(1000):
                    await ids.next()
                count += 1000
            return count / (time.perf_counter() - t0)

        async def worker() -> None:
            nonlocal count
            while time.perf_counter() < stop:
                if mode == "next":
                    await c.call("IdGen.Next", "")
                    count += 1
                else:
                    got = await c.call("IdGen.Batch", "", n)
                    count += len(got)  # (not `count += len(await ...)`: a lost update)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(inflight)))
        return count / (time.perf_counter() - t0)


def measure_client(url: str, mode: str, seconds: float, inflight: int, n: int) -> float:
    r = subprocess.run([PY, __file__, "--client", url, mode, str(seconds), str(inflight),
                        str(n)], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return float(json.loads(r.stdout.strip().splitlines()[-1])["rate"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--client", nargs=5, metavar=("URL", "MODE", "S", "INFLIGHT", "N"))
    args = ap.parse_args()
    if args.client:
        url, mode, s, inflight, n = args.client
        try:
            import uvloop
            rate = uvloop.run(client_run(url, mode, float(s), int(inflight), int(n)))
        except ImportError:
            rate = asyncio.run(client_run(url, mode, float(s), int(inflight), int(n)))
        print(json.dumps({"rate": rate}))
        return

    node, url = start_node(tempfile.mkdtemp(prefix="wirecall-bench-idgen-"))
    results: dict[str, list[float]] = {}
    nets = [
        ("IdGen.Next over tcp://, 64 in flight (calls/s = IDs/s)", "next", 64, 1),
        ("IdGen.Next over tcp://, 1 in flight (calls/s)", "next", 1, 1),
        ("IdGen.Batch(10000) over tcp://, 4 in flight (IDs/s)", "batch", 4, 10_000),
        ("IdClient.next over tcp:// (prefetch 10000; IDs/s)", "idclient", 1, 10_000),
    ]
    try:
        for rnd in range(args.rounds):
            jobs: list[tuple[str, Callable[[], Any]]] = []
            for threads in (1, args.threads):
                jobs.append((f"in-process {threads}",
                             lambda t=threads: in_process(args.seconds, t)))
            for label, mode, inflight, n in nets:
                jobs.append((label, lambda m=mode, i=inflight, k=n, lb=label:
                             {lb: measure_client(url, m, args.seconds, i, k)}))
            k = rnd % len(jobs)
            for _, job in jobs[k:] + jobs[:k]:  # rotating order
                for name, v in job().items():
                    results.setdefault(name, []).append(v)
    finally:
        node.terminate()
        node.wait(10)
    report(results, args)


def report(results: dict[str, list[float]], args: argparse.Namespace) -> None:
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"# bench_idgen: {args.rounds} interleaved rounds x {args.seconds}s, medians; "
          f"{os.cpu_count()} CPUs (shared with other work while measured)\n")
    print("| measurement | IDs/s (median) | min | max |")
    print("|---|---:|---:|---:|")
    for k, v in results.items():
        print(f"| {k} | {med[k]:,.0f} | {min(v):,.0f} | {max(v):,.0f} |")
    print("| Baidu UidGenerator, published (Java, 4 cores; outside anchor) | ~6,000,000 | | |")
    print("| Meituan Leaf, published (QPS on a 4-core VM; outside anchor) | ~50,000 | | |")
    print()
    t = args.threads
    ratios = [
        ("Snowflake.next / naive, 1 thread (target >= 1x)",
         med["wirecall Snowflake.next, 1 thread(s)"] / med["naive lock-and-counter, 1 thread(s)"]),
        (f"Snowflake.next / naive, {t} threads (target >= 1x)",
         med[f"wirecall Snowflake.next, {t} thread(s)"] /
         med[f"naive lock-and-counter, {t} thread(s)"]),
        ("Next calls/s over tcp:// / Leaf's 50k QPS (target > 1x)",
         med["IdGen.Next over tcp://, 64 in flight (calls/s = IDs/s)"] / 50_000),
        ("batched IDs/s through one client / 1M (target >= 1x)",
         med["IdGen.Batch(10000) over tcp://, 4 in flight (IDs/s)"] / 1_000_000),
        ("Snowflake.next 1 thread / Baidu's ~6M/s Java (anchor, no target)",
         med["wirecall Snowflake.next, 1 thread(s)"] / 6_000_000),
    ]
    print("| ratio | value |")
    print("|---|---:|")
    for name, r in ratios:
        print(f"| {name} | {r:.2f}x |")


if __name__ == "__main__":
    main()
