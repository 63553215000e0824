"""Observability's cost (issue #15): 64 calls in flight on tcp:// and grpc:// against a
server with nothing installed, then with metrics alone, tracing alone, the access log alone,
and all three; plus a do-nothing observer (what leaving the native fast lane costs by itself).

Workload: the tutorial's ``Calculator.Add`` (an inline handler). Each variant's server runs in
its own process (uvloop); each measurement runs ``peers.py``'s wirecall client in a fresh
process for ``--seconds`` (64 workers on one connection). Each round measures every variant
right after (or before) the server with nothing installed, on the same wire, and keeps the
ratio of the pair: the medians of those paired ratios are the figures (on a machine shared
with other jobs, absolute rates drift by 2-3x within minutes). Server CPU µs per call comes
from the server process's ``/proc/<pid>/stat``. Tracing exports through a BatchSpanProcessor to
an exporter that drops the spans, every call traced ("tracing") or 1% head-sampled
("tracing 1%") (``--exporter null``; ``console`` writes them as JSON to
/dev/null: what serialising costs); the access log writes JSON lines to a file.

    .venv/bin/python benchmarks/bench_observability.py [--rounds 5] [--seconds 2]
    .venv/bin/python benchmarks/bench_observability.py --instructions   # callgrind counts
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PY = sys.executable
VARIANTS = ("off", "noop observer", "metrics", "access log", "tracing", "tracing 1%", "all",
            "all, tracing 1%")
WIRES = ("tcp", "grpc")


# -- the server (one process per variant) ----------------------------------------------------


class NullExporter:
    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class NoopObserver:
    def call_started(self, method: str, ctx: Any, on_done: Any) -> Any:
        return on_done

    def stream_started(self, method: str, ctx: Any, on_done: Any) -> Any:
        return on_done


async def install(server: Any, variant: str, exporter: str, log_path: str) -> Any:
    """Put ``variant``'s observability on ``server``; the Observability (or None)."""
    from wirecall.observability.install import Observability

    obs = None
    provider: Any = False
    sample = 0.01 if variant.endswith("1%") else 1.0
    if variant.startswith(("tracing", "all")):
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        provider = TracerProvider()
        exp: Any = NullExporter() if exporter == "null" else ConsoleSpanExporter(
            out=open(os.devnull, "w"))  # noqa: SIM115  (lives as long as the server)
        provider.add_span_processor(BatchSpanProcessor(exp))
    if variant == "noop observer":
        server.add_observer(NoopObserver())
    elif variant != "off":
        metrics = variant in ("metrics", "all", "all, tracing 1%")
        access = "json" if variant in ("access log", "all", "all, tracing 1%") else None
        obs = Observability(
            server, admin="http://127.0.0.1:0" if metrics else None, metrics=metrics,
            tracing=provider, tracing_sample=sample, access_log=access,
            access_log_stream=open(log_path, "a") if access else None)  # noqa: SIM115
        await obs.start()
    return obs


async def serve(variant: str, exporter: str, log_path: str) -> None:
    from wirecall import Server
    from wirecall.tutorial.calculator import Calculator

    server = Server()
    server.register(Calculator())
    obs = await install(server, variant, exporter, log_path)
    for url in await server.start("tcp://127.0.0.1:0", "grpc://127.0.0.1:0"):
        print(f"listening on {url}", flush=True)
    await server.serve_forever(handle_signals=True)
    if obs is not None:
        await obs.close()


async def workload(variant: str, wire: str, calls: int, log_path: str) -> None:
    """Server and client in one process: ``calls`` calls, 64 at a time (callgrind mode)."""
    import wirecall
    from wirecall.tutorial.calculator import Calculator

    server = wirecall.Server()
    server.register(Calculator())
    obs = await install(server, variant, "null", log_path)
    [url] = await server.start(f"{wire}://127.0.0.1:0")
    await count_client(url, calls)  # (its warm-up: connection, lanes, caches, first spans)
    if obs is not None:
        await obs.close()
    await server.close()


def instructions(variant: str, wire: str, calls: int, log_path: str) -> int:
    r = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", PY, __file__,
         "workload", variant, wire, str(calls), log_path],
        capture_output=True, text=True, timeout=3600, cwd=HERE)
    m = re.search(r"Collected : (\d+)", r.stderr)
    if r.returncode != 0 or m is None:
        raise SystemExit(f"callgrind failed for {variant}/{wire}:\n{r.stderr[-2000:]}")
    return int(m.group(1))


async def count_client(url: str, calls: int) -> None:
    """64 warm-up calls, then ``calls`` calls 64 at a time (the ``--server-instructions``
    client, a process of its own)."""
    import wirecall
    from wirecall.tutorial.calculator import Args

    client = await wirecall.connect(url)
    for i in range(64):
        await client.call("Calculator.Add", Args(i, 1))
    sem = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        async with sem:
            assert await client.call("Calculator.Add", Args(i, 1)) == i + 1

    await asyncio.gather(*(one(i) for i in range(calls)))
    await client.close()


def server_instructions(variant: str, wire: str, calls: int, log_path: str) -> int:
    """Instructions the server process (alone, under callgrind) runs for 64 warm-up calls
    and ``calls`` more from a client in another process, start and shutdown included."""
    p = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", PY, __file__,
         "server", variant, "null", log_path],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE)
    assert p.stdout is not None
    url = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if line.startswith(f"listening on {wire}://"):
            url = line.split()[-1]
            break
        if not line and p.poll() is not None:
            break
    if url is None:
        p.kill()
        raise SystemExit(f"server {variant!r} did not start under callgrind")
    subprocess.run([PY, __file__, "countclient", url, str(calls)], check=True, timeout=3600,
                   cwd=HERE)
    p.terminate()
    _, err = p.communicate(timeout=600)
    m = re.search(r"Collected : (\d+)", err)
    if m is None:
        raise SystemExit(f"callgrind failed for {variant}/{wire}:\n{err[-2000:]}")
    return int(m.group(1))


def _instruction_table(count: Any, calls: dict[str, int], what: str) -> int:
    """Instructions per call of every variant on every wire (``count(variant, wire, n,
    log)``: callgrind's total for ``n`` calls; the difference from 0 calls is per call),
    printed as one table after ``what``."""
    tmp = Path(tempfile.mkdtemp(prefix="wirecall-bench-obs-"))
    log = str(tmp / "access.log")
    per: dict[tuple[str, str], float] = {}
    for wire in WIRES:
        for v in VARIANTS:
            base = count(v, wire, 0, log)
            full = count(v, wire, calls[wire], log)
            per[(v, wire)] = (full - base) / calls[wire]
            print(f"{v}/{wire}: {per[(v, wire)]:,.0f}", file=sys.stderr, flush=True)
    print(what + "\n")
    print("| server variant | " + " | ".join(
        f"{w}:// instructions/call | off/variant" for w in WIRES) + " |")
    print("|---" * (1 + 2 * len(WIRES)) + "|")
    for v in VARIANTS:
        cells = []
        for w in WIRES:
            cells += [f"{per[(v, w)]:,.0f}", f"{per[('off', w)] / per[(v, w)]:.2f}x"]
        print(f"| {v} | " + " | ".join(cells) + " |")
    return 0


def main_server_instructions(calls: dict[str, int]) -> int:
    """Instructions per call in the server process alone (callgrind; the client in its own
    process): the ratio a server-bound wall-clock run shows."""
    return _instruction_table(
        server_instructions, calls,
        f"Instructions per call in the server process alone (callgrind: load-independent; "
        f"kernel time excluded; the client in another process), 64 in flight, calls: "
        f"{ {w: calls[w] for w in WIRES} }. The off/variant "
        f"ratio is the throughput ratio a server-bound run would show.")


def main_instructions(calls: dict[str, int]) -> int:
    """Instructions per call (client + server in one process, callgrind): load-independent."""
    return _instruction_table(
        instructions, calls,
        f"Instructions per call, client + server in one process on one loop (callgrind: "
        f"load-independent; kernel time excluded), 64 in flight, calls: "
        f"{ {w: calls[w] for w in WIRES} }. The off/variant "
        f"ratio is the throughput ratio a CPU-bound run would show.")


def start_server(variant: str, exporter: str, log_path: str
                 ) -> tuple[subprocess.Popen[str], dict[str, str]]:
    p = subprocess.Popen([PY, __file__, "server", variant, exporter, log_path],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=HERE)
    assert p.stdout is not None
    urls: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(urls) < 2:
        line = p.stdout.readline()
        if line.startswith("listening on"):
            url = line.split()[-1]
            urls[url.split(":", 1)[0]] = url
        elif p.poll() is not None:
            break
    if len(urls) < 2:
        p.kill()
        raise RuntimeError(f"server {variant!r} did not start")
    return p, urls


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(url: str, seconds: float, pid: int) -> tuple[float, float]:
    """(calls/s, server CPU µs per call)."""
    cpu0 = cpu_seconds(pid)
    r = subprocess.run([PY, "peers.py", "client", "wirecall", url, "inflight64", str(seconds)],
                       capture_output=True, text=True, timeout=120, cwd=HERE)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    import json

    cpu = cpu_seconds(pid) - cpu0
    res = json.loads(r.stdout.strip().splitlines()[-1])
    return float(res["calls"]) / float(res["seconds"]), cpu / float(res["calls"]) * 1e6


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] in ("server", "workload", "countclient"):
        sys.path.insert(0, str(HERE))
        from peers import _uvloop_run

        if sys.argv[1] == "countclient":
            _uvloop_run(count_client(sys.argv[2], int(sys.argv[3])))
        elif sys.argv[1] == "server":
            _uvloop_run(serve(sys.argv[2], sys.argv[3], sys.argv[4]))
        else:
            _uvloop_run(workload(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]))
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--exporter", choices=("null", "console"), default="null")
    ap.add_argument("--instructions", action="store_true",
                    help="count instructions per call with callgrind instead (load-independent)")
    ap.add_argument("--server-instructions", action="store_true",
                    help="count the server process's instructions per call alone (callgrind)")
    ap.add_argument("--calls", type=int, default=3000, help="(--instructions) calls on tcp://")
    ap.add_argument("--grpc-calls", type=int, default=400, help="(--instructions) on grpc://")
    ap.add_argument("--variants", help="(--instructions) a |-separated subset (with off)")
    ap.add_argument("--wires", default="tcp,grpc",
                    help="(--instructions, --server-instructions) tcp, grpc or both")
    args = ap.parse_args()
    if args.variants:
        global VARIANTS
        wanted = [v.strip() for v in args.variants.split("|")]
        unknown = [v for v in wanted if v not in VARIANTS]
        if unknown or "off" not in wanted:
            ap.error(f"--variants: give 'off' and some of {VARIANTS}, not {unknown}")
        VARIANTS = tuple(wanted)
    global WIRES
    if args.instructions or args.server_instructions:  # (the wall-clock tables show both)
        WIRES = tuple(w for w in args.wires.split(",") if w)
        if not WIRES or set(WIRES) - {"tcp", "grpc"}:
            ap.error("--wires: tcp, grpc or tcp,grpc")
    if args.server_instructions:
        return main_server_instructions({"tcp": args.calls, "grpc": args.grpc_calls})
    if args.instructions:
        return main_instructions({"tcp": args.calls, "grpc": args.grpc_calls})
    tmp = Path(tempfile.mkdtemp(prefix="wirecall-bench-obs-"))
    procs: list[subprocess.Popen[str]] = []
    urls: dict[str, dict[str, str]] = {}
    pids: dict[str, int] = {}
    try:
        for v in VARIANTS:
            p, urls[v] = start_server(v, args.exporter, str(tmp / "access.log"))
            procs.append(p)
            pids[v] = p.pid
        keys = [(v, w) for w in WIRES for v in VARIANTS]
        results: dict[tuple[str, str], list[float]] = {k: [] for k in keys}
        cpu: dict[tuple[str, str], list[float]] = {k: [] for k in keys}
        ratios: dict[tuple[str, str], list[float]] = {k: [] for k in keys}
        variants = [k for k in keys if k[0] != "off"]
        for rnd in range(args.rounds):
            # each variant measured right after (or before, on odd rounds) "off" on the same
            # wire: the ratio of the pair cancels most of the drift of a shared machine
            order = variants[rnd % len(variants):] + variants[: rnd % len(variants)]
            for v, w in order:
                pair = [("off", w), (v, w)] if rnd % 2 == 0 else [(v, w), ("off", w)]
                got = {}
                for key in pair:
                    rate, us = measure(urls[key[0]][w], args.seconds, pids[key[0]])
                    results[key].append(rate)
                    cpu[key].append(us)
                    got[key[0]] = rate
                ratios[(v, w)].append(got[v] / got["off"])
            print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    med = {k: statistics.median(v) for k, v in results.items()}
    mcpu = {k: statistics.median(v) for k, v in cpu.items()}
    mratio = {k: statistics.median(v) if v else 1.0 for k, v in ratios.items()}
    print(f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, "
          f"{os.cpu_count()} cores (shared with other jobs), Python "
          f"{platform.python_version()}, uvloop, {args.rounds} rounds of paired runs "
          f"(off and the variant back to back) x {args.seconds:g}s, medians; tracing "
          f"exporter: {args.exporter}.\n")
    print("| server variant | tcp:// calls/s | vs off (paired) | server CPU µs/call "
          "| grpc:// calls/s | vs off (paired) | server CPU µs/call |")
    print("|---|---|---|---|---|---|---|")
    for v in VARIANTS:
        cells = []
        for w in WIRES:
            cells += [f"{med[(v, w)]:,.0f}", f"{mratio[(v, w)]:.2f}x", f"{mcpu[(v, w)]:.1f}"]
        print(f"| {v} | " + " | ".join(cells) + " |")
    print("\n| target | tcp:// | grpc:// | wanted | met |")
    print("|---|---|---|---|---|")
    for v, want in (("metrics", 0.9), ("all", 0.75), ("all, tracing 1%", 0.75)):
        if v not in VARIANTS:
            continue
        r = [mratio[(v, w)] for w in WIRES]
        ok = "yes" if min(r) >= want else "**no**"
        print(f"| {v} vs off | {r[0]:.2f}x | {r[1]:.2f}x | >= {want}x | {ok} |")
    spread = {k: (min(v), max(v)) for k, v in ratios.items() if v}
    print("\nper-round min..max of the paired ratio: " + "; ".join(
        f"{v}/{w} {lo:.2f}..{hi:.2f}" for (v, w), (lo, hi) in spread.items()))
    return 0


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    sys.exit(main())
