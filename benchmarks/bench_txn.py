"""Distributed transactions (#13): global tx/s and latency of a 2-branch saga with trivial
branches, on SQLite and on PostgreSQL, with 1 and 32 concurrent submitters, beside the store's
own limit measured in the same run (durable single-row commits/s at the same concurrency).

Processes: the coordinator (``wirecall txn serve``) and the trivial branch server
(``wirecall serve bench_txn:Trivial``) each in their own process; the submitters run here.
A saga is 4 persistence steps (create, 2 branch results, final status), so the target
">= 0.5x of the store limit per persistence step" reads: tx/s x 4 >= 0.5 x commits/s. The
coordinator writes a saga's answers with its final status when the branches answer quickly
(2 local transactions); the commits per saga it really made are printed beside (from
``Txn.Stats``; they include the poller's claims and group commits across sagas).
Interleaved rounds, medians. DTM publishes 900+ global tx/s on MySQL with 4 cores
(Aliyun 4c8g, ESSD); it is printed beside ours.

    python benchmarks/bench_txn.py --rounds 3 --seconds 3

Load-independent A/B of the coordinator's cost: ``--instr N`` runs the coordinator under
valgrind's callgrind (instrumentation switched on after a warm-up) for N sagas per store and
concurrency and prints instructions per saga (all its threads; the kernel excluded), for each
source tree given with ``--src`` (default: this checkout's ``src``)::

    python benchmarks/bench_txn.py --instr 200 --conc 1 --src /tmp/before/src src
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import wirecall  # noqa: E402
from support.postgres import PostgresCluster  # noqa: E402
from support.servers import free_port  # noqa: E402

STEPS = 4  # store writes per 2-branch saga


class Trivial:
    """Branches that do nothing (the coordinator's own cost)."""

    @wirecall.method(inline=True)
    def Do(self, gid: str, branch_id: str, op: str, payload: Any) -> None:
        return None

    @wirecall.method(inline=True)
    def Undo(self, gid: str, branch_id: str, op: str, payload: Any) -> None:
        return None


def spawn(argv: list[str]) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(ROOT / "benchmarks"), str(ROOT / "src")]))
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=env)
    assert p.stdout is not None
    for line in p.stdout:
        if line.startswith("listening on "):
            return p, line.split()[-1]
    raise RuntimeError(f"{argv} did not start")


# -- the stores' own limit ----------------------------------------------------------------


def sqlite_limit(path: str, conc: int, seconds: float) -> float:
    """Durable single-row commits/s (WAL, synchronous=FULL), ``conc`` writer threads."""
    init = sqlite3.connect(path, isolation_level=None)
    init.execute("PRAGMA journal_mode=WAL")
    init.execute("CREATE TABLE IF NOT EXISTS t (id TEXT PRIMARY KEY, v INTEGER)")
    init.close()
    count = [0] * conc
    stop = time.monotonic() + seconds

    def writer(i: int) -> None:
        c = sqlite3.connect(path, isolation_level=None, timeout=30)
        c.execute("PRAGMA synchronous=FULL")
        while time.monotonic() < stop:
            c.execute("BEGIN IMMEDIATE")
            c.execute("INSERT INTO t VALUES (?, 1)", (uuid.uuid4().hex,))
            c.execute("COMMIT")
            count[i] += 1
        c.close()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(conc)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(count) / (time.monotonic() - t0)


def pg_limit(dsn: str, conc: int, seconds: float) -> float:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE IF NOT EXISTS t (id TEXT PRIMARY KEY, v INTEGER)")
    count = [0] * conc
    stop = time.monotonic() + seconds

    def writer(i: int) -> None:
        with psycopg.connect(dsn, autocommit=True) as c:
            while time.monotonic() < stop:
                c.execute("INSERT INTO t VALUES (%s, 1)", (uuid.uuid4().hex,))
                count[i] += 1

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(conc)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(count) / (time.monotonic() - t0)


# -- the coordinator ------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def sagas(coord: str, branch: str, conc: int, seconds: float
                ) -> tuple[float, list[float], float]:
    """tx/s, latencies, and the store's commits per saga in the coordinator."""
    from wirecall.txn.client import TxnClient

    branches = [{"url": branch, "action": "Trivial.Do", "compensate": "Trivial.Undo"}] * 2
    lat: list[float] = []
    txn = await TxnClient.connect(coord, pool_size=4)
    commits0 = (await txn.call("Stats")).get("store", {}).get("commits", 0)
    stop = time.monotonic() + seconds

    async def submitter() -> None:
        while time.monotonic() < stop:
            t = time.perf_counter()
            r = await txn.saga(uuid.uuid4().hex, branches, wait=30)
            if r["status"] != "succeeded":
                raise RuntimeError(r)
            lat.append(time.perf_counter() - t)

    t0 = time.monotonic()
    await asyncio.gather(*(submitter() for _ in range(conc)))
    elapsed = time.monotonic() - t0
    commits = (await txn.call("Stats")).get("store", {}).get("commits", 0) - commits0
    await txn.close()
    return len(lat) / elapsed, lat, commits / max(1, len(lat))


async def n_sagas(coord: str, branch: str, conc: int, n: int) -> None:
    """Exactly ``n`` sagas, ``conc`` at a time."""
    from wirecall.txn.client import TxnClient

    branches = [{"url": branch, "action": "Trivial.Do", "compensate": "Trivial.Undo"}] * 2
    txn = await TxnClient.connect(coord, pool_size=4)
    left = [n]

    async def submitter() -> None:
        while left[0] > 0:
            left[0] -= 1
            r = await txn.saga(uuid.uuid4().hex, branches, wait=120)
            if r["status"] != "succeeded":
                raise RuntimeError(r)

    await asyncio.gather(*(submitter() for _ in range(conc)))
    await txn.close()


def instructions(src: str, store_url: str, branch: str, conc: int, n: int, tmp: Path) -> float:
    """Instructions per saga of a coordinator from ``src`` under callgrind."""
    out = tmp / f"callgrind.{uuid.uuid4().hex}"
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(ROOT / "benchmarks"), src]))
    p = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
         sys.executable, "-m", "wirecall.cli", "txn", "serve", "--store", store_url,
         "--listen", f"tcp://127.0.0.1:{free_port()}", "--name", f"instr-{uuid.uuid4().hex}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert p.stdout is not None
        coord = next(line.split()[-1] for line in p.stdout if line.startswith("listening on "))
        asyncio.run(n_sagas(coord, branch, conc, 20))  # warm: connections, caches
        subprocess.run(["callgrind_control", "-i", "on", str(p.pid)], check=True,
                       capture_output=True)
        asyncio.run(n_sagas(coord, branch, conc, n))
        subprocess.run(["callgrind_control", "-i", "off", str(p.pid)], check=True,
                       capture_output=True)
        subprocess.run(["callgrind_control", "-d", str(p.pid)], check=True, capture_output=True)
        total = 0
        for f in tmp.glob(f"{out.name}*"):
            for line in f.read_text(errors="replace").splitlines():
                if line.startswith("totals:"):
                    total += int(line.split()[1])
        return total / n
    finally:
        p.kill()
        p.wait()


def instr_main(a: argparse.Namespace, tmp: Path, branch: str, pg: PostgresCluster) -> None:
    print("| store | submitters | " + " | ".join(a.src) + " |")
    print("|---|---|" + "---|" * len(a.src))
    for store in ("sqlite", "postgres"):
        for conc in a.conc:
            cells = []
            for i, src in enumerate(a.src):
                url = (f"sqlite:///{tmp / f'instr-{store}-{conc}-{i}.db'}" if store == "sqlite"
                       else pg.create_database(f"instr_{conc}_{i}"))
                cells.append(f"{instructions(src, url, branch, conc, a.instr, tmp) / 1e6:.2f} M")
            print(f"| {store} | {conc} | " + " | ".join(cells) + " |", flush=True)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--conc", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--instr", type=int, default=0,
                    help="count the coordinator's instructions per saga over this many sagas")
    ap.add_argument("--src", nargs="+", default=[str(ROOT / "src")],
                    help="source trees to compare with --instr")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-txn-"))
    pg = PostgresCluster().start()
    procs: list[subprocess.Popen[str]] = []
    try:
        branch_p, branch = spawn([sys.executable, "-m", "wirecall.cli", "serve",
                                  "bench_txn:Trivial", "--listen", "tcp://127.0.0.1:0"])
        procs.append(branch_p)
        if a.instr:
            instr_main(a, tmp, branch, pg)
            return 0
        print(f"load average at start: {os.getloadavg()[0]:.1f}", flush=True)
        stores = {"sqlite": f"sqlite:///{tmp / 'txn.db'}",
                  "postgres": pg.create_database("bench_txn")}
        coords = {}
        pids = {}
        for name, url in stores.items():
            p, u = spawn([sys.executable, "-m", "wirecall.cli", "txn", "serve", "--store", url,
                          "--listen", f"tcp://127.0.0.1:{free_port()}", "--name", name])
            procs.append(p)
            coords[name] = u
            pids[name] = p.pid
        limit_dsn = pg.create_database("bench_limit")
        res: dict[tuple[str, int], dict[str, list[float]]] = {}
        for rnd in range(a.rounds):
            for store in stores:
                for conc in a.conc:
                    r = res.setdefault((store, conc), {"limit": [], "tps": [], "p50": [],
                                                      "p99": [], "cpu": [], "commits": []})
                    if store == "sqlite":
                        r["limit"].append(sqlite_limit(str(tmp / f"limit{rnd}.db"), conc,
                                                       a.seconds))
                    else:
                        r["limit"].append(pg_limit(limit_dsn, conc, a.seconds))
                    cpu0 = cpu_seconds(pids[store])
                    tps, lat, commits = asyncio.run(sagas(coords[store], branch, conc,
                                                          a.seconds))
                    r["commits"].append(commits)
                    r["cpu"].append((cpu_seconds(pids[store]) - cpu0) * 1000 / max(1, len(lat)))
                    r["tps"].append(tps)
                    r["p50"].append(pct(lat, 0.5))
                    r["p99"].append(pct(lat, 0.99))
                    print(f"round {rnd} {store:8} c={conc:<3} limit {r['limit'][-1]:8.0f} "
                          f"commits/s  saga {tps:7.0f} tx/s p50 {r['p50'][-1]:6.1f} ms "
                          f"p99 {r['p99'][-1]:6.1f} ms  coordinator CPU {r['cpu'][-1]:.2f} ms/tx "
                          f"commits/tx {commits:.2f}",
                          flush=True)
        print(f"\nmedians of {a.rounds} interleaved rounds, {a.seconds:g} s each; "
              f"{os.cpu_count()} cores shared with other work; load average at the end "
              f"{os.getloadavg()[0]:.1f}")
        print("| store | submitters | store limit (commits/s) | saga tx/s | p50 ms | p99 ms "
              "| coordinator CPU ms/tx | commits/tx | tx/s x 4 steps / limit | target >= 0.5 |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for (store, conc), r in res.items():
            lim, tps = statistics.median(r["limit"]), statistics.median(r["tps"])
            ratio = tps * STEPS / lim
            print(f"| {store} | {conc} | {lim:.0f} | {tps:.0f} | "
                  f"{statistics.median(r['p50']):.1f} | {statistics.median(r['p99']):.1f} | "
                  f"{statistics.median(r['cpu']):.2f} | "
                  f"{statistics.median(r['commits']):.2f} | "
                  f"{ratio:.2f} | {'met' if ratio >= 0.5 else 'NOT met'} |")
        print("| DTM (MySQL 5.7, Aliyun 4c8g ESSD, published) | - | - | 900+ | - | - | - | - | - "
              "| - |")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
