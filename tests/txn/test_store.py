"""The stores' lease and fencing rules, on a real SQLite file and a real PostgreSQL: one owner
at a time claims a due transaction, a coordinator whose lease was taken over writes nothing,
a restarted coordinator takes its own transactions back at once; group commit answers each
operation with its own result or error."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.postgres import PostgresCluster
from txn.conftest import gid
from wirecall.txn.model import Branch, GlobalTx, Options
from wirecall.txn.store import Store, open_store, sql
from wirecall.txn.store.sqlite import SqliteStore

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path / 'txn.db'}")
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
        s = open_store(cluster.create_database("txn_store"))
    await s.open()
    yield s
    await s.close()


def new_tx(owner: str = "", lease_until: float = 0.0, due: float | None = None) -> GlobalTx:
    now = time.time()
    return GlobalTx(gid=gid(), mode="saga", status="submitted", options=Options(),
                    created_at=now, updated_at=now, next_due=now if due is None else due,
                    owner=owner, lease_until=lease_until)


async def test_one_claimer_wins_and_expired_leases_are_claimable(store: Store) -> None:
    g = new_tx()
    assert await store.run(sql.create(g, [Branch(g.gid, "01", "action", "tcp://h:1", "M")]))
    assert not await store.run(sql.create(g, []))  # the gid exists
    now = time.time()
    got = await asyncio.gather(*(store.run(sql.claim_due(f"c{i}", now, now + 30, 10))
                                 for i in range(5)))
    winners = [i for i, gids in enumerate(got) if g.gid in gids]
    assert len(winners) == 1
    # leased: nobody else gets it before the lease ends ...
    assert g.gid not in await store.run(sql.claim_due("other", time.time(), now + 60, 10))
    # ... and anybody after it (the owner died)
    later = now + 31
    assert g.gid in await store.run(sql.claim_due("other", later, later + 30, 10))


async def test_a_coordinator_that_lost_its_lease_writes_nothing(store: Store) -> None:
    g = new_tx(owner="a", lease_until=time.time() - 1)  # a's lease has run out
    b = Branch(g.gid, "01", "action", "tcp://h:1", "M")
    await store.run(sql.create(g, [b]))
    now = time.time()
    assert g.gid in await store.run(sql.claim_due("b", now, now + 30, 10))
    b.status = "succeeded"
    assert not await store.run(sql.record(b, "a", "success", "", now + 30))
    assert not await store.run(sql.update_global(g.gid, expect_status=["submitted"], fence="a",
                                                 status="succeeded"))
    loaded, branches = await store.run(sql.load(g.gid))
    assert loaded.status == "submitted" and loaded.owner == "b"
    assert branches[0].status == "prepared"
    assert await store.run(sql.history(g.gid)) == []
    assert await store.run(sql.record(b, "b", "success", "", now + 30))
    assert (await store.run(sql.load(g.gid)))[1][0].status == "succeeded"


def answer(b: Branch, outcome: str = "success") -> sql.Answer:
    return (b.gid, b.branch_id, b.op, b.status, b.attempts, b.last_error, outcome, "")


@pytest.mark.parametrize("n", [1, 2])  # PostgreSQL: one answer is one statement, two are not
async def test_answers_with_a_status_change_in_one_transaction(store: Store, n: int) -> None:
    """A step's answers and the status change they lead to are one write: both or, if the
    status changed meanwhile, the answers alone ("status"); fenced, nothing ("fenced")."""
    g = new_tx(owner="me", lease_until=time.time() + 30)
    bs = [Branch(g.gid, f"0{i}", "action", "tcp://h:1", "M") for i in range(n)]
    await store.run(sql.create(g, bs))
    for b in bs:
        b.status, b.attempts = "succeeded", 1
    now = time.time()
    done = {"status": "succeeded", "reason": "", "updated_at": now, "next_due": now,
            "interval_s": 0.0, "owner": ""}
    # another coordinator: nothing written
    assert await store.run(sql.record_step([answer(b) for b in bs], "other", 0.0, done,
                                           "submitted")) == "fenced"
    assert await store.run(sql.history(g.gid)) == []
    # the status is no longer the one expected: the answers are written, the status is not
    assert await store.run(sql.record_step([answer(b) for b in bs], "me", now + 30, done,
                                           "aborting")) == "status"
    loaded, branches = await store.run(sql.load(g.gid))
    assert (loaded.status, loaded.owner) == ("submitted", "me")
    assert [b.status for b in branches] == ["succeeded"] * n
    assert len(await store.run(sql.history(g.gid))) == n
    # both at once
    assert await store.run(sql.record_step([answer(b, "retry") for b in bs], "me", 0.0, done,
                                           "submitted")) == "ok"
    loaded, branches = await store.run(sql.load(g.gid))
    assert (loaded.status, loaded.owner, loaded.lease_until) == ("succeeded", "", 0.0)
    assert [h.outcome for h in await store.run(sql.history(g.gid))][n:] == ["retry"] * n
    # without a status change: the answers and the lease (fenced by the owner only)
    assert await store.run(sql.record_step([answer(bs[0])], "me", 1.0)) == "fenced"


async def test_a_restarted_coordinator_takes_its_transactions_back(store: Store) -> None:
    g = new_tx(owner="c1", lease_until=time.time() + 600)
    await store.run(sql.create(g, []))
    assert await store.run(sql.release_owned("c1")) == 1
    now = time.time()
    assert g.gid in await store.run(sql.claim_due("c1", now, now + 30, 10))


async def test_group_commit_isolates_a_failing_operation(tmp_path: Path) -> None:
    s = open_store(f"sqlite:///{tmp_path / 'g.db'}")
    await s.open()
    try:
        txs = [new_tx() for _ in range(20)]

        def boom(cur: object, d: object) -> None:
            raise RuntimeError("this one fails")

        results = await asyncio.gather(*(s.run(sql.create(t, [])) for t in txs), s.run(boom),
                                       return_exceptions=True)
        assert results[:20] == [True] * 20
        assert isinstance(results[20], RuntimeError)
        assert len(await s.run(sql.list_globals(None, 100))) == 20
        assert isinstance(s, SqliteStore)
        assert s.ops == 22 and s.commits < 22  # grouped: fewer fsyncs than operations
    finally:
        await s.close()


async def test_postgres_group_with_a_failing_statement(postgres_cluster: PostgresCluster
                                                       ) -> None:
    """One writer, so the operations queue up into groups: a statement that fails on the
    server (an unknown column) fails alone with PostgreSQL's own error class; every other
    operation of its group is committed; the connection goes on working."""
    import psycopg

    s = open_store(postgres_cluster.create_database("txn_group"), writers=1)
    await s.open()
    try:
        txs = [new_tx() for _ in range(30)]
        b = Branch(txs[0].gid, "01", "action", "tcp://h:1", "M", payload={"n": 1, "memo": "é€ü"})

        def bad(cur: sql.Cursor, d: object) -> None:
            cur.execute("UPDATE txn_global SET nosuch = 1")

        ops = [s.run(sql.create(t, [b] if i == 0 else [])) for i, t in enumerate(txs)]
        results = await asyncio.gather(*ops[:15], s.run(bad), *ops[15:],
                                       return_exceptions=True)
        assert isinstance(results[15], psycopg.errors.UndefinedColumn)
        assert results[:15] + results[16:] == [True] * 30
        assert len(await s.run(sql.list_globals(None, 100))) == 30
        g, branches = await s.run(sql.load(txs[0].gid))  # typed values back through libpq
        assert (g.status, g.options, g.timeout_at) == ("submitted", Options(), None)
        assert branches[0].payload == {"n": 1, "memo": "é€ü"} and branches[0].attempts == 0
        b.status, b.attempts = "succeeded", 1
        assert await s.run(sql.record(b, "other", "success", "déjà vu", time.time() + 30)) is False
        assert not await s.run(sql.history(b.gid))  # fenced: not the owner
        await s.run(sql.add_history(b.gid, "01", "action", "success", "déjà vu"))
        assert [h.detail for h in await s.run(sql.history(b.gid))] == ["déjà vu"]
        assert await s.run(sql.count_by_status()) == {"submitted": 30}
    finally:
        await s.close()


def test_unknown_store_url_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown store URL scheme 'mysql'"):
        open_store("mysql://x")


class _Recorder:
    """A branch service that records the operations it was called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    async def Op(self, gid: str, branch_id: str, op: str, payload: object = None) -> None:
        self.calls.append((gid, branch_id, op))


async def test_a_branch_registered_while_the_timeout_fires_is_cancelled(tmp_path: Path) -> None:
    """The race the seeded crash runs found: a TCC times out in ``prepared`` while its driver
    holds the branch list it read before the last Register committed. Leaving ``prepared``
    closes registration, so the driver reads the branches again: the late branch's cancel is
    called (without that, its try's money stays held forever)."""
    import wirecall
    from wirecall.txn.coordinator import Coordinator
    from wirecall.txn.model import Mode, TxStatus

    rec = _Recorder()
    server = wirecall.Server()
    server.register(rec, name="Rec")
    [url] = await server.start("tcp://127.0.0.1:0")
    coord = Coordinator(open_store(f"sqlite:///{tmp_path / 'txn.db'}"), name="c1",
                        poll_interval=3600)  # no poller: this test drives the step itself
    await coord.start()
    try:
        g = gid()
        opts = Options(timeout=30.0, retry_interval=0.05)
        assert await coord.create(Mode.TCC, g, [], opts, TxStatus.PREPARED)
        stale = await coord.load(g)  # what a driver claiming the timed-out TCC read ...
        await coord.register(g, [Branch(g, "late", op, url, "Rec.Op")  # ... then this commits
                                 for op in ("cancel", "confirm")])
        stale[0].timeout_at = time.time() - 1  # its global timeout has passed
        now = time.time()
        assert await coord.store.run(sql.update_global(  # and it holds the lease
            g, fence="c1", claim=True, now=now, owner="c1", lease_until=now + 30))
        stale[0].owner, stale[0].lease_until = "c1", now + 30
        coord.kick(g, stale)
        done = await coord.wait(g, 10)
        assert done.status == "failed"
        assert rec.calls == [(g, "late", "cancel")]
    finally:
        await coord.close()
        await server.close()
