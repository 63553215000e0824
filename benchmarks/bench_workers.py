"""``wirecall serve --workers N``: calls/s with 64 in flight from several client processes,
1 worker vs N workers, on tcp:// and grpc://, one run, interleaved rounds.

CPUs are separated with ``taskset``: the supervisor and its workers run on ``--server-cpus``
(default: the first half of the cores), the client processes on ``--client-cpus`` (the other
half); N defaults to the number of server CPUs. On a 2-core machine that is one core each,
so N = 1 and nothing can scale: pass ``--server-cpus 0,1 --client-cpus 0,1 --workers 2`` to
run anyway (clients then compete with the workers for the same two cores; the table says
so).

    .venv/bin/python benchmarks/bench_workers.py --rounds 3 --seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
TARGET = "wirecall.tutorial.calculator:Calculator"


async def client_main(url: str, width: int, seconds: float, start_at: float) -> None:
    sys.path.insert(0, str(SRC))
    from wirecall.client import connect
    from wirecall.tutorial.calculator import Args

    c = await connect(url)
    await c.call("Calculator.Add", Args(0, 0))
    # every client calls during the same wall-clock window (start-up excluded); one that
    # is ready late says so
    late = max(0.0, time.time() - start_at)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    done = 0
    end = time.perf_counter() + seconds - late

    async def one(w: int) -> None:
        nonlocal done
        while time.perf_counter() < end:
            assert await c.call("Calculator.Add", Args(w, 1)) == w + 1
            done += 1

    await asyncio.gather(*(one(w) for w in range(width)))
    await c.close()
    print(done, f"{late:.3f}", flush=True)


def pinned(cpus: str, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", cpus, *cmd] if cpus and shutil.which("taskset") else cmd


def start_server(workers: int, cpus: str, share: str = "reuseport"
                 ) -> tuple[subprocess.Popen[str], list[str]]:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    env.pop("WIRECALL_WORKER", None)
    cmd = [sys.executable, "-m", "wirecall.cli", "serve", TARGET, "--listen",
           "tcp://127.0.0.1:0", "--listen", "grpc://127.0.0.1:0", "--workers", str(workers)]
    if workers == 1:  # one plain process (no supervisor), as without --workers
        cmd = cmd[:-2]
    elif share != "reuseport":  # (reuseport: the default for tcp:// and grpc://)
        cmd += ["--share", share]
    proc = subprocess.Popen(pinned(cpus, cmd), stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    urls: list[str] = []
    while len(urls) < 2:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("server did not start")
        if line.startswith("listening on "):
            urls.append(line.split()[-1])
    if workers > 1:
        while not proc.stdout.readline().startswith("workers:"):
            pass
    return proc, urls


def load(url: str, clients: int, seconds: float, cpus: str, margin: float = 5.0) -> float:
    """Calls/s of ``clients`` processes calling together for ``seconds``: they start
    calling at one wall-clock instant ``margin`` s from now (their start-up, seconds on a
    busy machine, is not counted)."""
    width = 64 // clients
    start_at = time.time() + margin
    procs = [subprocess.Popen(pinned(cpus, [sys.executable, __file__, "--client", url,
                                            "--width", str(width), "--seconds", str(seconds),
                                            "--start-at", str(start_at)]),
                              stdout=subprocess.PIPE, text=True) for _ in range(clients)]
    outs = [p.communicate(timeout=margin + seconds + 60)[0].split() for p in procs]
    late = max(float(o[-1]) for o in outs)
    if late > 0.05:
        print(f"  (a client started calling {late:.2f}s late: raise the margin)",
              file=sys.stderr)
    return sum(int(o[-2]) for o in outs) / seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--client")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--start-at", type=float, default=0.0)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=4)
    cores = os.cpu_count() or 1
    half = max(1, cores // 2)
    ap.add_argument("--server-cpus", default=f"0-{half - 1}")
    ap.add_argument("--client-cpus", default=f"{half}-{cores - 1}" if cores > 1 else "0")
    ap.add_argument("--workers", type=int, default=0, help="N (default: server CPUs)")
    ap.add_argument("--share", choices=("reuseport", "inherit", "both"), default="reuseport",
                    help="how the N workers share the listeners (both: a column each)")
    args = ap.parse_args()
    if args.client:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(client_main(args.client, args.width, args.seconds,
                                args.start_at or time.time()))
        return
    n = args.workers or len(os.sched_getaffinity(0) & _cpus(args.server_cpus))
    shared = bool(_cpus(args.server_cpus) & _cpus(args.client_cpus))
    shares = ["reuseport", "inherit"] if args.share == "both" else [args.share]
    configs = [(1, "-")] + [(n, sh) for sh in shares]
    results: dict[tuple[str, int, str], list[float]] = {}
    for r in range(args.rounds):
        for workers, share in configs[r % len(configs):] + configs[:r % len(configs)]:
            proc, urls = start_server(workers, args.server_cpus, share)
            try:
                time.sleep(0.5)
                for url in urls:
                    scheme = url.split(":", 1)[0]
                    v = load(url, args.clients, args.seconds, args.client_cpus)
                    results.setdefault((scheme, workers, share), []).append(v)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    print(f"\ncores: {os.cpu_count()}; server CPUs {args.server_cpus} (taskset), client CPUs "
          f"{args.client_cpus}{' (shared with the server)' if shared else ''}; "
          f"{args.clients} client processes x {64 // args.clients} in flight")
    cols = "".join(f" {n} workers ({sh}) | scaling |" for sh in shares)
    print(f"\n| wire (medians of {args.rounds} rounds, calls/s) | 1 worker |{cols} "
          "server cores |")
    print("|---|---|" + "---|---|" * len(shares) + "---|")
    for scheme in ("tcp", "grpc"):
        one = statistics.median(results[(scheme, 1, "-")])
        row = f"| {scheme}:// | {one:,.0f} |"
        for sh in shares:
            many = statistics.median(results[(scheme, n, sh)])
            row += f" {many:,.0f} | {many / one:.2f}x |"
        print(f"{row} {len(_cpus(args.server_cpus))} |")


def _cpus(spec: str) -> set[int]:
    out: set[int] = set()
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            out |= set(range(int(a), int(b) + 1))
        elif part:
            out.add(int(part))
    return out


if __name__ == "__main__":
    main()
