"""Seeded crash runs: kill -9 the coordinator, a branch server or a submitter at a persistence
point chosen by the seed, restart it, let recovery run, then check that every global
transaction is terminal, no branch operation was applied twice and the bank's total balance is
unchanged (the bank-transfer invariant).

The three roles are real processes talking over TCP on 127.0.0.1. They are forked from this
(pre-imported) process, so a restart costs milliseconds rather than an interpreter start-up:
that is what makes a thousand runs fit in CI. The crash is ``os._exit(137)`` at the N-th pass
through a named crash point (:mod:`wirecall.txn.crash`), i.e. a kill -9 at an exact step.

One run (seed): pick the victim and its (point, N); start a fresh victim armed with it; fork a
submitter that starts one saga, one TCC and one 2-phase message transfer between random
accounts (random amounts, some larger than the balance: business failures); wait for the
submitter; restart whatever died, unarmed; wait until the store shows every transaction
terminal; check the invariants. Run as a script for the long soak::

    python tests/txn/crash_harness.py --runs 5000 --seed 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run as a script: make ``support`` importable
    sys.path.insert(0, str(HERE.parent))

# imported once here, so a forked process starts without importing anything
import support.txn_bank  # noqa: E402, F401
import wirecall.server  # noqa: E402
import wirecall.txn.client  # noqa: E402
import wirecall.txn.store.sqlite  # noqa: E402, F401
from support.servers import free_port  # noqa: E402
from support.txn_bank import init_bank, open_db  # noqa: E402
from wirecall.errors import RpcError  # noqa: E402
from wirecall.transport.base import load_transport  # noqa: E402
from wirecall.txn import crash  # noqa: E402
from wirecall.txn.barrier import msg_local  # noqa: E402

load_transport("tcp")


async def _warm_up() -> None:
    """Accept and dial one connection, so lazily loaded modules (codecs...) are loaded
    before any fork: a forked server answers its first call at once."""
    from wirecall.client import connect
    from wirecall.server import Server

    server = Server()
    urls = await server.start("tcp://127.0.0.1:0")
    client = await connect(urls[0])
    await client.close()
    await server.close()


asyncio.run(_warm_up())

ACCOUNTS = {f"a{i}": 1000 for i in range(6)}
TOTAL = sum(ACCOUNTS.values())
OPTS = {"retry_interval": 0.02, "max_retry_interval": 0.2, "branch_timeout": 1.0}

COORDINATOR_POINTS = list(crash.POINTS)
BANK_POINTS = ["bank.before_commit", "bank.after_commit"]
SUBMITTER_POINTS = ["sub.after_prepare", "sub.after_local", "sub.after_register",
                    "sub.after_try", "sub.before_submit"]


def _child(fn: Any, *args: Any) -> int:
    """Fork; the child runs ``fn(*args)`` and always leaves by ``os._exit``."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 0
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            fn(*args)
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        os._exit(code)
    return pid


def _wait_port(port: int, pid: int, timeout: float = 10.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            raise RuntimeError(f"process {pid} exited before listening on {port}")
        time.sleep(0.005)
    raise RuntimeError(f"nothing listening on {port}")


def _serve_bank(port: int, db: str, spec: str) -> None:
    os.environ["TXN_BANK_DB"] = db
    crash.arm(spec)
    from support.txn_bank import Bank
    from wirecall.server import Server

    async def main() -> None:
        server = Server()
        server.register(Bank())
        await server.start(f"tcp://127.0.0.1:{port}")
        await asyncio.Event().wait()

    asyncio.run(main())


def _serve_coordinator(port: int, store: str, spec: str) -> None:
    crash.arm(spec)
    from wirecall.txn import serve

    async def main() -> None:
        await serve(f"sqlite:///{store}", (f"tcp://127.0.0.1:{port}",), name="crash-coord",
                    lease=1.0, poll_interval=0.03)
        await asyncio.Event().wait()

    asyncio.run(main())


def _submit(coord: str, bank: str, db: str, seed: int, spec: str) -> None:
    crash.arm(spec)
    from wirecall.txn.client import TxnClient

    rnd = random.Random(seed)
    accts = list(ACCOUNTS)

    def pick() -> tuple[str, str, int]:
        src, dst = rnd.sample(accts, 2)
        return src, dst, rnd.choice([rnd.randint(1, 300), rnd.randint(1, 300), 5000])

    async def saga(txn: TxnClient) -> None:
        src, dst, n = pick()
        await txn.saga(f"s{seed}", [
            {"url": bank, "action": "Bank.TransOut", "compensate": "Bank.TransOutCompensate",
             "payload": {"account": src, "amount": n}},
            {"url": bank, "action": "Bank.TransIn", "compensate": "Bank.TransInCompensate",
             "payload": {"account": dst, "amount": n}}], OPTS)

    async def tcc(txn: TxnClient) -> None:
        src, dst, n = pick()
        async with txn.tcc(f"t{seed}", dict(OPTS, timeout=0.25)) as t:
            crash.crash_point("sub.after_register")
            await t.branch("out", bank, "Bank.TryOut", "Bank.ConfirmOut", "Bank.CancelOut",
                           {"account": src, "amount": n})
            crash.crash_point("sub.after_try")
            await t.branch("in", bank, "Bank.TryIn", "Bank.ConfirmIn", "Bank.CancelIn",
                           {"account": dst, "amount": n})
            crash.crash_point("sub.before_submit")

    async def msg(txn: TxnClient) -> None:
        src, dst, n = pick()
        g = f"m{seed}"
        m = txn.msg(g, [{"url": bank, "action": "Bank.TransIn",
                         "payload": {"account": dst, "amount": n}}],
                    query_prepared={"url": bank, "method": "Bank.QueryPrepared"},
                    options=dict(OPTS, timeout=0.15))
        await m.prepare()
        crash.crash_point("sub.after_prepare")
        conn = open_db(db)
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            from support.txn_bank import Bank

            msg_local(cur, g, lambda c: Bank._adjust(c, src, -n))
        except RpcError:
            cur.execute("ROLLBACK")
            await m.abort()
            return
        cur.execute("COMMIT")
        crash.crash_point("sub.after_local")
        await m.submit()

    async def main() -> None:
        try:
            txn = await TxnClient.connect(coord, timeout=2)
        except (RpcError, OSError):  # the coordinator is down (being restarted): nothing begun
            return
        async with txn:
            results = await asyncio.gather(saga(txn), tcc(txn), msg(txn), return_exceptions=True)
            for r in results:  # business failures and a dying peer are expected; others not
                if isinstance(r, BaseException) and not isinstance(r, RpcError | OSError):
                    raise r

    asyncio.run(main())


@dataclass
class World:
    """The long-lived processes and files of a series of runs."""

    tmp: Path
    bank_port: int = field(default_factory=free_port)
    coord_port: int = field(default_factory=free_port)
    bank_pid: int = 0
    coord_pid: int = 0
    runs: int = 0
    crashed_at: dict[str, int] = field(default_factory=dict)  # crash point -> kills

    @property
    def db(self) -> str:
        return str(self.tmp / "bank.db")

    @property
    def store(self) -> str:
        return str(self.tmp / "txn.db")

    def start(self) -> World:
        init_bank(self.db, ACCOUNTS)
        self.restart_bank("")
        self.restart_coordinator("")
        return self

    def _kill(self, pid: int) -> None:
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)

    def restart_bank(self, spec: str) -> None:
        self._kill(self.bank_pid)
        self.bank_pid = _child(_serve_bank, self.bank_port, self.db, spec)
        _wait_port(self.bank_port, self.bank_pid)

    def restart_coordinator(self, spec: str) -> None:
        self._kill(self.coord_pid)
        self.coord_pid = _child(_serve_coordinator, self.coord_port, self.store, spec)
        _wait_port(self.coord_port, self.coord_pid)

    def close(self) -> None:
        self._kill(self.bank_pid)
        self._kill(self.coord_pid)

    def _reap(self, pid: int) -> int | None:
        """The exit code if ``pid`` has exited (and is now reaped), else None."""
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return -1
        return os.waitstatus_to_exitcode(status) if done else None

    def run(self, seed: int, timeout: float = 30.0) -> str:
        rnd = random.Random(seed)
        victim = rnd.choice(["coordinator", "bank", "submitter"])
        points = {"coordinator": COORDINATOR_POINTS, "bank": BANK_POINTS,
                  "submitter": SUBMITTER_POINTS}[victim]
        spec = f"{rnd.choice(points)}:{1 if victim == 'submitter' else rnd.randint(1, 4)}"
        if victim == "coordinator":
            self.restart_coordinator(spec)
        elif victim == "bank":
            self.restart_bank(spec)
        sub = _child(_submit, f"tcp://127.0.0.1:{self.coord_port}",
                     f"tcp://127.0.0.1:{self.bank_port}", self.db, seed,
                     spec if victim == "submitter" else "")
        deadline = time.monotonic() + timeout
        sub_done = False
        point = spec.split(":")[0]
        while time.monotonic() < deadline:
            if not sub_done:
                code = self._reap(sub)
                sub_done = code is not None
                if code == 137:
                    self.crashed_at[point] = self.crashed_at.get(point, 0) + 1
                elif code not in (None, 0):
                    raise AssertionError(f"seed {seed}: the submitter failed (exit {code})")
            if self._reap(self.coord_pid) is not None:
                self.crashed_at[point] = self.crashed_at.get(point, 0) + 1
                self.restart_coordinator("")
            if self._reap(self.bank_pid) is not None:
                self.crashed_at[point] = self.crashed_at.get(point, 0) + 1
                self.restart_bank("")
            if sub_done and self._all_terminal():
                break
            time.sleep(0.01)
        else:
            self._kill(sub)
            raise AssertionError(f"seed {seed} ({victim} {spec}): not terminal in {timeout}s: "
                                 f"{self._open()}")
        self.check(seed, f"{victim} {spec}")
        self.runs += 1
        return f"{victim} {spec}"

    def _open(self) -> list[tuple[str, str]]:
        if not Path(self.store).exists():
            return []
        with contextlib.closing(sqlite3.connect(self.store, timeout=10)) as c:
            return c.execute("SELECT gid, status FROM txn_global WHERE status NOT IN "
                             "('succeeded', 'failed')").fetchall()

    def _all_terminal(self) -> bool:
        return not self._open()

    def check(self, seed: int, what: str) -> None:
        with contextlib.closing(open_db(self.db)) as c:
            total, trading = c.execute("SELECT SUM(balance), SUM(trading) FROM account").fetchone()
            dups = c.execute("SELECT gid, branch_id, op, COUNT(*) FROM applied "
                             "GROUP BY gid, branch_id, op HAVING COUNT(*) > 1").fetchall()
        assert not dups, f"seed {seed} ({what}): applied twice: {dups}"
        assert total == TOTAL, f"seed {seed} ({what}): total {total} != {TOTAL}"
        assert trading == 0, f"seed {seed} ({what}): {trading} still held by TCC"

    def summary(self) -> dict[str, Any]:
        with contextlib.closing(sqlite3.connect(self.store, timeout=10)) as c:
            by = dict(c.execute("SELECT status, COUNT(*) FROM txn_global GROUP BY status")
                      .fetchall())
        return {"runs": self.runs, "crashed_at": dict(sorted(self.crashed_at.items())),
                "by_status": by}


def run_series(seeds: Sequence[int], tmp: Path | None = None,
               ports: tuple[int, int] | None = None) -> dict[str, Any]:
    world = World(Path(tmp or tempfile.mkdtemp(prefix="wirecall-crash-")))
    if ports is not None:
        world.bank_port, world.coord_port = ports
    world.start()
    try:
        for seed in seeds:
            world.run(seed)
        return world.summary()
    finally:
        world.close()


def _distinct_ports(n: int) -> list[int]:
    """``n`` free ports, all different (held open together while they are picked)."""
    import socket

    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _worker(seeds: Sequence[int], tmp: Path, ports: tuple[int, int], out: Path) -> None:
    """A forked worker: its own world (bank, coordinator, files, ports), its slice of seeds;
    the summary (or the failure) written to ``out`` as JSON."""

    def stop(*_: Any) -> None:
        raise SystemExit(1)  # unwinds through run_series: its world's processes are killed

    signal.signal(signal.SIGTERM, stop)
    try:
        result: dict[str, Any] = run_series(seeds, tmp, ports)
    except BaseException as exc:
        import traceback

        result = {"error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc()}
    out.write_text(json.dumps(result))


def run_parallel(seeds: Sequence[int], tmp: Path | None = None,
                 workers: int = 1) -> dict[str, Any]:
    """The same runs as :func:`run_series`, spread over ``workers`` independent worlds (each
    its own bank database, coordinator store, processes and ports; seed i goes to world
    i mod workers). Every run is checked in its own world exactly as in a single series; the
    worlds share nothing, so a run neither sees nor disturbs another world's transactions.
    A run mostly waits (timeouts, restarts, polling), so worlds overlap well on 2 cores."""
    base = Path(tmp or tempfile.mkdtemp(prefix="wirecall-crash-"))
    seeds = list(seeds)
    if workers <= 1 or len(seeds) < 2:
        return run_series(seeds, base)
    workers = min(workers, len(seeds))
    ports = _distinct_ports(2 * workers)
    pids: list[tuple[int, Path]] = []
    try:
        for i in range(workers):
            world_dir = base / f"world{i}"
            world_dir.mkdir(parents=True, exist_ok=True)
            out = base / f"world{i}.json"
            pids.append((_child(_worker, seeds[i::workers], world_dir,
                                (ports[2 * i], ports[2 * i + 1]), out), out))
        results: list[dict[str, Any]] = []
        for pid, out in pids:
            os.waitpid(pid, 0)
            results.append(json.loads(out.read_text()) if out.exists()
                           else {"error": f"worker {pid} wrote no result"})
        pids = []
    finally:
        for pid, _out in pids:  # interrupted (a timeout): stop the workers and their worlds
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid, _out in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
    errors = [r for r in results if "error" in r]
    if errors:
        raise AssertionError("; ".join(r["error"] for r in errors)
                             + "\n" + errors[0].get("traceback", ""))
    crashed: dict[str, int] = {}
    by_status: dict[str, int] = {}
    for r in results:
        for k, v in r["crashed_at"].items():
            crashed[k] = crashed.get(k, 0) + v
        for k, v in r["by_status"].items():
            by_status[k] = by_status.get(k, 0) + v
    return {"runs": sum(r["runs"] for r in results), "crashed_at": dict(sorted(crashed.items())),
            "by_status": by_status, "workers": workers}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1,
                   help="independent worlds running the seeds side by side")
    a = p.parse_args()
    t0 = time.monotonic()
    summary = run_parallel(range(a.seed, a.seed + a.runs), workers=a.workers)
    summary["seconds"] = round(time.monotonic() - t0, 1)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
