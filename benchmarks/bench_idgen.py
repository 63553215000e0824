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

``--instr-ab BEFORE AFTER`` counts instructions (valgrind callgrind, load-independent) per
``Snowflake.next``, per ``SnowflakeIdGen.Next`` handler call and per ``IdGen.Next`` call over
tcp:// (client + server in one process, 64 in flight) for two source trees.
``--boundaries`` measures call latency at time-unit, reservation and segment boundaries.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
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


async def client_run(url: str, mode: str, seconds: float, inflight: int,
                     n: int) -> tuple[float, int, float]:
    """(IDs/s, calls made, this process's CPU seconds) over ``seconds``."""
    sys.path.insert(0, str(ROOT / "src"))
    from wirecall.client import Client
    from wirecall.idgen.client import IdClient

    count = 0
    stop = time.perf_counter() + seconds
    async with Client(url) as c:
        await c.call("IdGen.Next", "")
        if mode == "idclient":
            ids = IdClient(c, prefetch=n, low_water=0.5)
            t0, cpu0 = time.perf_counter(), time.process_time()
            while time.perf_counter() < stop:
                for _ in range(1000):
                    await ids.next()
                count += 1000
            return (count / (time.perf_counter() - t0), count // n,
                    time.process_time() - cpu0)

        async def worker() -> None:
            nonlocal count
            while time.perf_counter() < stop:
                if mode == "next":
                    await c.call("IdGen.Next", "")
                    count += 1
                else:
                    got = await c.call("IdGen.Batch", "", n)
                    count += len(got)  # (not `count += len(await ...)`: a lost update)

        t0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(inflight)))
        return (count / (time.perf_counter() - t0), count // n, time.process_time() - cpu0)


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: per network row, one per round: (server CPU us per call, client CPU us per call, IDs per
#: call)
CPU: dict[str, list[tuple[float, float, int]]] = {}


def measure_client(url: str, mode: str, seconds: float, inflight: int, n: int,
                   label: str = "", server_pid: int = 0) -> float:
    before = proc_cpu(server_pid) if server_pid else 0.0
    r = subprocess.run([PY, __file__, "--client", url, mode, str(seconds), str(inflight),
                        str(n)], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    out = json.loads(r.stdout.strip().splitlines()[-1])
    if server_pid and out["calls"]:
        # the server's CPU over the whole client run (its dial and first call included:
        # a few ms against seconds of calls)
        server = proc_cpu(server_pid) - before
        CPU.setdefault(label, []).append((server / out["calls"] * 1e6,
                                          out["cpu"] / out["calls"] * 1e6, n))
    return float(out["rate"])


# -- latency at boundaries -------------------------------------------------------------------

def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def latency_row(name: str, at: list[float], rest: list[float]) -> str:
    def ms(v: float) -> str:
        return f"{v * 1e3:.3f}"
    return (f"| {name} | {len(at):,} | {ms(pct(at, 0.5))} | {ms(pct(at, 0.99))} | "
            f"{ms(max(at, default=float('nan')))} | {len(rest):,} | {ms(pct(rest, 0.5))} | "
            f"{ms(pct(rest, 0.99))} | {ms(max(rest, default=float('nan')))} |")


async def timed_nexts(url: str, tag: str, seconds: float,
                      refused: list[float] | None = None) -> list[tuple[float, float, int]]:
    """Sequential ``IdGen.Next`` calls (one in flight): (sent at, latency, id) each; the
    send times of refused calls (UNAVAILABLE) go to ``refused``."""
    from wirecall.client import Client
    from wirecall.errors import Unavailable

    out: list[tuple[float, float, int]] = []
    async with Client(url) as c:
        await c.call("IdGen.Next", tag)  # the dial
        pc = time.perf_counter
        stop = pc() + seconds
        while (t0 := pc()) < stop:
            try:
                v = await c.call("IdGen.Next", tag)
            except Unavailable:
                if refused is None:
                    raise
                refused.append(t0)
                await asyncio.sleep(0.001)
                continue
            out.append((t0, pc() - t0, v))
    return out


async def boundaries(seconds: float, steps: list[int], pg: bool) -> list[str]:
    """Calls at a boundary against the others, node and client on one loop over tcp://:
    reservation renewals of a leased worker id (etcd, ttl 2 s: one every 500 ms; a call is
    at one if sent while it ran; a node whose lease renewal is late refuses at the fence,
    counted) and segment switches (a fixed step: the first ID of each segment; SQLite, and
    PostgreSQL with ``--pg``; one row per step in ``steps``). A new time unit is not a row
    here: which call gets the first ID of a millisecond depends on its own latency (a call
    delayed for any reason lands in a new unit), so its cost is counted in instructions
    instead (``--instr-ab``: ``Snowflake.next`` with a new unit at every call)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from wirecall.idgen.node import IdNode, NodeConfig

    rows: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="wirecall-bench-idgen-"))
    # reservation renewals of a leased worker id (etcd)
    try:
        from support.etcd import EtcdServer
        etcd: Any = EtcdServer().start()
    except Exception as exc:  # no etcd binary here: say so in the table
        rows.append(f"| lease renewal: not measured ({exc}) | | | | | | | | |")
        etcd = None
    if etcd is not None:
        try:
            node = IdNode(NodeConfig(listen=["tcp://127.0.0.1:0"], registry=etcd.url,
                                     ttl=2.0, data_dir=tmp, prefix="/bench/idgen"))
            (url,) = await node.start()
            spans: list[tuple[float, float]] = []
            lease = node.lease
            assert lease is not None
            reserve = lease.reserve

            async def timed_reserve() -> bool:
                t0 = time.perf_counter()
                try:
                    return await reserve()
                finally:
                    spans.append((t0, time.perf_counter()))
            lease.reserve = timed_reserve  # type: ignore[method-assign]
            refused: list[float] = []
            try:
                calls = await timed_nexts(url, "", seconds, refused)
            finally:
                await node.close()
            # by send time only (a call is "at" a renewal if sent while one ran): classing
            # by overlap would pick the slow calls, whatever slowed them
            at, rest = [], []
            for t0, dt, _ in calls[1:]:
                (at if any(a <= t0 <= b for a, b in spans) else rest).append(dt)
            rw = sorted(b - a for a, b in spans)
            rows.append(latency_row(
                f"lease renewal (etcd, ttl 2 s; {len(spans)} renewals, each "
                f"{pct(rw, 0.5) * 1e3:.1f} ms median; {len(refused)} calls refused at the "
                "fence): calls sent during one", at, rest))
        finally:
            etcd.stop()
    # segment switches, fixed step
    stores = [("SQLite", f"sqlite:///{tmp / 'seg.db'}")]
    cluster: Any = None
    if pg:
        from support.postgres import PostgresCluster
        cluster = PostgresCluster().start()
        stores.append(("PostgreSQL", cluster.create_database("bench_idgen")))
    try:
        for (label, dsn), step in itertools.product(stores, steps):
            tag = f"b{step}"
            node = IdNode(NodeConfig(listen=["tcp://127.0.0.1:0"], store=dsn,
                                     tags=[(tag, 1, step)],
                                     segment_options={"max_step": step}))
            (url,) = await node.start()
            try:
                calls = await timed_nexts(url, tag, seconds)
            finally:
                a = node.allocator
                assert a is not None
                fetches, stalls = a.fetches, a.stalls
                await node.close()
            base = calls[0][2]  # the first ID of the first segment (a fresh tag)
            at = [dt for _, dt, v in calls[1:] if (v - base) % step == 0]
            rest = [dt for _, dt, v in calls[1:] if (v - base) % step]
            rows.append(latency_row(f"segment switch ({label}, step {step}; {fetches} "
                                    f"fetches, {stalls} stalls)", at, rest))
    finally:
        if cluster is not None:
            cluster.stop()
    return rows


def run_boundaries(seconds: float, steps: list[int], pg: bool) -> None:
    try:
        import uvloop
        rows = uvloop.run(boundaries(seconds, steps, pg))
    except ImportError:
        rows = asyncio.run(boundaries(seconds, steps, pg))
    print(f"# IdGen.Next latency at boundaries: sequential calls for {seconds:g} s per row, "
          f"node and client on one loop over tcp://; ms; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("| boundary | calls at it | p50 | p99 | max | other calls | p50 | p99 | max |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(r)


# -- instruction counts (callgrind) ---------------------------------------------------------

INSTR_KINDS = ("Snowflake.next", "Snowflake.next, a new time unit at every call",
               "SnowflakeIdGen.Next", "IdGen.Next over tcp://, 64 in flight",
               "IdGen.Next over tcp://, 1 in flight")


async def instr_workload(kind: str, n: int) -> None:
    from wirecall.client import Client
    from wirecall.idgen.service import SnowflakeIdGen, register
    from wirecall.idgen.snowflake import Snowflake
    from wirecall.server import Server

    # a C-level clock that moves 1 ms every 64 readings (or at every reading): the same mix
    # of in-unit and new-unit calls in every run (the real clock under valgrind would turn
    # units ~50x more often than at full speed)
    per_unit = 1 if kind == INSTR_KINDS[1] else 64
    clock = itertools.count(time.time_ns(), 1_000_000 // per_unit).__next__
    svc = SnowflakeIdGen(Snowflake(1, clock=clock))
    if kind in INSTR_KINDS[:2]:
        f = svc.generator.next
        for _ in range(n):
            f()
        return
    if kind == INSTR_KINDS[2]:
        g = svc.Next
        for _ in range(n):
            g("")
        return
    server = Server()
    register(server, svc)
    (url,) = await server.start("tcp://127.0.0.1:0")
    async with Client(url) as c:
        await c.call("IdGen.Next", "")  # warm: connection, fast lane

        async def worker(k: int) -> None:
            for _ in range(k):
                await c.call("IdGen.Next", "")
        if kind == INSTR_KINDS[4]:
            await worker(n)
        else:
            await asyncio.gather(*(worker(n // 64) for _ in range(64)))
    await server.close()


def instr_count(tree: Path, kind: str, n: int) -> int:
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    r = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                        PY, __file__, "--instr-run", kind, str(n)],
                       capture_output=True, text=True, env=env, timeout=1800)
    m = re.search(r"Collected : (\d+)", r.stderr)
    if r.returncode != 0 or m is None:
        raise SystemExit(f"callgrind failed for {tree}:\n{r.stderr[-2000:]}")
    return int(m.group(1))


def instr_ab(before: Path, after: Path, n: int, only: str = "") -> None:
    print(f"# instructions per ID (callgrind; {n} IDs minus 0, same process shape)\n")
    print("| path | before | after | after/before |")
    print("|---|---:|---:|---:|")
    for kind in INSTR_KINDS:
        if only not in kind:
            continue
        k = n if "tcp" in kind else n * 20
        per = [(instr_count(t.resolve(), kind, k) - instr_count(t.resolve(), kind, 0)) / k
               for t in (before, after)]
        print(f"| {kind} | {per[0]:,.0f} | {per[1]:,.0f} | {per[1] / per[0]:.3f}x |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--client", nargs=5, metavar=("URL", "MODE", "S", "INFLIGHT", "N"))
    ap.add_argument("--boundaries", action="store_true",
                    help="latency at time-unit, lease-renewal and segment boundaries")
    ap.add_argument("--steps", default="100,1000",
                    help="--boundaries: fixed segment steps, comma-separated")
    ap.add_argument("--pg", action="store_true", help="--boundaries: PostgreSQL too")
    ap.add_argument("--instr-ab", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    ap.add_argument("--instr-calls", type=int, default=6400)
    ap.add_argument("--instr-only", default="", help="--instr-ab: the paths naming this")
    ap.add_argument("--instr-run", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.instr_run:
        kind, k = args.instr_run
        try:
            import uvloop
            uvloop.run(instr_workload(kind, int(k)))
        except ImportError:
            asyncio.run(instr_workload(kind, int(k)))
        return
    if args.instr_ab:
        instr_ab(*args.instr_ab, args.instr_calls, args.instr_only)
        return
    if args.boundaries:
        run_boundaries(args.seconds, [int(x) for x in args.steps.split(",")], args.pg)
        return
    if args.client:
        url, mode, s, inflight, n = args.client
        try:
            import uvloop
            rate, calls, cpu = uvloop.run(client_run(url, mode, float(s), int(inflight),
                                                     int(n)))
        except ImportError:
            rate, calls, cpu = asyncio.run(client_run(url, mode, float(s), int(inflight),
                                                      int(n)))
        print(json.dumps({"rate": rate, "calls": calls, "cpu": cpu}))
        return

    node, url = start_node(tempfile.mkdtemp(prefix="wirecall-bench-idgen-"))
    results: dict[str, list[float]] = {}
    nets = [
        ("IdGen.Next over tcp://, 64 in flight (calls/s = IDs/s)", "next", 64, 1),
        ("IdGen.Next over tcp://, 1 in flight (calls/s)", "next", 1, 1),
        ("IdGen.Batch(10000) over tcp://, 4 in flight (IDs/s)", "batch", 4, 10_000),
        ("IdClient.next over tcp:// (prefetch 10000; IDs/s)", "idclient", 1, 10_000),
    ]
    loads = [os.getloadavg()[0]]
    try:
        for rnd in range(args.rounds):
            jobs: list[tuple[str, Callable[[], Any]]] = []
            for threads in (1, args.threads):
                jobs.append((f"in-process {threads}",
                             lambda t=threads: in_process(args.seconds, t)))
            for label, mode, inflight, n in nets:
                jobs.append((label, lambda m=mode, i=inflight, k=n, lb=label:
                             {lb: measure_client(url, m, args.seconds, i, k, lb,
                                                 node.pid)}))
            k = rnd % len(jobs)
            for _, job in jobs[k:] + jobs[:k]:  # rotating order
                for name, v in job().items():
                    results.setdefault(name, []).append(v)
                loads.append(os.getloadavg()[0])
    finally:
        node.terminate()
        node.wait(10)
    report(results, args, loads)


def report(results: dict[str, list[float]], args: argparse.Namespace,
           loads: list[float]) -> None:
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"# bench_idgen: {args.rounds} interleaved rounds x {args.seconds}s, medians; "
          f"{os.cpu_count()} CPUs (shared with other work while measured); 1-min load "
          f"average {min(loads):.2f}-{max(loads):.2f} during the run\n")
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
    print("\nCPU per call (medians over rounds; the server process from /proc, the client "
          "from its process_time): what the machine's load does not change much, and the "
          "IDs/s those costs would allow with the server and the client on a core each:\n")
    print("| network row | server CPU us/call | client CPU us/call | "
          "IDs/s at one core each |")
    print("|---|---:|---:|---:|")
    for label, rows in CPU.items():
        sv = statistics.median(p[0] for p in rows)
        cl = statistics.median(p[1] for p in rows)
        # the slower side sets the pace
        print(f"| {label} | {sv:.1f} | {cl:.1f} | {rows[0][2] * 1e6 / max(sv, cl):,.0f} |")


if __name__ == "__main__":
    main()
