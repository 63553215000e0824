"""A bank as branch service for the transaction tests (run in its own process with
``wirecall serve support.txn_bank:Bank``): accounts in a SQLite file (``TXN_BANK_DB``),
every operation behind the sub-transaction barrier, and an ``applied`` log with no unique
key, so a test can prove no branch operation was applied twice.

Saga: TransOut / TransOutCompensate / TransIn / TransInCompensate.
TCC:  TryOut / ConfirmOut / CancelOut / TryIn / ConfirmIn / CancelIn (money held in ``trading``).
Msg:  QueryPrepared (the check-back), MsgTransOut (the submitter's local transaction).
Test control: Fault(method, status, count, delay) -- the next ``count`` calls of ``method``
answer ``status`` (a status name, "SLEEP" to sleep ``delay`` s first, "OK" to pass);
crash points ``bank.before_commit`` / ``bank.after_commit`` through ``WIRECALL_TXN_CRASH``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from typing import Any

from wirecall.errors import Aborted, RpcError
from wirecall.status import Status
from wirecall.txn.barrier import barrier, create_table, msg_local, query_prepared
from wirecall.txn.crash import crash_point

__all__ = ["Bank", "init_bank", "open_db"]


def open_db(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def init_bank(path: str, accounts: dict[str, int]) -> None:
    conn = open_db(path)
    conn.execute("CREATE TABLE IF NOT EXISTS account (id TEXT PRIMARY KEY, balance INTEGER "
                 "NOT NULL, trading INTEGER NOT NULL DEFAULT 0)")
    conn.execute("CREATE TABLE IF NOT EXISTS applied (gid TEXT, branch_id TEXT, op TEXT, "
                 "method TEXT)")
    create_table(conn.cursor())
    for acct, bal in accounts.items():
        conn.execute("INSERT INTO account (id, balance) VALUES (?, ?) ON CONFLICT (id) "
                     "DO UPDATE SET balance = excluded.balance, trading = 0", (acct, bal))
    conn.close()


class Bank:
    def __init__(self) -> None:
        self.path = os.environ["TXN_BANK_DB"]
        self._local = threading.local()
        self._faults: dict[str, list[tuple[str, float]]] = {}
        self._lock = threading.Lock()
        # one writer at a time in this process: SQLite's busy handler would otherwise sleep
        # (up to 100 ms a round) between writers of the same file
        self._write = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = open_db(self.path)
        return conn

    def _fault(self, method: str) -> None:
        with self._lock:
            queue = self._faults.get(method)
            if not queue:
                return
            status, delay = queue.pop(0)
        if status == "SLEEP":
            time.sleep(delay)
            return
        if status != "OK":
            raise RpcError(Status[status], f"injected {status} for {method}")

    def Fault(self, method: str, status: str, count: int = 1, delay: float = 0.0) -> int:
        if status not in ("SLEEP", "OK") and status not in Status.__members__:
            raise RpcError(Status.INVALID_ARGUMENT, f"status: unknown {status!r}")
        with self._lock:
            self._faults.setdefault(method, []).extend([(status, delay)] * count)
            return len(self._faults[method])

    def ClearFaults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _run(self, method: str, gid: str, branch_id: str, op: str,
             business: Any) -> str:
        self._fault(method)
        with self._write:
            return self._run_locked(method, gid, branch_id, op, business)

    def _run_locked(self, method: str, gid: str, branch_id: str, op: str,
                    business: Any) -> str:
        conn = self._db()
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            def work(c: Any) -> None:
                business(c)
                c.execute("INSERT INTO applied VALUES (?, ?, ?, ?)", (gid, branch_id, op, method))

            ran = barrier(cur, gid, branch_id, op, work)
            crash_point("bank.before_commit")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")
        crash_point("bank.after_commit")
        return "applied" if ran else "skipped"

    @staticmethod
    def _adjust(c: Any, acct: str, balance: int, trading: int = 0) -> None:
        c.execute("SELECT balance, trading FROM account WHERE id = ?", (acct,))
        row = c.fetchone()
        if row is None:
            raise Aborted(message=f"no account {acct}")
        if row[0] + balance < 0 or row[1] + trading < 0:
            raise Aborted(message=f"insufficient balance in {acct}")
        c.execute("UPDATE account SET balance = balance + ?, trading = trading + ? WHERE id = ?",
                  (balance, trading, acct))

    # saga
    def TransOut(self, gid: str, branch_id: str, op: str, payload: dict[str, Any]) -> str:
        return self._run("TransOut", gid, branch_id, op,
                         lambda c: self._adjust(c, payload["account"], -payload["amount"]))

    def TransOutCompensate(self, gid: str, branch_id: str, op: str,
                           payload: dict[str, Any]) -> str:
        return self._run("TransOutCompensate", gid, branch_id, op,
                         lambda c: self._adjust(c, payload["account"], payload["amount"]))

    def TransIn(self, gid: str, branch_id: str, op: str, payload: dict[str, Any]) -> str:
        return self._run("TransIn", gid, branch_id, op,
                         lambda c: self._adjust(c, payload["account"], payload["amount"]))

    def TransInCompensate(self, gid: str, branch_id: str, op: str,
                          payload: dict[str, Any]) -> str:
        return self._run("TransInCompensate", gid, branch_id, op,
                         lambda c: self._adjust(c, payload["account"], -payload["amount"]))

    # TCC: the payer's money is held in ``trading`` between try and confirm/cancel
    def TryOut(self, gid: str, branch_id: str, op: str, payload: dict[str, Any]) -> str:
        a, n = payload["account"], payload["amount"]
        return self._run("TryOut", gid, branch_id, op, lambda c: self._adjust(c, a, -n, n))

    def ConfirmOut(self, gid: str, branch_id: str, op: str, payload: dict[str, Any]) -> str:
        a, n = payload["account"], payload["amount"]
        return self._run("ConfirmOut", gid, branch_id, op, lambda c: self._adjust(c, a, 0, -n))

    def CancelOut(self, gid: str, branch_id: str, op: str, payload: dict[str, Any]) -> str:
        a, n = payload["account"], payload["amount"]
        return self._run("CancelOut", gid, branch_id, op, lambda c: self._adjust(c, a, n, -n))

    def TryIn(self, gid: str, branch_id: str, op: str, payload: dict[str, Any]) -> str:
        return self._run("TryIn", gid, branch_id, op, lambda c: None)

    def ConfirmIn(self, gid: str, branch_id: str, op: str, payload: dict[str, Any]) -> str:
        a, n = payload["account"], payload["amount"]
        return self._run("ConfirmIn", gid, branch_id, op, lambda c: self._adjust(c, a, n))

    def CancelIn(self, gid: str, branch_id: str, op: str, payload: dict[str, Any]) -> str:
        return self._run("CancelIn", gid, branch_id, op, lambda c: None)

    # 2-phase message
    def MsgTransOut(self, gid: str, account: str, amount: int) -> str:
        """The submitter's local transaction, served here for tests that drive it by RPC."""
        self._fault("MsgTransOut")
        with self._write:
            return self._msg_local(gid, account, amount)

    def _msg_local(self, gid: str, account: str, amount: int) -> str:
        conn = self._db()
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            msg_local(cur, gid, lambda c: self._adjust(c, account, -amount))
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")
        return "committed"

    def QueryPrepared(self, gid: str, branch_id: str, op: str, payload: Any) -> str:
        self._fault("QueryPrepared")
        with self._write:
            return self._query_prepared(gid)

    def _query_prepared(self, gid: str) -> str:
        conn = self._db()
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            query_prepared(cur, gid)
        except Aborted:
            cur.execute("COMMIT")  # the "rolled back" mark must stay
            raise
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")
        return "committed"

    def Balances(self) -> dict[str, list[int]]:
        rows = self._db().execute("SELECT id, balance, trading FROM account").fetchall()
        return {r[0]: [r[1], r[2]] for r in rows}

    def Duplicates(self) -> list[list[str]]:
        rows = self._db().execute(
            "SELECT gid, branch_id, op, COUNT(*) FROM applied GROUP BY gid, branch_id, op "
            "HAVING COUNT(*) > 1").fetchall()
        return [[str(x) for x in r] for r in rows]

    def Applied(self, gid: str) -> list[list[str]]:
        rows = self._db().execute("SELECT branch_id, op, method FROM applied WHERE gid = ? "
                                  "ORDER BY rowid", (gid,)).fetchall()
        return [list(r) for r in rows]
