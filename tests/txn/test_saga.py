"""Sagas end to end: a coordinator process (SQLite store) calling a bank branch server process.

Success, business failure with compensation, in-progress answers, retries with backoff, the
retry limit, branch timeouts (the late call applied once), the global timeout, a concurrent
saga with a dependency graph (order forward and backward), bad input, the RPC read API.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

import wirecall
from support.txn import BankProcess
from txn.conftest import FAST, gid
from wirecall.errors import InvalidArgument, NotFound
from wirecall.txn.client import TxnClient

pytestmark = pytest.mark.timeout(60)


def transfer(url: str, src: str, dst: str, amount: int) -> list[dict[str, Any]]:
    return [
        {"url": url, "action": "Bank.TransOut", "compensate": "Bank.TransOutCompensate",
         "payload": {"account": src, "amount": amount}},
        {"url": url, "action": "Bank.TransIn", "compensate": "Bank.TransInCompensate",
         "payload": {"account": dst, "amount": amount}},
    ]


async def balances(bankc: wirecall.Client) -> dict[str, int]:
    return {k: v[0] for k, v in (await bankc.call("Bank.Balances")).items()}


async def test_saga_success_moves_money_once(txn: TxnClient, bankc: wirecall.Client,
                                             bank: BankProcess) -> None:
    before = await balances(bankc)
    g = gid()
    r = await txn.saga(g, transfer(bank.url, "acct0", "acct1", 30), FAST, wait=10)
    assert r["status"] == "succeeded"
    after = await balances(bankc)
    assert after["acct0"] == before["acct0"] - 30
    assert after["acct1"] == before["acct1"] + 30
    assert await bankc.call("Bank.Applied", g) == [["01", "action", "TransOut"],
                                                   ["02", "action", "TransIn"]]
    q = await txn.query(g)
    assert [(b["branch_id"], b["op"], b["status"]) for b in q["branches"]] == [
        ("01", "action", "succeeded"), ("01", "compensate", "prepared"),
        ("02", "action", "succeeded"), ("02", "compensate", "prepared")]
    assert [(h["branch_id"], h["op"], h["outcome"]) for h in q["history"]] == [
        ("01", "action", "success"), ("02", "action", "success")]
    # submitting the same gid again changes nothing
    again = await txn.saga(g, transfer(bank.url, "acct0", "acct1", 30), FAST, wait=1)
    assert again["status"] == "succeeded"
    assert await balances(bankc) == after


async def test_business_failure_compensates(txn: TxnClient, bankc: wirecall.Client,
                                            bank: BankProcess) -> None:
    before = await balances(bankc)
    g = gid()
    await bankc.call("Bank.Fault", "TransIn", "ABORTED", 1)
    r = await txn.saga(g, transfer(bank.url, "acct2", "acct3", 50), FAST, wait=10)
    assert r["status"] == "failed"
    assert "02 failed" in r["reason"]
    assert await balances(bankc) == before
    # TransOut applied and compensated; TransIn's compensation was a null compensation
    assert await bankc.call("Bank.Applied", g) == [["01", "action", "TransOut"],
                                                   ["01", "compensate", "TransOutCompensate"]]


async def test_insufficient_balance_is_a_business_failure(
        txn: TxnClient, bankc: wirecall.Client, bank: BankProcess) -> None:
    before = await balances(bankc)
    g = gid()
    r = await txn.saga(g, transfer(bank.url, "acct2", "acct3", 10**9), FAST, wait=10)
    assert r["status"] == "failed"
    assert await balances(bankc) == before
    assert await bankc.call("Bank.Applied", g) == []  # both compensations were null


async def test_in_progress_then_success(txn: TxnClient, bankc: wirecall.Client,
                                        bank: BankProcess) -> None:
    g = gid()
    await bankc.call("Bank.Fault", "TransIn", "FAILED_PRECONDITION", 3)
    r = await txn.saga(g, transfer(bank.url, "acct4", "acct5", 1), FAST, wait=10)
    assert r["status"] == "succeeded"
    q = await txn.query(g)
    outcomes = [h["outcome"] for h in q["history"] if h["branch_id"] == "02"]
    assert outcomes == ["ongoing", "ongoing", "ongoing", "success"]
    tin = next(b for b in q["branches"] if b["branch_id"] == "02" and b["op"] == "action")
    assert tin["attempts"] == 0  # in progress is not a failure


async def test_errors_are_retried_with_backoff(txn: TxnClient, bankc: wirecall.Client,
                                               bank: BankProcess) -> None:
    g = gid()
    await bankc.call("Bank.Fault", "TransIn", "UNAVAILABLE", 3)
    r = await txn.saga(g, transfer(bank.url, "acct4", "acct5", 1), FAST, wait=10)
    assert r["status"] == "succeeded"
    q = await txn.query(g)
    hist = [h for h in q["history"] if h["branch_id"] == "02"]
    assert [h["outcome"] for h in hist] == ["retry", "retry", "retry", "success"]
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(hist)]
    # the interval doubles (0.05, 0.1, 0.2): each retry waits at least that long (a lower
    # bound only -- a loaded machine makes the gaps longer, never shorter)
    for gap, interval in zip(gaps, (0.05, 0.1, 0.2), strict=True):
        assert gap >= interval * 0.9, (gaps, interval)
    assert "UNAVAILABLE" in hist[0]["detail"]


async def test_retry_limit_moves_to_compensation(txn: TxnClient, bankc: wirecall.Client,
                                                 bank: BankProcess) -> None:
    before = await balances(bankc)
    g = gid()
    await bankc.call("Bank.Fault", "TransIn", "UNAVAILABLE", 50)
    r = await txn.saga(g, transfer(bank.url, "acct4", "acct5", 7), dict(FAST, retry_limit=2),
                       wait=10)
    assert r["status"] == "failed"
    assert "retry limit 2" in r["reason"]
    assert await balances(bankc) == before


async def test_branch_timeout_retries_and_applies_once(
        txn: TxnClient, bankc: wirecall.Client, bank: BankProcess) -> None:
    before = await balances(bankc)
    g = gid()
    # the first TransIn outlives its 0.3 s timeout but still commits on the branch
    await bankc.call("Bank.Fault", "TransIn", "SLEEP", 1, 0.8)
    r = await txn.saga(g, transfer(bank.url, "acct6", "acct7", 5),
                       dict(FAST, branch_timeout=0.3), wait=10)
    assert r["status"] == "succeeded"
    q = await txn.query(g)
    assert "DEADLINE_EXCEEDED" in q["history"][1]["detail"]
    after = await balances(bankc)
    assert after["acct7"] == before["acct7"] + 5
    assert await bankc.call("Bank.Duplicates") == []


async def test_global_timeout_aborts(txn: TxnClient, bankc: wirecall.Client,
                                     bank: BankProcess) -> None:
    before = await balances(bankc)
    g = gid()
    await bankc.call("Bank.Fault", "TransIn", "FAILED_PRECONDITION", 1000)
    r = await txn.saga(g, transfer(bank.url, "acct6", "acct7", 9), dict(FAST, timeout=0.7),
                       wait=10)
    assert r["status"] == "failed"
    assert r["reason"] == "global timeout"
    assert await balances(bankc) == before


async def test_concurrent_saga_follows_the_graph(txn: TxnClient, bankc: wirecall.Client,
                                                 bank: BankProcess) -> None:
    url = bank.url

    def step(bid: str, kind: str, acct: str) -> dict[str, Any]:
        return {"branch_id": bid, "url": url, "action": f"Bank.Trans{kind}",
                "compensate": f"Bank.Trans{kind}Compensate",
                "payload": {"account": acct, "amount": 2}}

    branches = [step("a", "Out", "acct0"), step("b", "Out", "acct1"),
                step("c", "In", "acct2"), step("d", "In", "acct3")]
    orders = {"c": ["a", "b"], "d": ["c"]}
    g = gid()
    r = await txn.saga(g, branches, dict(FAST, concurrent=True, orders=orders), wait=10)
    assert r["status"] == "succeeded"
    order = [x[0] for x in await bankc.call("Bank.Applied", g)]
    assert set(order[:2]) == {"a", "b"} and order[2:] == ["c", "d"]
    # backward: d fails, so c is compensated before a and b
    before = await balances(bankc)
    g2 = gid()
    await bankc.call("Bank.Fault", "TransIn", "OK", 1)  # c passes ...
    await bankc.call("Bank.Fault", "TransIn", "ABORTED", 1)  # ... d fails
    r = await txn.saga(g2, branches, dict(FAST, concurrent=True, orders=orders), wait=10)
    assert r["status"] == "failed"
    applied = [(x[0], x[1]) for x in await bankc.call("Bank.Applied", g2)]
    comp = [bid for bid, op in applied if op == "compensate"]
    assert comp[0] == "c" and set(comp[1:]) == {"a", "b"}
    assert await balances(bankc) == before


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"gid": "x'; DROP TABLE txn_global; --"}, "gid"),
    ({"options": {"retries": 3}}, "unknown option(s) retries"),
    ({"options": {"branch_timeout": -1}}, "options.branch_timeout"),
    ({"branches": [{"url": "tcp://127.0.0.1:1", "action": "A", "compensate": "B",
                    "colour": 1}]}, "branches[0]: unknown field"),
    ({"branches": [{"url": "nope", "action": "A", "compensate": "B"}]}, "branches[0].url"),
    ({"branches": [{"url": "tcp://127.0.0.1:1", "compensate": "B"}]}, "branches[0].action"),
    ({"options": {"concurrent": True, "orders": {"01": ["01"]}}}, "cycle"),
    ({"options": {"orders": {"01": ["zz"]}}}, "unknown branch id 'zz'"),
    ({"branches": []}, "branches must be a list"),
])
async def test_bad_input_is_invalid_argument_naming_the_field(
        txn: TxnClient, kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"gid": gid(), "branches": [
        {"url": "tcp://127.0.0.1:1", "action": "A", "compensate": "B"}], "options": None}
    args.update(kwargs)
    with pytest.raises(InvalidArgument) as e:
        await txn.call("Saga", **args)
    assert field in e.value.message


async def test_read_api_list_stats_and_not_found(txn: TxnClient, bank: BankProcess) -> None:
    g = gid()
    await txn.saga(g, transfer(bank.url, "acct0", "acct1", 1), FAST, wait=10)
    listed = await txn.call("List", status="succeeded", limit=1000)
    assert g in [x["gid"] for x in listed]
    stats = await txn.call("Stats")
    assert stats["counters"]["started"] >= 1
    assert stats["counters"]["succeeded"] >= 1
    assert stats["by_status"]["succeeded"] >= 1
    # create, answers with the final status: at least 2 commits, 2 + 2 writes
    assert stats["store"]["commits"] >= 2 and stats["store"]["operations"] >= 2
    with pytest.raises(NotFound):
        await txn.query(gid())
    with pytest.raises(InvalidArgument, match="status must be one of"):
        await txn.call("List", status="weird")


async def test_an_answer_is_recorded_while_the_next_branch_runs(
        txn: TxnClient, bankc: wirecall.Client, bank: BankProcess) -> None:
    """A branch's answer waits in memory at most ``record_delay`` (50 ms) for a later write to
    share its commit: with the second branch slow, the first one's answer is in the store
    long before the saga ends (and a crash before then only re-calls it: the barrier)."""
    g = gid()
    await bankc.call("Bank.Fault", "TransIn", "SLEEP", 1, 1.5)
    await txn.saga(g, transfer(bank.url, "acct4", "acct5", 1), FAST)
    deadline = time.monotonic() + 1.2
    while True:
        q = await txn.query(g)
        got = {(b["branch_id"], b["op"]): b["status"] for b in q["branches"]}
        if got[("01", "action")] == "succeeded":
            break
        assert time.monotonic() < deadline, q  # (recorded 50 ms after TransOut answered)
        await asyncio.sleep(0.01)
    assert q["global"]["status"] == "submitted" and got[("02", "action")] == "prepared"
    assert [(h["branch_id"], h["outcome"]) for h in q["history"]] == [("01", "success")]
    assert (await txn.wait(g, 15))["status"] == "succeeded"
