"""``wirecall bench URL Service.Method [PARAMS] -c 64 -d 5``: load-test one method; prints
throughput and latency percentiles (``--json``: one report line)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from wirecall.client import connect
from wirecall.errors import RpcError

from .common import Subparsers, client_options, params

__all__ = ["add_parser", "bench", "percentile"]


def add_parser(sub: Subparsers) -> None:
    b = sub.add_parser("bench", help="load-test one method")
    b.add_argument("url")
    b.add_argument("method")
    b.add_argument("params", nargs="?")
    b.add_argument("--concurrency", "-c", type=int, default=64)
    b.add_argument("--connections", type=int, default=1)
    b.add_argument("--duration", "-d", type=float, default=5.0)
    b.add_argument("--json", action="store_true", help="print one JSON report line")
    client_options(b)
    b.set_defaults(handler=bench)


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values, nearest rank; 0.0 if empty."""
    if not sorted_values:
        return 0.0
    idx = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[idx]


class _Run:
    """The counters the workers and the progress display share."""

    def __init__(self, duration: float) -> None:
        self.stop_at = time.perf_counter() + duration
        self.latencies: list[float] = []
        self.errors = 0
        self.done = 0


async def bench(args: argparse.Namespace) -> int:
    call_params = params(args.params)
    client = await connect(args.url, timeout=args.connect_timeout, pool_size=args.connections)
    run = _Run(args.duration)

    async def worker() -> None:
        call = client.invoke
        perf = time.perf_counter
        while perf() < run.stop_at:
            t0 = perf()
            try:
                await call(args.method, call_params, timeout=args.timeout)
            except RpcError:
                run.errors += 1
            run.latencies.append(perf() - t0)
            run.done += 1

    t0 = time.perf_counter()
    await asyncio.gather(_progress(args, run), *(worker() for _ in range(args.concurrency)))
    elapsed = time.perf_counter() - t0
    await client.close()
    _report(args, run, elapsed)
    return 0 if run.errors == 0 else 1


async def _progress(args: argparse.Namespace, run: _Run) -> None:
    """A rich progress bar on a terminal, else a line a second on stderr (none with --json)."""
    bar: Any = None
    if sys.stderr.isatty() and not args.json:
        with contextlib.suppress(ImportError):
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            bar = Progress(TextColumn("{task.description}"), BarColumn(),
                           TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                           transient=True)
    start = time.perf_counter()
    if bar is not None:
        with bar:
            tid = bar.add_task(f"bench {args.method}", total=args.duration, rate="")
            while time.perf_counter() < run.stop_at:
                await asyncio.sleep(max(0.0, min(0.2, run.stop_at - time.perf_counter())))
                el = time.perf_counter() - start
                bar.update(tid, completed=min(el, args.duration),
                           rate=f"{run.done / max(el, 1e-9):,.0f} calls/s")
        return
    last = 0
    while time.perf_counter() < run.stop_at:
        await asyncio.sleep(max(0.0, min(1.0, run.stop_at - time.perf_counter())))
        if not args.json:
            el = time.perf_counter() - start
            print(f"  {el:5.1f}s  {run.done - last:8d} calls in the last second",
                  file=sys.stderr)
        last = run.done


def _report(args: argparse.Namespace, run: _Run, elapsed: float) -> None:
    latencies = sorted(run.latencies)
    report = {
        "method": args.method,
        "concurrency": args.concurrency,
        "connections": args.connections,
        "duration_s": round(elapsed, 3),
        "calls": len(latencies),
        "errors": run.errors,
        "calls_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1e3, 3),
        "p99_ms": round(percentile(latencies, 0.99) * 1e3, 3),
        "p999_ms": round(percentile(latencies, 0.999) * 1e3, 3),
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['calls']} calls in {report['duration_s']}s, {report['errors']} errors")
        print(f"throughput: {report['calls_per_s']:,.1f} calls/s")
        print(f"latency: p50 {report['p50_ms']} ms, p99 {report['p99_ms']} ms, "
              f"p999 {report['p999_ms']} ms")
