"""The sub-transaction barrier on real SQLite files, a real PostgreSQL and a real redis-server:
idempotency, null compensation (cancel before try), anti-hanging (a late try after cancel does
nothing), concurrent duplicate cancels, the 2-phase message's check-back marks, and XA's
``PREPARE TRANSACTION`` helpers."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from support.postgres import PostgresCluster
from support.redis import RedisServer
from txn.conftest import gid
from wirecall.errors import Aborted, FailedPrecondition, InvalidArgument
from wirecall.txn.barrier import (
    barrier,
    create_table,
    msg_local,
    postgres_barrier,
    query_prepared,
    redis_adjust,
    sqlite_barrier,
)
from wirecall.txn.xa import xa_commit, xa_local, xa_rollback

pytestmark = pytest.mark.timeout(60)


def sqlite_conn(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS acct (id TEXT PRIMARY KEY, bal INTEGER)")
    conn.execute("INSERT OR IGNORE INTO acct VALUES ('a', 100)")
    create_table(conn.cursor())
    return conn


def bal(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT bal FROM acct WHERE id = 'a'").fetchone()[0])


def add(n: int) -> Any:
    return lambda cur: cur.execute("UPDATE acct SET bal = bal + ? WHERE id = 'a'", (n,))


def test_sqlite_try_confirm_twice_applies_once(tmp_path: Path) -> None:
    conn = sqlite_conn(tmp_path / "b.db")
    g = gid()
    assert sqlite_barrier(conn, g, "01", "try", add(-10)) is True
    assert sqlite_barrier(conn, g, "01", "try", add(-10)) is False  # duplicate
    assert sqlite_barrier(conn, g, "01", "confirm", add(0)) is True
    assert sqlite_barrier(conn, g, "01", "confirm", add(0)) is False
    assert bal(conn) == 90


def test_sqlite_cancel_before_try_then_late_try_does_nothing(tmp_path: Path) -> None:
    conn = sqlite_conn(tmp_path / "b.db")
    g = gid()
    assert sqlite_barrier(conn, g, "01", "cancel", add(10)) is False  # null compensation
    assert sqlite_barrier(conn, g, "01", "cancel", add(10)) is False  # and twice
    assert sqlite_barrier(conn, g, "01", "try", add(-10)) is False  # hanging prevented
    assert bal(conn) == 100


def test_sqlite_concurrent_cancels_before_try(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    sqlite_conn(path).close()
    g = gid()
    results: list[bool] = []
    barrier_start = threading.Barrier(8)

    def cancel() -> None:
        c = sqlite_conn(path)
        barrier_start.wait()
        results.append(sqlite_barrier(c, g, "01", "cancel", add(10)))
        c.close()

    threads = [threading.Thread(target=cancel) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conn = sqlite_conn(path)
    assert results == [False] * 8
    assert sqlite_barrier(conn, g, "01", "try", add(-10)) is False
    assert bal(conn) == 100


def test_sqlite_business_failure_rolls_the_barrier_back(tmp_path: Path) -> None:
    conn = sqlite_conn(tmp_path / "b.db")
    g = gid()

    def fail(cur: Any) -> None:
        add(-5)(cur)
        raise Aborted(message="insufficient")

    with pytest.raises(Aborted):
        sqlite_barrier(conn, g, "01", "action", fail)
    assert bal(conn) == 100
    # the action left no row: its compensation is a null compensation
    assert sqlite_barrier(conn, g, "01", "compensate", add(5)) is False
    assert bal(conn) == 100


def test_sqlite_compensate_after_action_runs(tmp_path: Path) -> None:
    conn = sqlite_conn(tmp_path / "b.db")
    g = gid()
    assert sqlite_barrier(conn, g, "01", "action", add(-5)) is True
    assert sqlite_barrier(conn, g, "01", "compensate", add(5)) is True
    assert sqlite_barrier(conn, g, "01", "compensate", add(5)) is False
    assert bal(conn) == 100


@pytest.mark.parametrize("bad", ["x'); DROP TABLE acct; --", "", "a" * 200, 7])
def test_gid_is_checked(tmp_path: Path, bad: Any) -> None:
    conn = sqlite_conn(tmp_path / "b.db")
    with pytest.raises(InvalidArgument, match="gid"):
        sqlite_barrier(conn, bad, "01", "try", add(-1))
    assert conn.execute("SELECT COUNT(*) FROM acct").fetchone()[0] == 1


def test_sqlite_msg_check_back(tmp_path: Path) -> None:
    conn = sqlite_conn(tmp_path / "b.db")
    committed, rolled = gid(), gid()
    cur = conn.cursor()
    cur.execute("BEGIN IMMEDIATE")
    msg_local(cur, committed, add(-1))
    cur.execute("COMMIT")
    cur.execute("BEGIN IMMEDIATE")
    query_prepared(cur, committed)  # committed: returns
    cur.execute("COMMIT")
    cur.execute("BEGIN IMMEDIATE")
    with pytest.raises(Aborted):
        query_prepared(cur, rolled)  # never ran: rolled back, and marked so
    cur.execute("COMMIT")
    cur.execute("BEGIN IMMEDIATE")
    with pytest.raises(Aborted):
        msg_local(cur, rolled, add(-1))  # a late local transaction must not run
    cur.execute("ROLLBACK")
    assert bal(conn) == 99


# -- PostgreSQL ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_dsn(postgres_cluster: PostgresCluster) -> str:
    dsn = postgres_cluster.create_database("txn_barrier")
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE acct (id TEXT PRIMARY KEY, bal INTEGER)")
        c.execute("INSERT INTO acct VALUES ('a', 100)")
        create_table(c.cursor())
    return dsn


def pg_bal(dsn: str) -> int:
    with psycopg.connect(dsn) as c:
        return int(c.execute("SELECT bal FROM acct WHERE id = 'a'").fetchone()[0])  # type: ignore[index]


def pg_add(n: int) -> Any:
    return lambda cur: cur.execute("UPDATE acct SET bal = bal + %s WHERE id = 'a'", (n,))


def test_postgres_disorder_concurrent_cancels_then_late_try(pg_dsn: str) -> None:
    start = pg_bal(pg_dsn)
    g = gid()
    results: list[bool] = []
    go = threading.Barrier(6)

    def cancel() -> None:
        with psycopg.connect(pg_dsn) as c:
            go.wait()
            results.append(postgres_barrier(c, g, "01", "cancel", pg_add(10)))

    threads = [threading.Thread(target=cancel) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [False] * 6
    with psycopg.connect(pg_dsn) as c:
        assert postgres_barrier(c, g, "01", "try", pg_add(-10)) is False
    assert pg_bal(pg_dsn) == start


def test_postgres_try_cancel_applies_each_once(pg_dsn: str) -> None:
    start = pg_bal(pg_dsn)
    g = gid()
    with psycopg.connect(pg_dsn) as c:
        assert postgres_barrier(c, g, "01", "try", pg_add(-10)) is True
        assert postgres_barrier(c, g, "01", "try", pg_add(-10)) is False
        assert postgres_barrier(c, g, "01", "cancel", pg_add(10)) is True
        assert postgres_barrier(c, g, "01", "cancel", pg_add(10)) is False
    assert pg_bal(pg_dsn) == start


def test_postgres_check_back_waits_for_the_local_transaction(pg_dsn: str) -> None:
    g = gid()
    local = psycopg.connect(pg_dsn)
    with local.cursor() as cur:
        msg_local(cur, g, pg_add(-1))  # open, not committed: holds the key
        with psycopg.connect(pg_dsn) as other, other.cursor() as oc:
            oc.execute("SET lock_timeout = '300ms'")
            with pytest.raises(FailedPrecondition, match="in progress"):
                query_prepared(oc, g)
            other.rollback()
    local.commit()
    local.close()
    with psycopg.connect(pg_dsn) as other, other.cursor() as oc:
        query_prepared(oc, g)  # committed now: OK


def test_xa_prepare_commit_and_rollback(pg_dsn: str) -> None:
    start = pg_bal(pg_dsn)
    g1, g2, g3 = gid(), gid(), gid()
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        assert xa_local(c, g1, "01", pg_add(-20)) is True
        assert xa_local(c, g1, "01", pg_add(-20)) is False  # duplicate action
        assert pg_bal(pg_dsn) == start  # prepared, not visible
        xa_commit(c, g1, "01")
        xa_commit(c, g1, "01")  # idempotent
        assert pg_bal(pg_dsn) == start - 20
        assert xa_local(c, g2, "01", pg_add(-5)) is True
        xa_rollback(c, g2, "01")
        xa_rollback(c, g2, "01")
        assert pg_bal(pg_dsn) == start - 20
        # rollback before the action: the late action does nothing
        xa_rollback(c, g3, "01")
        assert xa_local(c, g3, "01", pg_add(-7)) is False
        assert pg_bal(pg_dsn) == start - 20
        left = c.execute("SELECT COUNT(*) FROM pg_prepared_xacts").fetchone()
        assert left is not None and left[0] == 0


# -- Redis ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as r:
        yield r


async def test_redis_barrier_disorder_and_idempotency(redis_server: RedisServer) -> None:
    import redis.asyncio as aioredis

    r = aioredis.from_url(redis_server.url)
    try:
        await r.set("bal:a", 100)
        g = gid()
        assert await redis_adjust(r, g, "01", "action", "bal:a", -30) is True
        assert await redis_adjust(r, g, "01", "action", "bal:a", -30) is False
        assert await redis_adjust(r, g, "01", "compensate", "bal:a", 30) is True
        assert await redis_adjust(r, g, "01", "compensate", "bal:a", 30) is False
        assert int(await r.get("bal:a")) == 100
        g2 = gid()
        assert await redis_adjust(r, g2, "01", "cancel", "bal:a", 30) is False  # null
        assert await redis_adjust(r, g2, "01", "try", "bal:a", -30) is False  # hanging
        with pytest.raises(Aborted, match="insufficient"):
            await redis_adjust(r, gid(), "01", "action", "bal:a", -1000)
        assert int(await r.get("bal:a")) == 100
    finally:
        await r.aclose()


def test_barrier_inside_callers_transaction(tmp_path: Path) -> None:
    """barrier() itself never commits: the caller's rollback undoes the rows too."""
    conn = sqlite_conn(tmp_path / "b.db")
    g = gid()
    cur = conn.cursor()
    cur.execute("BEGIN")
    assert barrier(cur, g, "01", "try", add(-1)) is True
    cur.execute("ROLLBACK")
    assert sqlite_barrier(conn, g, "01", "try", add(-1)) is True
    assert bal(conn) == 99
