"""The sub-transaction barrier: idempotency, null compensation and anti-hanging for branch
authors, decided inside the branch's own local transaction by unique-key inserts only.

A branch operation ``op`` of ``(gid, branch_id)`` first inserts the row of the operation it
undoes (``cancel`` undoes ``try``; ``compensate`` and ``rollback`` undo ``action``), then its
own row, both ``ON CONFLICT DO NOTHING``:

* its own row already there: a duplicate (or a ``try`` after its ``cancel``: hanging) -- the
  business code does not run, the call succeeds;
* an undo whose "origin" row was inserted just now: the forward operation never ran -- null
  compensation, the business code does not run, and the row blocks a late forward call;
* otherwise the business code runs in the same transaction, so its effect and the barrier
  rows commit or roll back together.

Concurrent duplicates serialise on the unique key (the second waits for the first's commit,
then finds the row). Every value is a query parameter; nothing is formatted into SQL.

    with sqlite3.connect(path, isolation_level=None) as conn:
        sqlite_barrier(conn, gid, branch_id, op, lambda cur: cur.execute(...))

    postgres_barrier(psycopg_conn, gid, branch_id, op, lambda cur: cur.execute(...))
    await redis_adjust(redis_client, gid, branch_id, op, "balance:alice", -30)

For the 2-phase message: :func:`msg_local` (the submitter's local transaction) and
:func:`query_prepared` (its check-back answer) share the barrier row ``(gid, "00", "msg")``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from wirecall.errors import Aborted, FailedPrecondition

from .model import check_gid

__all__ = [
    "BARRIER_TABLE",
    "ORIGIN",
    "barrier",
    "create_table",
    "msg_local",
    "postgres_barrier",
    "query_prepared",
    "redis_adjust",
    "sqlite_barrier",
]

BARRIER_TABLE = "wirecall_barrier"
#: the forward operation each undo operation undoes
ORIGIN = {"cancel": "try", "compensate": "action", "rollback": "action"}
MSG_BRANCH, MSG_OP = "00", "msg"


class Cursor(Protocol):
    rowcount: int

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...
    def fetchone(self) -> Any: ...


def _q(cur: Any, sql: str) -> str:
    """``?`` for sqlite3, ``%s`` for psycopg (the cursor's module tells)."""
    return sql.replace("?", "%s") if type(cur).__module__.startswith("psycopg") else sql


def create_table(cur: Cursor) -> None:
    cur.execute(f"""CREATE TABLE IF NOT EXISTS {BARRIER_TABLE} (
        gid TEXT NOT NULL, branch_id TEXT NOT NULL, op TEXT NOT NULL,
        reason TEXT NOT NULL, PRIMARY KEY (gid, branch_id, op))""")


def _insert(cur: Cursor, gid: str, branch_id: str, op: str, reason: str) -> int:
    cur.execute(_q(cur, f"INSERT INTO {BARRIER_TABLE} (gid, branch_id, op, reason) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"),
                (gid, branch_id, op, reason))
    return int(cur.rowcount)


def barrier(cur: Cursor, gid: str, branch_id: str, op: str,
            business: Callable[[Cursor], Any]) -> bool:
    """Run ``business(cur)`` once for ``(gid, branch_id, op)``, inside the caller's open
    transaction. Returns whether it ran (False: duplicate, hanging or null compensation)."""
    check_gid(gid)
    check_gid(branch_id, "branch_id")
    origin = ORIGIN.get(op)
    origin_inserted = _insert(cur, gid, branch_id, origin, op) if origin else 0
    own_inserted = _insert(cur, gid, branch_id, op, op)
    if origin and origin_inserted:
        return False  # null compensation: the forward op never ran (and now never will)
    if not own_inserted:
        return False  # duplicate, or a forward op arriving after its undo (hanging)
    business(cur)
    return True


def sqlite_barrier(conn: Any, gid: str, branch_id: str, op: str,
                   business: Callable[[Cursor], Any]) -> bool:
    """:func:`barrier` in one SQLite transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``) on a
    ``sqlite3`` connection opened with ``isolation_level=None``. A business exception rolls
    everything back and propagates (raise :class:`~wirecall.errors.Aborted` for a business
    failure)."""
    cur = conn.cursor()
    create_table(cur)
    cur.execute("BEGIN IMMEDIATE")
    try:
        ran = barrier(cur, gid, branch_id, op, business)
    except BaseException:
        cur.execute("ROLLBACK")
        raise
    cur.execute("COMMIT")
    return ran


def postgres_barrier(conn: Any, gid: str, branch_id: str, op: str,
                     business: Callable[[Cursor], Any]) -> bool:
    """:func:`barrier` in one transaction of a psycopg 3 connection (``conn.transaction()``)."""
    with conn.transaction(), conn.cursor() as cur:
        create_table(cur)
        return barrier(cur, gid, branch_id, op, business)


def msg_local(cur: Cursor, gid: str, business: Callable[[Cursor], Any]) -> None:
    """The 2-phase message's local transaction (inside the caller's open transaction): mark
    it done, then run ``business``. If the coordinator's check-back already declared it
    rolled back, raise ABORTED without running ``business``."""
    check_gid(gid)
    if not _insert(cur, gid, MSG_BRANCH, MSG_OP, "committed"):
        raise Aborted(message=f"message {gid} was already resolved as rolled back")
    business(cur)


def query_prepared(cur: Cursor, gid: str) -> None:
    """The check-back answer, in its own transaction: insert a "rolled back" mark unless the
    local transaction's mark exists. Returns (OK) if the local transaction committed; raises
    ABORTED if it did not (and now never will). While the local transaction is still open
    the insert waits on its key; a lock timeout becomes FAILED_PRECONDITION (ask again)."""
    check_gid(gid)
    try:
        _insert(cur, gid, MSG_BRANCH, MSG_OP, "rollback")
    except Exception as exc:  # lock/busy timeout: still in progress
        if "lock" in str(exc).lower() or "busy" in str(exc).lower():
            raise FailedPrecondition(message=f"local transaction of {gid} in progress") from None
        raise
    cur.execute(_q(cur, f"SELECT reason FROM {BARRIER_TABLE} WHERE gid = ? AND branch_id = ? "
                        "AND op = ?"), (gid, MSG_BRANCH, MSG_OP))
    row = cur.fetchone()
    if row is None or row[0] == "rollback":
        raise Aborted(message=f"local transaction of {gid} rolled back")


# Redis: the same three checks and the business (an amount adjustment) in one Lua script,
# so they are atomic. KEYS: origin key, own key, the balance; ARGV: has_origin, amount, ttl.
REDIS_ADJUST = """
local origin_new = 0
if ARGV[1] == '1' then
  origin_new = redis.call('SET', KEYS[1], 'op', 'NX', 'EX', ARGV[3]) and 1 or 0
end
local own_new = redis.call('SET', KEYS[2], 'op', 'NX', 'EX', ARGV[3]) and 1 or 0
if origin_new == 1 then return 'NULL_COMPENSATION' end
if own_new == 0 then return 'DUPLICATE' end
local v = tonumber(redis.call('GET', KEYS[3]) or '0')
local amount = tonumber(ARGV[2])
if v + amount < 0 then
  redis.call('DEL', KEYS[2])
  return 'INSUFFICIENT'
end
redis.call('INCRBY', KEYS[3], amount)
return 'APPLIED'
"""


async def redis_adjust(redis: Any, gid: str, branch_id: str, op: str, key: str, amount: int,
                       *, ttl: int = 7 * 86400, prefix: str = "wirecall:barrier") -> bool:
    """Add ``amount`` to the integer at ``key`` once for ``(gid, branch_id, op)`` (a
    ``redis.asyncio`` client). Returns whether it applied; a balance that would go below zero
    raises ABORTED (business failure) and leaves no barrier row, like a rolled-back local
    transaction."""
    check_gid(gid)
    check_gid(branch_id, "branch_id")
    origin = ORIGIN.get(op)
    keys = [f"{prefix}:{gid}:{branch_id}:{origin or '-'}", f"{prefix}:{gid}:{branch_id}:{op}",
            key]
    res = await redis.eval(REDIS_ADJUST, 3, *keys, "1" if origin else "0", int(amount), ttl)
    res = res.decode() if isinstance(res, bytes) else res
    if res == "INSUFFICIENT":
        raise Aborted(message=f"{key}: insufficient balance")
    return bool(res == "APPLIED")
