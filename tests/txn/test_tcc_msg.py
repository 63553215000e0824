"""TCC and 2-phase messages end to end (coordinator and bank in their own processes):
confirm, cancel on a failed try, the global timeout of a prepared TCC, disorder through the
coordinator (cancel before try, late try), confirm retried; a message's do-and-submit, its
aborted local transaction, and the check-back when the submitter never submits (committed,
rolled back, in progress)."""

from __future__ import annotations

import asyncio

import pytest

import wirecall
from support.txn import BankProcess
from txn.conftest import FAST, gid
from wirecall.errors import Aborted, FailedPrecondition
from wirecall.txn.client import TxnClient

pytestmark = pytest.mark.timeout(60)


async def money(bankc: wirecall.Client) -> dict[str, list[int]]:
    return dict(await bankc.call("Bank.Balances"))


async def tcc_transfer(txn: TxnClient, url: str, g: str, src: str, dst: str, amount: int,
                       options: dict[str, object] | None = None) -> dict[str, object]:
    async with txn.tcc(g, options or FAST, wait=10) as t:
        await t.branch("out", url, "Bank.TryOut", "Bank.ConfirmOut", "Bank.CancelOut",
                       {"account": src, "amount": amount})
        await t.branch("in", url, "Bank.TryIn", "Bank.ConfirmIn", "Bank.CancelIn",
                       {"account": dst, "amount": amount})
    return t.result


async def test_tcc_confirm(txn: TxnClient, bankc: wirecall.Client, bank: BankProcess) -> None:
    before = await money(bankc)
    g = gid()
    r = await tcc_transfer(txn, bank.url, g, "acct0", "acct1", 40)
    assert r["status"] == "succeeded"
    after = await money(bankc)
    assert after["acct0"] == [before["acct0"][0] - 40, 0]
    assert after["acct1"] == [before["acct1"][0] + 40, 0]
    ops = [(b, o) for b, o, _ in await bankc.call("Bank.Applied", g)]
    assert ops[:2] == [("out", "try"), ("in", "try")]
    assert sorted(ops[2:]) == [("in", "confirm"), ("out", "confirm")]  # concurrent confirms


async def test_tcc_failed_try_cancels(txn: TxnClient, bankc: wirecall.Client,
                                      bank: BankProcess) -> None:
    before = await money(bankc)
    g = gid()
    with pytest.raises(Aborted, match="insufficient"):
        await tcc_transfer(txn, bank.url, g, "acct2", "acct3", 10**9)
    r = await txn.wait(g, 10)
    assert r["status"] == "failed"
    assert await money(bankc) == before
    # the failed try left nothing; its cancel was a null compensation, "in" never registered
    assert await bankc.call("Bank.Applied", g) == []


async def test_tcc_second_try_fails_first_is_cancelled(
        txn: TxnClient, bankc: wirecall.Client, bank: BankProcess) -> None:
    before = await money(bankc)
    g = gid()
    await bankc.call("Bank.Fault", "TryIn", "ABORTED", 1)
    with pytest.raises(Aborted):
        await tcc_transfer(txn, bank.url, g, "acct2", "acct3", 5)
    assert (await txn.wait(g, 10))["status"] == "failed"
    assert await money(bankc) == before
    assert [(b, o) for b, o, _ in await bankc.call("Bank.Applied", g)] == [
        ("out", "try"), ("out", "cancel")]


async def test_tcc_global_timeout_while_prepared(txn: TxnClient, bankc: wirecall.Client,
                                                 bank: BankProcess) -> None:
    """The business process vanishes after its try: the coordinator cancels at the timeout."""
    before = await money(bankc)
    g = gid()
    t = txn.tcc(g, dict(FAST, timeout=1.5))
    await t.__aenter__()
    await t.branch("out", bank.url, "Bank.TryOut", "Bank.ConfirmOut", "Bank.CancelOut",
                   {"account": "acct4", "amount": 3})
    held = await money(bankc)
    assert held["acct4"] == [before["acct4"][0] - 3, 3]
    r = await txn.wait(g, 10)
    assert r["status"] == "failed"
    assert r["reason"] == "global timeout while prepared"
    assert await money(bankc) == before
    for c in t._clients.values():  # the abandoned business process's connections
        await c.close()


async def test_tcc_cancel_before_try_then_late_try(txn: TxnClient, bankc: wirecall.Client,
                                                   bank: BankProcess) -> None:
    """Disorder: the try is registered, the transaction aborted (cancel runs first, twice
    concurrently by hand as well), then the delayed try arrives and must do nothing."""
    before = await money(bankc)
    g = gid()
    payload = {"account": "acct5", "amount": 9}
    await txn.call("Begin", gid=g, mode="tcc", options=FAST)
    await txn.call("Register", gid=g, branch_id="out", url=bank.url,
                   ops={"confirm": "Bank.ConfirmOut", "cancel": "Bank.CancelOut"},
                   payload=payload)
    r = await txn.call("Abort", gid=g, wait=10)
    assert r["status"] == "failed"
    both = await asyncio.gather(*(bankc.call("Bank.CancelOut", g, "out", "cancel", payload)
                                  for _ in range(2)))
    assert both == ["skipped", "skipped"]
    late = await bankc.call("Bank.TryOut", g, "out", "try", payload)
    assert late == "skipped"
    assert await money(bankc) == before
    assert await bankc.call("Bank.Applied", g) == []


async def test_tcc_confirm_is_retried_until_it_succeeds(
        txn: TxnClient, bankc: wirecall.Client, bank: BankProcess) -> None:
    before = await money(bankc)
    g = gid()
    await bankc.call("Bank.Fault", "ConfirmIn", "INTERNAL", 4)
    r = await tcc_transfer(txn, bank.url, g, "acct6", "acct7", 2, dict(FAST, alert_after=3))
    assert r["status"] == "succeeded"
    after = await money(bankc)
    assert after["acct7"][0] == before["acct7"][0] + 2
    q = await txn.query(g)
    confirm_in = [h["outcome"] for h in q["history"] if h["branch_id"] == "in"]
    assert confirm_in == ["retry"] * 4 + ["success"]
    stats = await txn.call("Stats")
    assert stats["counters"]["stuck"] >= 1  # the alert fired at the 3rd failure


async def test_tcc_register_after_submit_is_refused(txn: TxnClient, bank: BankProcess) -> None:
    g = gid()
    await txn.call("Begin", gid=g, mode="tcc", options=FAST)
    await txn.call("Submit", gid=g, wait=5)
    with pytest.raises(FailedPrecondition, match="only while it is prepared"):
        await txn.call("Register", gid=g, branch_id="x", url=bank.url,
                       ops={"confirm": "Bank.ConfirmOut", "cancel": "Bank.CancelOut"})


# -- 2-phase messages -----------------------------------------------------------------------


def msg_branches(url: str, acct: str, amount: int) -> list[dict[str, object]]:
    return [{"url": url, "action": "Bank.TransIn", "payload": {"account": acct, "amount": amount}}]


def qp(url: str) -> dict[str, str]:
    return {"url": url, "method": "Bank.QueryPrepared"}


async def test_msg_do_and_submit(txn: TxnClient, bankc: wirecall.Client,
                                 bank: BankProcess) -> None:
    before = await money(bankc)
    g = gid()
    msg = txn.msg(g, msg_branches(bank.url, "acct1", 11), query_prepared=qp(bank.url),
                  options=FAST)
    r = await msg.do_and_submit(lambda: bankc.call("Bank.MsgTransOut", g, "acct0", 11), wait=10)
    assert r["status"] == "succeeded"
    after = await money(bankc)
    assert after["acct0"][0] == before["acct0"][0] - 11
    assert after["acct1"][0] == before["acct1"][0] + 11


async def test_msg_local_abort_aborts(txn: TxnClient, bankc: wirecall.Client,
                                      bank: BankProcess) -> None:
    before = await money(bankc)
    g = gid()
    msg = txn.msg(g, msg_branches(bank.url, "acct1", 10**9), query_prepared=qp(bank.url),
                  options=FAST)
    with pytest.raises(Aborted):
        await msg.do_and_submit(lambda: bankc.call("Bank.MsgTransOut", g, "acct0", 10**9))
    assert (await txn.wait(g, 5))["status"] == "failed"
    assert await money(bankc) == before


@pytest.mark.parametrize("local_committed", [True, False])
async def test_msg_check_back_when_the_submitter_never_submits(
        txn: TxnClient, bankc: wirecall.Client, bank: BankProcess, local_committed: bool) -> None:
    before = await money(bankc)
    g = gid()
    msg = txn.msg(g, msg_branches(bank.url, "acct3", 6), query_prepared=qp(bank.url),
                  options=dict(FAST, timeout=1.0))
    await msg.prepare()
    if local_committed:
        await bankc.call("Bank.MsgTransOut", g, "acct2", 6)
    r = await txn.wait(g, 10)  # the submitter "died": no Submit
    after = await money(bankc)
    if local_committed:
        assert r["status"] == "succeeded"
        assert after["acct3"][0] == before["acct3"][0] + 6
    else:
        assert r["status"] == "failed"
        assert r["reason"] == "check-back: local transaction rolled back"
        assert after == before
        with pytest.raises(Aborted):  # the late local transaction is refused
            await bankc.call("Bank.MsgTransOut", g, "acct2", 6)
    assert sum(v[0] for v in after.values()) == sum(v[0] for v in before.values())


async def test_msg_check_back_in_progress_asks_again(
        txn: TxnClient, bankc: wirecall.Client, bank: BankProcess) -> None:
    g = gid()
    await bankc.call("Bank.Fault", "QueryPrepared", "FAILED_PRECONDITION", 2)
    msg = txn.msg(g, msg_branches(bank.url, "acct3", 1), query_prepared=qp(bank.url),
                  options=dict(FAST, timeout=1.0))
    await msg.prepare()
    await bankc.call("Bank.MsgTransOut", g, "acct2", 1)
    assert (await txn.wait(g, 10))["status"] == "succeeded"
    q = await txn.query(g)
    assert [h["outcome"] for h in q["history"] if h["op"] == "query"] == [
        "ongoing", "ongoing", "success"]


async def test_branch_timeouts_in_tcc_confirm_and_msg_delivery(
        txn: TxnClient, bankc: wirecall.Client, bank: BankProcess) -> None:
    """A confirm and a delivery outlive their 0.3 s timeout (and still commit on the bank):
    both are retried, and the barrier keeps each effect single."""
    before = await money(bankc)
    opts = dict(FAST, branch_timeout=0.3)
    await bankc.call("Bank.Fault", "ConfirmIn", "SLEEP", 1, 0.8)
    r = await tcc_transfer(txn, bank.url, gid(), "acct4", "acct5", 4, opts)
    assert r["status"] == "succeeded"
    await bankc.call("Bank.Fault", "TransIn", "SLEEP", 1, 0.8)
    g = gid()
    msg = txn.msg(g, msg_branches(bank.url, "acct5", 6), query_prepared=qp(bank.url),
                  options=opts)
    r = await msg.do_and_submit(lambda: bankc.call("Bank.MsgTransOut", g, "acct4", 6), wait=10)
    assert r["status"] == "succeeded"
    q = await txn.query(g)
    assert "DEADLINE_EXCEEDED" in q["history"][0]["detail"]
    await asyncio.sleep(0.6)  # let the timed-out calls finish on the bank
    after = await money(bankc)
    assert after["acct4"][0] == before["acct4"][0] - 10
    assert after["acct5"][0] == before["acct5"][0] + 10
    assert await bankc.call("Bank.Duplicates") == []
