"""The coordinator's tables and queries, shared by the SQLite and PostgreSQL stores.

Every operation is a plain function of a DB-API cursor run inside one local transaction by
the store (:mod:`.sqlite`: a group-commit writer thread; :mod:`.postgres`: a connection per
worker thread). Queries are written with ``?`` placeholders (PostgreSQL's ``$n`` are
substituted by the store); every value, above all a gid or branch id, is a parameter, never
formatted into the SQL text. Column names in updates come from a fixed allow-list.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..model import NON_TERMINAL, Branch, GlobalTx, HistoryEntry, Options

__all__ = [
    "GLOBAL_COLUMNS",
    "Cursor",
    "Dialect",
    "Op",
    "add_history",
    "claim_due",
    "count_by_status",
    "create",
    "history",
    "list_globals",
    "load",
    "record",
    "record_step",
    "register",
    "release_owned",
    "schema",
    "single",
    "update_global",
]


class Cursor(Protocol):
    rowcount: int

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Dialect:
    """``?`` (SQLite) or ``$1``, ``$2``... (PostgreSQL, libpq's own placeholders: the store
    sends statements through :class:`.pq.PqCursor`); ``FOR UPDATE SKIP LOCKED`` where the
    database has it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.postgres = name == "postgres"
        self._cache: dict[str, str] = {}

    def q(self, sql: str) -> str:
        if not self.postgres:
            return sql
        out = self._cache.get(sql)
        if out is None:
            parts = sql.split("?")  # (no statement here has a ? inside a literal)
            out = parts[0] + "".join(f"${i}{p}" for i, p in enumerate(parts[1:], 1))
            if len(self._cache) < 4096:  # texts vary only with a branch count or a column set
                self._cache[sql] = out
        return out


Op = Callable[[Cursor, Dialect], Any]


def single(op: Op) -> Op:
    """Mark ``op`` as one SQL statement on PostgreSQL: run alone, the store may send it in
    autocommit (its own implicit transaction), without the BEGIN and COMMIT round trips."""
    op.single = True  # type: ignore[attr-defined]
    return op

GLOBAL_COLUMNS = ("gid", "mode", "status", "options", "created_at", "updated_at", "timeout_at",
                  "next_due", "interval_s", "owner", "lease_until", "reason", "rounds")
BRANCH_COLUMNS = ("gid", "branch_id", "op", "url", "method", "payload", "status", "attempts",
                  "last_error", "updated_at")
_UPDATABLE = frozenset({"status", "updated_at", "timeout_at", "next_due", "interval_s", "owner",
                        "lease_until", "reason", "rounds"})


def schema(d: Dialect) -> list[str]:
    real = "DOUBLE PRECISION" if d.postgres else "REAL"
    # (SQLite: a rowid, not AUTOINCREMENT, which writes sqlite_sequence on every insert;
    # history rows are never deleted, so ids still only grow)
    serial = "BIGSERIAL PRIMARY KEY" if d.postgres else "INTEGER PRIMARY KEY"
    return [
        f"""CREATE TABLE IF NOT EXISTS txn_global (
            gid TEXT PRIMARY KEY, mode TEXT NOT NULL, status TEXT NOT NULL,
            options TEXT NOT NULL, created_at {real} NOT NULL, updated_at {real} NOT NULL,
            timeout_at {real}, next_due {real} NOT NULL, interval_s {real} NOT NULL DEFAULT 0,
            owner TEXT NOT NULL DEFAULT '', lease_until {real} NOT NULL DEFAULT 0,
            reason TEXT NOT NULL DEFAULT '', rounds INTEGER NOT NULL DEFAULT 0)""",
        "CREATE INDEX IF NOT EXISTS txn_global_due ON txn_global (next_due)",
        f"""CREATE TABLE IF NOT EXISTS txn_branch (
            gid TEXT NOT NULL, branch_id TEXT NOT NULL, op TEXT NOT NULL, seq INTEGER NOT NULL,
            url TEXT NOT NULL, method TEXT NOT NULL, payload TEXT NOT NULL,
            status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT NOT NULL DEFAULT '', updated_at {real} NOT NULL,
            PRIMARY KEY (gid, branch_id, op))""",
        f"""CREATE TABLE IF NOT EXISTS txn_history (
            id {serial}, gid TEXT NOT NULL, branch_id TEXT NOT NULL, op TEXT NOT NULL,
            at {real} NOT NULL, outcome TEXT NOT NULL, detail TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS txn_history_gid ON txn_history (gid)",
    ]


def _global_from(row: Sequence[Any]) -> GlobalTx:
    return GlobalTx(gid=row[0], mode=row[1], status=row[2], options=Options.from_json(row[3]),
                    created_at=row[4], updated_at=row[5], timeout_at=row[6], next_due=row[7],
                    interval=row[8], owner=row[9], lease_until=row[10], reason=row[11],
                    rounds=row[12])


def _branch_from(row: Sequence[Any]) -> Branch:
    return Branch(gid=row[0], branch_id=row[1], op=row[2], url=row[3], method=row[4],
                  payload=json.loads(row[5]), status=row[6], attempts=row[7],
                  last_error=row[8], updated_at=row[9])


_BRANCH_INSERT = ("INSERT INTO txn_branch (gid, branch_id, op, seq, url, method, payload, "
                  "status, attempts, last_error, updated_at) ")
_BRANCH_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, 0, '', ?)"
_GLOBAL_INSERT = (f"INSERT INTO txn_global ({', '.join(GLOBAL_COLUMNS)}) "
                  f"VALUES ({', '.join('?' * len(GLOBAL_COLUMNS))}) ON CONFLICT (gid) DO NOTHING")


def _branch_params(branches: list[Branch], start: int) -> list[Any]:
    now = time.time()
    params: list[Any] = []
    for i, b in enumerate(branches):
        payload = "null" if b.payload is None else json.dumps(b.payload)
        params += [b.gid, b.branch_id, b.op, start + i, b.url, b.method, payload, b.status, now]
    return params


def _insert_branches(cur: Cursor, d: Dialect, branches: list[Branch], start: int) -> None:
    if not branches:
        return
    rows = ", ".join([_BRANCH_ROW] * len(branches))
    cur.execute(d.q(f"{_BRANCH_INSERT}VALUES {rows}"), _branch_params(branches, start))


def create(g: GlobalTx, branches: list[Branch]) -> Op:
    """Insert the global transaction and its branches; False if the gid exists. On
    PostgreSQL one statement (the branches inserted only if the global row was)."""
    gparams = (g.gid, g.mode, g.status, g.options.to_json(), g.created_at, g.updated_at,
               g.timeout_at, g.next_due, g.interval, g.owner, g.lease_until, g.reason, g.rounds)

    def op(cur: Cursor, d: Dialect) -> bool:
        if d.postgres and branches:
            rows = ", ".join([_BRANCH_ROW] * len(branches))
            cur.execute(d.q(f"WITH g AS ({_GLOBAL_INSERT} RETURNING gid) {_BRANCH_INSERT}"
                            f"SELECT * FROM (VALUES {rows}) AS v WHERE EXISTS (SELECT FROM g)"),
                        [*gparams, *_branch_params(branches, 0)])
            return bool(cur.rowcount > 0)  # nothing inserted: the gid exists
        cur.execute(d.q(_GLOBAL_INSERT), gparams)
        if cur.rowcount != 1:
            return False  # the gid exists
        _insert_branches(cur, d, branches, 0)
        return True

    return single(op)


def load(gid: str) -> Op:
    def op(cur: Cursor, d: Dialect) -> tuple[GlobalTx, list[Branch]] | None:
        cur.execute(d.q(f"SELECT {', '.join(GLOBAL_COLUMNS)} FROM txn_global WHERE gid = ?"),
                    (gid,))
        row = cur.fetchone()
        if row is None:
            return None
        cur.execute(d.q(f"SELECT {', '.join(BRANCH_COLUMNS)} FROM txn_branch WHERE gid = ? "
                        "ORDER BY seq"), (gid,))
        return _global_from(row), [_branch_from(r) for r in cur.fetchall()]

    return op


def register(gid: str, branches: list[Branch], expect_status: str) -> Op:
    """Add branch operations while the global transaction is in ``expect_status``. Returns
    "ok", "missing", "exists" (same branch already registered) or the current status."""

    def op(cur: Cursor, d: Dialect) -> str:
        cur.execute(d.q("SELECT status FROM txn_global WHERE gid = ?"
                        + (" FOR UPDATE" if d.postgres else "")), (gid,))
        row = cur.fetchone()
        if row is None:
            return "missing"
        if row[0] != expect_status:
            return str(row[0])
        cur.execute(d.q("SELECT COUNT(*) FROM txn_branch WHERE gid = ? AND branch_id = ?"),
                    (gid, branches[0].branch_id))
        if cur.fetchone()[0]:
            return "exists"
        cur.execute(d.q("SELECT COALESCE(MAX(seq), -1) FROM txn_branch WHERE gid = ?"), (gid,))
        _insert_branches(cur, d, branches, int(cur.fetchone()[0]) + 1)
        return "ok"

    return op


def update_global(gid: str, *, expect_status: Sequence[str] | None = None,
                  fence: str | None = None, claim: bool = False, now: float | None = None,
                  **values: Any) -> Op:
    """Set ``values`` on the global row if it is in ``expect_status`` and (fencing) still owned
    by ``fence`` -- or, with ``claim``, owned by ``fence``, by nobody or by an expired lease."""
    bad = set(values) - _UPDATABLE
    if bad:
        raise ValueError(f"not updatable: {sorted(bad)}")

    def op(cur: Cursor, d: Dialect) -> bool:
        sets = ", ".join(f"{k} = ?" for k in values)
        where = ["gid = ?"]
        params: list[Any] = [*values.values(), gid]
        if expect_status:
            where.append(f"status IN ({', '.join('?' * len(expect_status))})")
            params.extend(expect_status)
        if fence is not None and claim:
            where.append("(owner = ? OR owner = '' OR lease_until < ?)")
            params.extend([fence, now if now is not None else time.time()])
        elif fence is not None:
            where.append("owner = ?")
            params.append(fence)
        cur.execute(d.q(f"UPDATE txn_global SET {sets} WHERE {' AND '.join(where)}"), params)
        return bool(cur.rowcount == 1)

    return single(op)


def record(b: Branch, owner: str, outcome: str, detail: str, lease_until: float,
           global_values: dict[str, Any] | None = None) -> Op:
    """A branch operation's answer: its row, a history entry, the owner's lease renewed
    (fenced: nothing is written if another coordinator took the transaction over)."""
    gv = dict(global_values or {})
    bad = set(gv) - _UPDATABLE
    if bad:
        raise ValueError(f"not updatable: {sorted(bad)}")

    def op(cur: Cursor, d: Dialect) -> bool:
        now = time.time()
        if d.postgres and not gv:  # one statement, one round trip
            cur.execute(d.q(
                "WITH g AS (UPDATE txn_global SET lease_until = ?, updated_at = ? "
                "WHERE gid = ? AND owner = ? RETURNING gid), "
                "b AS (UPDATE txn_branch SET status = ?, attempts = ?, last_error = ?, "
                "updated_at = ? WHERE gid IN (SELECT gid FROM g) AND branch_id = ? AND op = ? "
                "RETURNING gid) "
                "INSERT INTO txn_history (gid, branch_id, op, at, outcome, detail) "
                "SELECT gid, ?, ?, ?, ?, ? FROM g"),
                (lease_until, now, b.gid, owner, b.status, b.attempts, b.last_error, now,
                 b.branch_id, b.op, b.branch_id, b.op, now, outcome, detail[:500]))
            return bool(cur.rowcount == 1)
        sets = ", ".join(["lease_until = ?", "updated_at = ?", *(f"{k} = ?" for k in gv)])
        cur.execute(d.q(f"UPDATE txn_global SET {sets} WHERE gid = ? AND owner = ?"),
                    (lease_until, now, *gv.values(), b.gid, owner))
        if cur.rowcount != 1:
            return False
        cur.execute(d.q("UPDATE txn_branch SET status = ?, attempts = ?, last_error = ?, "
                        "updated_at = ? WHERE gid = ? AND branch_id = ? AND op = ?"),
                    (b.status, b.attempts, b.last_error, now, b.gid, b.branch_id, b.op))
        cur.execute(d.q("INSERT INTO txn_history (gid, branch_id, op, at, outcome, detail) "
                        "VALUES (?, ?, ?, ?, ?, ?)"),
                    (b.gid, b.branch_id, b.op, now, outcome, detail[:500]))
        return True

    return op if gv else single(op)  # without global values: one statement on PostgreSQL


_RECORD_CTE = ("WITH g AS (UPDATE txn_global SET {sets} WHERE {where} RETURNING gid), "
               "b AS (UPDATE txn_branch SET status = ?, attempts = ?, last_error = ?, "
               "updated_at = ? WHERE gid IN (SELECT gid FROM g) AND branch_id = ? AND op = ? "
               "RETURNING gid) "
               "INSERT INTO txn_history (gid, branch_id, op, at, outcome, detail) "
               "SELECT gid, ?, ?, ?, ?, ? FROM g")

#: one branch operation's answer, as :func:`record_step` writes it: gid, branch_id, op, its
#: new status, attempts and last_error, the outcome, the error detail
Answer = tuple[str, str, str, str, int, str, str, str]


def record_step(answers: Sequence[Answer], owner: str, lease_until: float,
                status_values: dict[str, Any] | None = None,
                expect_status: str | None = None) -> Op:
    """Branch answers (rows, history, the owner's lease renewed; fenced like :func:`record`)
    and, if ``status_values`` is given, the global row's change from ``expect_status`` in
    the same local transaction. Returns "ok"; "status" if the answers were written but the
    status had changed meanwhile (the change is not made); "fenced" if nothing was written
    (another coordinator holds the transaction). On PostgreSQL one answer with or without a
    status change is one statement."""
    sv = dict(status_values or {})
    bad = set(sv) - _UPDATABLE
    if bad:
        raise ValueError(f"not updatable: {sorted(bad)}")
    gid = answers[0][0] if answers else ""

    def global_update(now: float, values: dict[str, Any],
                      status: str | None) -> tuple[str, str, list[Any]]:
        # the owner's lease renewed (fenced), ``values`` set if the status is ``status``
        cols = {"lease_until": lease_until, "updated_at": now, **values}
        sets = ", ".join(f"{k} = ?" for k in cols)
        where = "gid = ? AND owner = ?" + (" AND status = ?" if status is not None else "")
        params = [*cols.values(), gid, owner]
        if status is not None:
            params.append(status)
        return sets, where, params

    def global_row(cur: Cursor, d: Dialect, now: float, values: dict[str, Any],
                   status: str | None) -> bool:
        sets, where, params = global_update(now, values, status)
        cur.execute(d.q(f"UPDATE txn_global SET {sets} WHERE {where}"), params)
        return bool(cur.rowcount == 1)

    def one_statement(cur: Cursor, d: Dialect, now: float, values: dict[str, Any],
                      status: str | None) -> bool:
        _gid, bid, bop, status_, attempts, last_error, outcome, detail = answers[0]
        sets, where, gparams = global_update(now, values, status)
        cur.execute(d.q(_RECORD_CTE.format(sets=sets, where=where)),
                    (*gparams, status_, attempts, last_error, now, bid, bop, bid, bop, now,
                     outcome, detail[:500]))
        return bool(cur.rowcount == 1)

    def op(cur: Cursor, d: Dialect) -> str:
        now = time.time()
        if d.postgres and len(answers) == 1:
            if one_statement(cur, d, now, sv, expect_status if sv else None):
                return "ok"
            if not sv:
                return "fenced"
            # the status changed (or the lease is gone): the answer alone, fenced
            return "status" if one_statement(cur, d, now, {}, None) else "fenced"
        result = "ok"
        if not global_row(cur, d, now, sv, expect_status if sv else None):
            if not sv or not global_row(cur, d, now, {}, None):
                return "fenced"
            result = "status"
        for _gid, bid, bop, status_, attempts, last_error, outcome, detail in answers:
            cur.execute(d.q("UPDATE txn_branch SET status = ?, attempts = ?, last_error = ?, "
                            "updated_at = ? WHERE gid = ? AND branch_id = ? AND op = ?"),
                        (status_, attempts, last_error, now, gid, bid, bop))
            cur.execute(d.q("INSERT INTO txn_history (gid, branch_id, op, at, outcome, detail) "
                            "VALUES (?, ?, ?, ?, ?, ?)"),
                        (gid, bid, bop, now, outcome, detail[:500]))
        return result

    # one answer on PostgreSQL: one statement (a second only when the first was refused)
    return single(op) if len(answers) == 1 else op


def add_history(gid: str, branch_id: str, op_name: str, outcome: str, detail: str) -> Op:
    def op(cur: Cursor, d: Dialect) -> None:
        cur.execute(d.q("INSERT INTO txn_history (gid, branch_id, op, at, outcome, detail) "
                        "VALUES (?, ?, ?, ?, ?, ?)"),
                    (gid, branch_id, op_name, time.time(), outcome, detail[:500]))

    return single(op)


def claim_due(owner: str, now: float, lease_until: float, limit: int) -> Op:
    """Take up to ``limit`` due transactions whose lease is free or expired."""

    def op(cur: Cursor, d: Dialect) -> list[str]:
        statuses = [str(s) for s in NON_TERMINAL]
        inner = ("SELECT gid FROM txn_global WHERE status IN (?, ?, ?) AND next_due <= ? "
                 "AND (owner = '' OR lease_until < ?) ORDER BY next_due LIMIT ?")
        if d.postgres:
            inner += " FOR UPDATE SKIP LOCKED"
        cur.execute(d.q(f"UPDATE txn_global SET owner = ?, lease_until = ? "
                        f"WHERE gid IN ({inner}) RETURNING gid"),
                    (owner, lease_until, *statuses, now, now, limit))
        return [r[0] for r in cur.fetchall()]

    return single(op)


def release_owned(owner: str) -> Op:
    """A restarted coordinator (same name) gives up the leases of its previous life."""

    def op(cur: Cursor, d: Dialect) -> int:
        cur.execute(d.q("UPDATE txn_global SET owner = '', lease_until = 0 WHERE owner = ?"),
                    (owner,))
        return int(cur.rowcount)

    return single(op)


def list_globals(status: str | None, limit: int) -> Op:
    def op(cur: Cursor, d: Dialect) -> list[GlobalTx]:
        cols = ", ".join(GLOBAL_COLUMNS)
        if status:
            cur.execute(d.q(f"SELECT {cols} FROM txn_global WHERE status = ? "
                            "ORDER BY created_at DESC LIMIT ?"), (status, limit))
        else:
            cur.execute(d.q(f"SELECT {cols} FROM txn_global ORDER BY created_at DESC LIMIT ?"),
                        (limit,))
        return [_global_from(r) for r in cur.fetchall()]

    return single(op)


def count_by_status() -> Op:
    def op(cur: Cursor, d: Dialect) -> dict[str, int]:
        cur.execute("SELECT status, COUNT(*) FROM txn_global GROUP BY status")
        return {r[0]: int(r[1]) for r in cur.fetchall()}

    return single(op)


def history(gid: str) -> Op:
    def op(cur: Cursor, d: Dialect) -> list[HistoryEntry]:
        cur.execute(d.q("SELECT gid, branch_id, op, at, outcome, detail FROM txn_history "
                        "WHERE gid = ? ORDER BY id"), (gid,))
        return [HistoryEntry(*r) for r in cur.fetchall()]

    return single(op)
