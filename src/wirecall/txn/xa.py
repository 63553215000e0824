"""XA / two-phase commit for branches on PostgreSQL (``PREPARE TRANSACTION``), psycopg 3.

The branch's action does its work and ends in ``PREPARE TRANSACTION`` instead of a commit; the
coordinator then calls the branch's commit (``COMMIT PREPARED``) or rollback
(``ROLLBACK PREPARED``) operation. The barrier row ``(gid, branch_id, "action")`` written
inside the prepared transaction makes every step idempotent and stops a late action after a
rollback (anti-hanging). The server needs ``max_prepared_transactions > 0``.

    def Action(self, gid, branch_id, op, payload):          # the branch's first phase
        with psycopg.connect(dsn, autocommit=True) as conn:
            xa_local(conn, gid, branch_id, lambda cur: cur.execute("UPDATE ...", (...)))
    def Commit(self, gid, branch_id, op, payload):  xa_commit(conn, gid, branch_id)
    def Rollback(self, gid, branch_id, op, payload): xa_rollback(conn, gid, branch_id)

The connection must be in autocommit mode (the functions issue ``BEGIN`` themselves).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wirecall.errors import FailedPrecondition

from .barrier import BARRIER_TABLE, create_table
from .model import check_gid

__all__ = ["xa_commit", "xa_local", "xa_name", "xa_rollback"]


def xa_name(gid: str, branch_id: str) -> str:
    """The prepared transaction's name. PostgreSQL takes it only as a literal, so both parts
    are checked against ``[A-Za-z0-9_.:-]`` and then quoted by psycopg."""
    return f"wc:{check_gid(gid)}:{check_gid(branch_id, 'branch_id')}"


def _literal(name: str) -> Any:
    from psycopg import sql

    return sql.Literal(name)


def _prepared(cur: Any, name: str) -> bool:
    cur.execute("SELECT 1 FROM pg_prepared_xacts WHERE gid = %s AND database = "
                "current_database()", (name,))
    return cur.fetchone() is not None


def xa_local(conn: Any, gid: str, branch_id: str, business: Callable[[Any], Any]) -> bool:
    """Run ``business(cur)`` and ``PREPARE TRANSACTION``; False (nothing done) if this
    branch's action already ran or was already rolled back."""
    from psycopg import errors, sql

    name = xa_name(gid, branch_id)
    with conn.cursor() as cur:
        if _prepared(cur, name):
            return False  # a duplicate: its prepared twin holds the key (inserting would wait)
        create_table(cur)
        cur.execute("BEGIN")
        try:
            cur.execute("SET LOCAL lock_timeout = '1s'")
            cur.execute(f"INSERT INTO {BARRIER_TABLE} (gid, branch_id, op, reason) VALUES "
                        "(%s, %s, 'action', 'action') ON CONFLICT DO NOTHING", (gid, branch_id))
            if cur.rowcount == 0:
                cur.execute("ROLLBACK")
                return False
            business(cur)
            cur.execute(sql.SQL("PREPARE TRANSACTION {}").format(_literal(name)))
        except errors.LockNotAvailable:
            cur.execute("ROLLBACK")
            raise FailedPrecondition(message=f"{name}: a twin of this action is running") \
                from None
        except BaseException:
            cur.execute("ROLLBACK")
            raise
    return True


def xa_commit(conn: Any, gid: str, branch_id: str) -> None:
    """``COMMIT PREPARED`` (idempotent: nothing prepared and the barrier row committed means
    it was committed before)."""
    from psycopg import sql

    name = xa_name(gid, branch_id)
    with conn.cursor() as cur:
        if _prepared(cur, name):
            cur.execute(sql.SQL("COMMIT PREPARED {}").format(_literal(name)))
            return
        cur.execute(f"SELECT reason FROM {BARRIER_TABLE} WHERE gid = %s AND branch_id = %s AND "
                    "op = 'action'", (gid, branch_id))
        row = cur.fetchone()
        if row is None or row[0] != "action":
            raise FailedPrecondition(message=f"{name}: nothing prepared to commit")


def xa_rollback(conn: Any, gid: str, branch_id: str, lock_timeout_ms: int = 1000) -> None:
    """``ROLLBACK PREPARED``; if nothing is prepared, a "rolled back" barrier row stops a late
    action (if that action is still running, its key is locked: FAILED_PRECONDITION, ask
    again)."""
    from psycopg import errors, sql

    name = xa_name(gid, branch_id)
    with conn.cursor() as cur:
        if _prepared(cur, name):
            cur.execute(sql.SQL("ROLLBACK PREPARED {}").format(_literal(name)))
            return
        create_table(cur)
        cur.execute("BEGIN")
        try:
            cur.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(
                sql.Literal(f"{int(lock_timeout_ms)}ms")))
            cur.execute(f"INSERT INTO {BARRIER_TABLE} (gid, branch_id, op, reason) VALUES "
                        "(%s, %s, 'action', 'rollback') ON CONFLICT DO NOTHING",
                        (gid, branch_id))
            cur.execute("COMMIT")
        except errors.LockNotAvailable:
            cur.execute("ROLLBACK")
            raise FailedPrecondition(message=f"{name}: action still running") from None
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        if _prepared(cur, name):  # prepared between our two looks
            cur.execute(sql.SQL("ROLLBACK PREPARED {}").format(_literal(name)))
