"""Fixtures for the transaction coordinator's tests: the session PostgreSQL cluster, a bank
branch server and a coordinator, each a real subprocess (module scope: many transactions,
distinct gids, per process)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import wirecall
from support.postgres import postgres_cluster  # noqa: F401  (the session fixture)
from support.txn import BankProcess, CoordinatorProcess
from support.txn_bank import init_bank
from wirecall.txn.client import TxnClient

#: fast knobs for tests: short backoff, short branch timeout
FAST = {"retry_interval": 0.05, "max_retry_interval": 0.2, "branch_timeout": 2.0}
ACCOUNTS = {f"acct{i}": 1000 for i in range(8)}


def gid() -> str:
    return uuid.uuid4().hex


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BankProcess]:
    db = tmp_path_factory.mktemp("bank") / "bank.db"
    init_bank(str(db), ACCOUNTS)
    b = BankProcess(db)
    b.start()
    b.db = db  # type: ignore[attr-defined]
    yield b
    b.kill()


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoordinatorProcess]:
    store = tmp_path_factory.mktemp("coord") / "txn.db"
    c = CoordinatorProcess(f"sqlite:///{store}", lease=2.0, poll=0.1)
    c.start()
    yield c
    c.stop()


def bank_db(bank: BankProcess) -> Path:
    return Path(bank.db)  # type: ignore[attr-defined]


@pytest.fixture
async def txn(coordinator: CoordinatorProcess) -> AsyncIterator[TxnClient]:
    async with await TxnClient.connect(coordinator.url) as t:
        yield t


@pytest.fixture
async def bankc(bank: BankProcess) -> AsyncIterator[wirecall.Client]:
    c = await wirecall.connect(bank.url)
    await c.call("Bank.ClearFaults")
    yield c
    await c.call("Bank.ClearFaults")
    await c.close()
