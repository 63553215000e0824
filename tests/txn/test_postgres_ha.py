"""Two coordinators share one PostgreSQL store: kill -9 one with transactions in flight, the
other claims them when their lease runs out and finishes them. Also: a TCC and a msg on the
PostgreSQL store, and XA branches on PostgreSQL driven by the coordinator."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import wirecall
from support.postgres import PostgresCluster
from support.txn import BankProcess, CoordinatorProcess, Proc
from support.txn_bank import init_bank
from txn.conftest import ACCOUNTS, FAST, gid
from wirecall.txn.client import TxnClient

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def pg_store(postgres_cluster: PostgresCluster) -> str:
    return postgres_cluster.create_database("txn_ha")


@pytest.fixture
def ha_bank(tmp_path: Path) -> Iterator[BankProcess]:
    db = tmp_path / "bank.db"
    init_bank(str(db), ACCOUNTS)
    b = BankProcess(db)
    b.start()
    yield b
    b.kill()


def transfer(url: str, src: str, dst: str, n: int) -> list[dict[str, Any]]:
    return [
        {"url": url, "action": "Bank.TransOut", "compensate": "Bank.TransOutCompensate",
         "payload": {"account": src, "amount": n}},
        {"url": url, "action": "Bank.TransIn", "compensate": "Bank.TransInCompensate",
         "payload": {"account": dst, "amount": n}},
    ]


async def test_the_survivor_finishes_the_dead_coordinators_transactions(
        pg_store: str, ha_bank: BankProcess) -> None:
    a = CoordinatorProcess(pg_store, name="coord-a", lease=1.0, poll=0.1)
    b = CoordinatorProcess(pg_store, name="coord-b", lease=1.0, poll=0.1)
    a.start()
    b.start()
    bankc = await wirecall.connect(ha_bank.url)
    try:
        before = await bankc.call("Bank.Balances")
        # every TransIn sleeps 0.5 s: A is killed with all of them in flight
        await bankc.call("Bank.Fault", "TransIn", "SLEEP", 20, 0.5)
        gids = [gid() for _ in range(20)]
        async with await TxnClient.connect(a.url) as ta:
            for i, g in enumerate(gids):
                await ta.saga(g, transfer(ha_bank.url, f"acct{i % 4}", f"acct{4 + i % 4}", 3),
                              FAST)
        await asyncio.sleep(0.2)
        a.kill()
        killed_at = time.monotonic()
        async with await TxnClient.connect(b.url) as tb:
            results = [await tb.wait(g, 30) for g in gids]
            assert {r["status"] for r in results} == {"succeeded"}, results
            took = time.monotonic() - killed_at
            stats = await tb.call("Stats")
        assert stats["counters"]["succeeded"] > 0  # B finished them (A is dead)
        assert took < 20
        after = await bankc.call("Bank.Balances")
        assert sum(v[0] for v in after.values()) == sum(v[0] for v in before.values())
        assert await bankc.call("Bank.Duplicates") == []
        with psycopg.connect(pg_store) as c:
            owners = c.execute("SELECT DISTINCT owner FROM txn_global WHERE gid = ANY(%s)",
                               (gids,)).fetchall()
        assert owners == [("",)]  # terminal: nobody holds a lease
    finally:
        await bankc.close()
        a.kill()
        b.stop()


async def test_tcc_and_msg_on_the_postgres_store(pg_store: str, ha_bank: BankProcess) -> None:
    c = CoordinatorProcess(pg_store, name="coord-c", lease=2.0, poll=0.1)
    c.start()
    bankc = await wirecall.connect(ha_bank.url)
    try:
        async with await TxnClient.connect(c.url) as txn:
            g = gid()
            async with txn.tcc(g, FAST, wait=10) as t:
                await t.branch("out", ha_bank.url, "Bank.TryOut", "Bank.ConfirmOut",
                               "Bank.CancelOut", {"account": "acct0", "amount": 5})
            assert t.result["status"] == "succeeded"
            g2 = gid()
            m = txn.msg(g2, [{"url": ha_bank.url, "action": "Bank.TransIn",
                              "payload": {"account": "acct1", "amount": 5}}],
                        query_prepared={"url": ha_bank.url, "method": "Bank.QueryPrepared"},
                        options=dict(FAST, timeout=1.0))
            await m.prepare()
            await bankc.call("Bank.MsgTransOut", g2, "acct2", 5)
            assert (await txn.wait(g2, 10))["status"] == "succeeded"  # by check-back
        bal = await bankc.call("Bank.Balances")
        assert bal["acct0"] == [995, 0] and bal["acct1"][0] == 1005 and bal["acct2"][0] == 995
    finally:
        await bankc.close()
        c.stop()


# -- XA: branches on PostgreSQL ------------------------------------------------------------

XA_BANK = '''
import os
import psycopg
from wirecall.errors import Aborted
from wirecall.txn.xa import xa_commit, xa_local, xa_rollback

DSN = os.environ["XA_DSN"]


class XaBank:
    def Action(self, gid: str, branch_id: str, op: str, payload: dict) -> bool:
        def work(cur):
            cur.execute("UPDATE acct SET bal = bal + %s WHERE id = %s",
                        (payload["amount"], payload["account"]))
            cur.execute("SELECT bal FROM acct WHERE id = %s", (payload["account"],))
            if cur.fetchone()[0] < 0:
                raise Aborted(message="insufficient balance")
        with psycopg.connect(DSN, autocommit=True) as conn:
            return xa_local(conn, gid, branch_id, work)

    def Commit(self, gid: str, branch_id: str, op: str, payload: dict) -> None:
        with psycopg.connect(DSN, autocommit=True) as conn:
            xa_commit(conn, gid, branch_id)

    def Rollback(self, gid: str, branch_id: str, op: str, payload: dict) -> None:
        with psycopg.connect(DSN, autocommit=True) as conn:
            xa_rollback(conn, gid, branch_id)
'''


async def test_xa_commit_and_rollback_through_the_coordinator(
        postgres_cluster: PostgresCluster, tmp_path: Path, coordinator: CoordinatorProcess
) -> None:
    dsn = postgres_cluster.create_database("txn_xa")
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE acct (id TEXT PRIMARY KEY, bal INTEGER NOT NULL)")
        c.execute("INSERT INTO acct VALUES ('x', 100), ('y', 100)")
    (tmp_path / "xa_bank.py").write_text(XA_BANK)
    import sys

    from support.servers import free_port

    port = free_port()
    srv = Proc([sys.executable, "-m", "wirecall.cli", "serve", "xa_bank:XaBank", "--listen",
                f"tcp://127.0.0.1:{port}"], {"XA_DSN": dsn})
    srv.env["PYTHONPATH"] = f"{tmp_path}:{srv.env['PYTHONPATH']}"
    url = srv.start()

    def bal() -> dict[str, int]:
        with psycopg.connect(dsn) as c:
            return dict(c.execute("SELECT id, bal FROM acct").fetchall())  # type: ignore[arg-type]

    try:
        async with await TxnClient.connect(coordinator.url) as txn:
            async with txn.xa(gid(), FAST, wait=10) as x:
                await x.branch("01", url, "XaBank.Action", "XaBank.Commit", "XaBank.Rollback",
                               {"account": "x", "amount": -30})
                await x.branch("02", url, "XaBank.Action", "XaBank.Commit", "XaBank.Rollback",
                               {"account": "y", "amount": 30})
            assert x.result["status"] == "succeeded"
            assert bal() == {"x": 70, "y": 130}
            with pytest.raises(wirecall.RpcError, match="insufficient"):
                async with txn.xa(gid(), FAST, wait=10) as x2:
                    await x2.branch("01", url, "XaBank.Action", "XaBank.Commit",
                                    "XaBank.Rollback", {"account": "y", "amount": 30})
                    await x2.branch("02", url, "XaBank.Action", "XaBank.Commit",
                                    "XaBank.Rollback", {"account": "x", "amount": -500})
            assert x2.result["status"] == "failed"
            assert bal() == {"x": 70, "y": 130}
        with psycopg.connect(dsn) as c:
            assert c.execute("SELECT COUNT(*) FROM pg_prepared_xacts").fetchone() == (0,)
    finally:
        with contextlib.suppress(Exception):
            srv.kill()
