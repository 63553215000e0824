"""A bank transfer three ways through the wirecall transaction coordinator.

Starts a coordinator (SQLite store in a temp dir) and a bank branch service (its accounts in
another SQLite file, every operation behind the sub-transaction barrier), both on tcp://
loopback, then runs: a saga that succeeds, a saga whose second branch fails (compensated), a
TCC transfer, and a 2-phase message. Prints the balances after each.

    python examples/txn_transfer.py
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import wirecall
from wirecall.errors import Aborted
from wirecall.txn import serve
from wirecall.txn.barrier import create_table, msg_local, query_prepared, sqlite_barrier
from wirecall.txn.client import TxnClient


class Bank:
    """Branch methods take ``gid``, ``branch_id``, ``op`` and ``payload``."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("CREATE TABLE account (id TEXT PRIMARY KEY, balance INTEGER, "
                        "held INTEGER DEFAULT 0)")
        self.db.executemany("INSERT INTO account (id, balance) VALUES (?, ?)",
                            [("alice", 100), ("bob", 100)])
        create_table(self.db.cursor())

    def _adjust(self, gid: str, bid: str, op: str, account: str, balance: int,
                held: int = 0) -> bool:
        def business(cur: Any) -> None:
            cur.execute("UPDATE account SET balance = balance + ?, held = held + ? "
                        "WHERE id = ?", (balance, held, account))
            cur.execute("SELECT balance FROM account WHERE id = ?", (account,))
            if cur.fetchone()[0] < 0:
                raise Aborted(message=f"insufficient balance in {account}")

        return sqlite_barrier(self.db, gid, bid, op, business)

    @wirecall.method(inline=True)
    def Out(self, gid: str, branch_id: str, op: str, payload: dict[str, Any]) -> bool:
        return self._adjust(gid, branch_id, op, payload["account"], -payload["amount"])

    @wirecall.method(inline=True)
    def In(self, gid: str, branch_id: str, op: str, payload: dict[str, Any]) -> bool:
        if payload.get("fail"):
            raise Aborted(message="the receiving account is closed")
        return self._adjust(gid, branch_id, op, payload["account"], payload["amount"])

    @wirecall.method(inline=True)
    def Undo(self, gid: str, branch_id: str, op: str, payload: dict[str, Any]) -> bool:
        sign = 1 if payload["dir"] == "out" else -1
        return self._adjust(gid, branch_id, op, payload["account"], sign * payload["amount"])

    # TCC: try holds the money, confirm releases the hold, cancel gives it back
    @wirecall.method(inline=True)
    def TryOut(self, gid: str, branch_id: str, op: str, payload: dict[str, Any]) -> bool:
        return self._adjust(gid, branch_id, op, payload["account"], -payload["amount"],
                            payload["amount"])

    @wirecall.method(inline=True)
    def ConfirmOut(self, gid: str, branch_id: str, op: str, payload: dict[str, Any]) -> bool:
        return self._adjust(gid, branch_id, op, payload["account"], 0, -payload["amount"])

    @wirecall.method(inline=True)
    def CancelOut(self, gid: str, branch_id: str, op: str, payload: dict[str, Any]) -> bool:
        return self._adjust(gid, branch_id, op, payload["account"], payload["amount"],
                            -payload["amount"])

    @wirecall.method(inline=True)
    def QueryPrepared(self, gid: str, branch_id: str, op: str, payload: Any) -> str:
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            query_prepared(cur, gid)
        finally:
            cur.execute("COMMIT")  # keeps a "rolled back" mark when it raises ABORTED
        return "committed"

    def local_out(self, gid: str, account: str, amount: int) -> None:
        """The message's local transaction (in the submitter's own database)."""
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        msg_local(cur, gid, lambda c: c.execute(
            "UPDATE account SET balance = balance - ? WHERE id = ?", (amount, account)))
        cur.execute("COMMIT")

    def balances(self) -> str:
        rows = self.db.execute("SELECT id, balance, held FROM account ORDER BY id").fetchall()
        return ", ".join(f"{a}={b}" + (f" (held {h})" if h else "") for a, b, h in rows)


def transfer(bank: str, src: str, dst: str, amount: int, fail: bool = False
             ) -> list[dict[str, Any]]:
    return [
        {"url": bank, "action": "Bank.Out", "compensate": "Bank.Undo",
         "payload": {"account": src, "amount": amount, "dir": "out"}},
        {"url": bank, "action": "Bank.In", "compensate": "Bank.Undo",
         "payload": {"account": dst, "amount": amount, "dir": "in", "fail": fail}},
    ]


async def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="wirecall-txn-example-"))
    server, coordinator, urls = await serve(f"sqlite:///{tmp / 'txn.db'}",
                                            ("tcp://127.0.0.1:0",))
    bank_impl = Bank(tmp / "bank.db")
    bank_server = wirecall.Server()
    bank_server.register(bank_impl)
    bank = (await bank_server.start("tcp://127.0.0.1:0"))[0]
    print(f"coordinator {urls[0]}, bank {bank}")
    print(f"start:          {bank_impl.balances()}")
    async with await TxnClient.connect(urls[0]) as txn:
        r = await txn.saga(await txn.new_gid(), transfer(bank, "alice", "bob", 30), wait=10)
        print(f"saga ok:        {r['status']:9} {bank_impl.balances()}")
        r = await txn.saga(await txn.new_gid(), transfer(bank, "alice", "bob", 30, fail=True),
                           {"retry_interval": 0.05}, wait=10)
        print(f"saga failing:   {r['status']:9} {bank_impl.balances()}  ({r['reason']})")
        async with txn.tcc(await txn.new_gid(), wait=10) as tcc:
            await tcc.branch("out", bank, "Bank.TryOut", "Bank.ConfirmOut", "Bank.CancelOut",
                             {"account": "bob", "amount": 50})
            print(f"tcc tried:      {'':9} {bank_impl.balances()}")
        print(f"tcc confirmed:  {tcc.result['status']:9} {bank_impl.balances()}")
        gid = await txn.new_gid()
        msg = txn.msg(gid, [{"url": bank, "action": "Bank.In",
                             "payload": {"account": "alice", "amount": 10}}],
                      query_prepared={"url": bank, "method": "Bank.QueryPrepared"})

        async def local() -> None:
            bank_impl.local_out(gid, "bob", 10)

        r = await msg.do_and_submit(local, wait=10)
        print(f"message:        {r['status']:9} {bank_impl.balances()}")
        q = await txn.query(gid)
        print(f"history of {gid[:8]}: " + ", ".join(
            f"{h['branch_id']}/{h['op']}={h['outcome']}" for h in q["history"]))
    await bank_server.close()
    await server.close()
    await coordinator.close()
    total = bank_impl.db.execute("SELECT SUM(balance + held) FROM account").fetchone()[0]
    print(f"total: {total} (200 at the start, 50 paid out by the TCC)")


if __name__ == "__main__":
    asyncio.run(main())
