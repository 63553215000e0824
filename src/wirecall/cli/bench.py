"""``wirecall bench URL Service.Method [PARAMS] -c 16 -d 5``: load-test one method (like ghz):
``-c`` callers share ``--connections`` connections, for ``-d`` seconds or ``-n`` calls, paced
at ``--rate`` calls/s if given, after a ``--warmup`` whose calls are not counted. Prints the
status codes (with their first error messages), latency min/mean/max and percentiles, and a
histogram; ``--format json`` prints one JSON report. Ctrl-C stops early and prints the
partial summary. Exit code: 0 when every call succeeded, 1 otherwise (130 after Ctrl-C).

Its figures are one client process, Python, measuring itself: see docs/cli.md for how they
relate to the benchmarks in ``benchmarks/`` (which drive the server from several processes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from wirecall.client import connect
from wirecall.errors import RpcError

from . import protojson
from .call import method_mode
from .common import (
    CommandError,
    Subparsers,
    add_command,
    client_options,
    dial_options,
    params,
    positive,
    print_rpc_error,
)

__all__ = ["Stats", "add_parser", "bench", "histogram", "percentile"]

EXAMPLES = (
    "wirecall bench tcp://127.0.0.1:1234 Calculator.Add '{\"A\": 1, \"B\": 2}' -c 16 -d 5",
    "wirecall bench tcp://127.0.0.1:1234 Calculator.Add '{\"A\": 1, \"B\": 2}' -n 10000",
    "wirecall bench http://127.0.0.1:8080 Calculator.Add --data @args.json --rate 500 -d 10",
    "wirecall bench grpc://127.0.0.1:50051 helloworld.Greeter.SayHello '{\"name\": \"x\"}' "
    "--format json",
)
PERCENTILES = (0.5, 0.9, 0.95, 0.99, 0.999)


def add_parser(sub: Subparsers) -> None:
    b = add_command(sub, "bench", "load-test one method (status codes, latency, histogram)",
                    EXAMPLES, description=__doc__)
    b.add_argument("url", help="the server's address")
    b.add_argument("method", help="Service.Method (unary)")
    b.add_argument("params", nargs="?", default=None, help="JSON params (@FILE, @- read them)")
    b.add_argument("--data", default=None, metavar="JSON|@FILE|@-",
                   help="the params, as PARAMS (use one or the other)")
    b.add_argument("--concurrency", "-c", type=positive(int), default=16,
                   help="callers running at once")
    b.add_argument("--connections", type=positive(int), default=1,
                   help="connections the callers share")
    b.add_argument("--duration", "-d", type=positive(float), default=None,
                   help="seconds to run after the warm-up (None: 5 s, or until -n calls "
                        "when -n is given; both given: whichever ends first)")
    b.add_argument("--total", "-n", type=positive(int), default=None,
                   help="stop after this many calls (counted after the warm-up)")
    b.add_argument("--rate", type=positive(float), default=None,
                   help="calls per second for all callers together (default: as fast as "
                        "the callers go)")
    b.add_argument("--warmup", type=float, default=0.5,
                   help="seconds of calls before measuring (not counted; 0: none)")
    b.add_argument("--proto", default=None, metavar="FILE",
                   help="a .proto file for the method (grpc://; else reflection is asked)")
    b.add_argument("--format", choices=("text", "json"), default="text",
                   help="the report's format")
    b.add_argument("--json", action="store_const", const="json", dest="format",
                   help="same as --format json")
    client_options(b)
    b.set_defaults(handler=bench)


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values, nearest rank; 0.0 if empty."""
    if not sorted_values:
        return 0.0
    idx = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[idx]


@dataclass
class Stats:
    """What the callers record: latencies (s), calls per status, first messages per status."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    messages: dict[str, list[str]] = field(default_factory=dict)

    def add(self, latency: float, exc: RpcError | None) -> None:
        self.latencies.append(latency)
        name = "OK" if exc is None else exc.status.name
        self.statuses[name] = self.statuses.get(name, 0) + 1
        if exc is not None:
            first = self.messages.setdefault(name, [])
            if len(first) < 3 and exc.message not in first:
                first.append(exc.message)

    @property
    def errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s != "OK")


class _Run:
    """The shared state of one run: when to stop, the pacing, the stats."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stats = Stats()
        self.started = 0  # calls started after the warm-up
        self.stop = asyncio.Event()
        self.interrupted = False
        self.measure_from = 0.0
        self.stop_at = math.inf

    def take(self) -> bool:
        """May one more measured call start? (counts it)"""
        total = self.args.total
        if self.stop.is_set() or (total is not None and self.started >= total):
            return False
        self.started += 1
        return True


async def bench(args: argparse.Namespace) -> int:
    if args.params is not None and args.data is not None:
        raise CommandError("give the params once: as PARAMS or with --data, not both")
    if args.warmup < 0:
        raise CommandError(f"--warmup must be 0 or more, got {args.warmup}")
    call_params: Any = params(args.data if args.data is not None else args.params)
    try:
        client = await connect(args.url, timeout=args.connect_timeout,
                               pool_size=args.connections, **dial_options(args, args.url))
    except RpcError as exc:
        return print_rpc_error(exc)
    method, result_type = args.method.replace("/", "."), Any
    try:
        pm = await protojson.resolve(client, client.url.scheme, args.method, args.proto)
        if pm is not None:
            method, result_type = pm.name, pm.response
            call_params = [protojson.from_json(pm, call_params)]
            mode = pm.mode
        else:
            mode = await method_mode(client, method)
    except RpcError as exc:
        await client.close()
        return print_rpc_error(exc)
    if mode != "unary":
        await client.close()
        raise CommandError(f"bench calls unary methods; {method} is a {mode.replace('_', ' ')}")
    run = _Run(args)
    elapsed = await _drive(run, client, method, call_params, result_type)
    await client.close()
    _report(args, run, elapsed)
    if run.interrupted:
        return 130
    return 0 if run.stats.errors == 0 and run.stats.latencies else 1


async def _drive(run: _Run, client: Any, method: str, call_params: Any,
                 result_type: Any) -> float:
    """Warm up, then run the callers until the duration, -n or Ctrl-C; the measured time."""
    args = run.args
    loop = asyncio.get_running_loop()

    def interrupt() -> None:
        run.interrupted = True
        run.stop.set()

    with contextlib.suppress(NotImplementedError, RuntimeError):  # (not the main thread)
        loop.add_signal_handler(signal.SIGINT, interrupt)
    perf = time.perf_counter
    timeout = args.timeout
    # the client's fast path (client.call) where the params allow it, as an application calls
    reserved = {"timeout", "metadata", "result_type"}
    if isinstance(call_params, list):
        positional, named = tuple(call_params), {}
    elif isinstance(call_params, dict) and not (reserved & call_params.keys()):
        positional, named = (), dict(call_params)
    else:
        positional, named = None, {}
    fast = client.call

    async def call(m: str, p: Any, *, timeout: float | None, result_type: Any) -> Any:
        if positional is None:
            return await client.invoke(m, p, timeout=timeout, result_type=result_type)
        return await fast(m, *positional, timeout=timeout, result_type=result_type, **named)

    async def one(record: bool) -> None:
        t0 = perf()
        try:
            await call(method, call_params, timeout=timeout, result_type=result_type)
            exc = None
        except RpcError as e:
            exc = e
        if record:
            run.stats.add(perf() - t0, exc)

    async def warm() -> None:
        end = perf() + args.warmup
        while perf() < end and not run.stop.is_set():
            await one(False)

    async def worker() -> None:
        pace = args.rate
        while perf() < run.stop_at and run.take():
            if pace is not None:  # the n-th call starts at measure_from + n / rate
                delay = run.measure_from + (run.started - 1) / pace - perf()
                if delay > 0:
                    await asyncio.sleep(delay)
                    if perf() >= run.stop_at or run.stop.is_set():
                        break  # its turn came after the end
            await one(True)

    try:
        if args.warmup > 0:
            await asyncio.gather(*(warm() for _ in range(args.concurrency)))
        run.measure_from = perf()
        duration = args.duration if args.duration or args.total else 5.0
        if duration:
            run.stop_at = run.measure_from + duration
        progress = asyncio.ensure_future(_progress(run))
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        progress.cancel()
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
    return perf() - run.measure_from


async def _progress(run: _Run) -> None:
    """A line a second on stderr in text mode (stdout keeps only the report)."""
    last = 0
    while True:
        await asyncio.sleep(1.0)
        if run.args.format == "text":
            n = len(run.stats.latencies)
            print(f"  {n - last:8d} calls in the last second, {n} in all", file=sys.stderr)
            last = n


def histogram(sorted_values: list[float], buckets: int = 10) -> list[tuple[float, int]]:
    """(upper bound, count) for ``buckets`` equal-width buckets from min to max."""
    if not sorted_values:
        return []
    lo, hi = sorted_values[0], sorted_values[-1]
    width = (hi - lo) / buckets or 1e-9
    counts = [0] * buckets
    for v in sorted_values:
        counts[min(buckets - 1, int((v - lo) / width))] += 1
    return [(lo + width * (i + 1), c) for i, c in enumerate(counts)]


def _summary(args: argparse.Namespace, run: _Run, elapsed: float) -> dict[str, Any]:
    lat = sorted(run.stats.latencies)
    ms = 1e3
    return {
        "method": args.method,
        "url": args.url,
        "concurrency": args.concurrency,
        "connections": args.connections,
        "rate_limit": args.rate,
        "interrupted": run.interrupted,
        "duration_s": round(elapsed, 3),
        "calls": len(lat),
        "errors": run.stats.errors,
        "calls_per_s": round(len(lat) / elapsed, 1) if elapsed > 0 else 0.0,
        "statuses": dict(sorted(run.stats.statuses.items())),
        "first_errors": run.stats.messages,
        "latency_ms": {
            "min": round(lat[0] * ms, 3) if lat else 0.0,
            "mean": round(sum(lat) / len(lat) * ms, 3) if lat else 0.0,
            "max": round(lat[-1] * ms, 3) if lat else 0.0,
            **{f"p{q * 100:g}": round(percentile(lat, q) * ms, 3) for q in PERCENTILES},
        },
        "histogram_ms": [[round(b * ms, 3), c] for b, c in histogram(lat)],
    }


def _report(args: argparse.Namespace, run: _Run, elapsed: float) -> None:
    r = _summary(args, run, elapsed)
    if args.format == "json":
        print(json.dumps(r))
        return
    head = "interrupted: partial summary\n" if r["interrupted"] else ""
    print(f"{head}Summary: {r['method']} on {r['url']}")
    print(f"  calls:        {r['calls']} in {r['duration_s']} s "
          f"({r['concurrency']} callers, {r['connections']} connection(s))")
    ok = r["statuses"].get("OK", 0)
    print(f"  throughput:   {r['calls_per_s']:,.1f} calls/s ({ok} succeeded)")
    lm = r["latency_ms"]
    print(f"  latency (ms): min {lm['min']}  mean {lm['mean']}  max {lm['max']}")
    print("  percentiles:  " + "  ".join(f"{k} {v}" for k, v in lm.items()
                                        if k.startswith("p")))
    print("Status codes:")
    for st, n in r["statuses"].items():
        print(f"  [{st}] {n} calls")
        for msg in r["first_errors"].get(st, []):
            print(f"      {msg}")
    if r["histogram_ms"]:
        print("Latency histogram (ms):")
        top = max(c for _, c in r["histogram_ms"]) or 1
        for bound, c in r["histogram_ms"]:
            print(f"  {bound:10.3f} [{c:7d}] |{'∎' * round(40 * c / top)}")
    if r["calls"] and r["errors"] == r["calls"]:
        print("every call failed: the throughput above measures failures", file=sys.stderr)
