"""``Txn``: the coordinator as a wirecall service (every wire the server listens on).

    Txn.Saga(gid, branches, options?, wait?)      submit a saga; branches are
                                                 [{branch_id?, url, action, compensate, payload?}]
    Txn.Prepare(gid, branches, options?)         2-phase message, phase 1
                                                 ([{url, action, payload?}];
                                                 options.query_prepared = {url, method})
    Txn.Begin(gid, mode, options?)                TCC or XA: open the global transaction
    Txn.Register(gid, branch_id, url, ops, payload?)  TCC {confirm, cancel} / XA {commit, rollback}
    Txn.Submit(gid, wait?)                        msg / TCC / XA: go forward
    Txn.Abort(gid)                                go backward (or fail a prepared msg)
    Txn.Retry(gid)                                due now, backoff reset
    Txn.Query(gid) / Txn.List(status?, limit?) / Txn.Stats() / Txn.Wait(gid, timeout)

Every answer is plain data (dicts, lists, strings), so any codec carries it. Bad input is
INVALID_ARGUMENT naming the field; unknown options are errors.
"""

from __future__ import annotations

import uuid
from typing import Any

from wirecall.errors import InvalidArgument

from .coordinator import Coordinator
from .model import Branch, BranchOp, Mode, Options, TxStatus, check_gid
from .store import sql

__all__ = ["Txn"]

MAX_BRANCHES = 1000
MAX_WAIT = 300.0


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 1000:
        raise InvalidArgument(message=f"{field} must be a non-empty string")
    return value


def _url(value: Any, field: str) -> str:
    v = _text(value, field)
    if "://" not in v:
        raise InvalidArgument(message=f"{field} must be a URL such as tcp://host:port, got {v!r}")
    return v


def _branch_list(raw: Any, field: str = "branches") -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw or len(raw) > MAX_BRANCHES:
        raise InvalidArgument(message=f"{field} must be a list of 1..{MAX_BRANCHES} branches")
    for i, b in enumerate(raw):
        if not isinstance(b, dict):
            raise InvalidArgument(message=f"{field}[{i}] must be a mapping")
    return raw


def _check_orders(options: Options, ids: list[str]) -> None:
    known = set(ids)
    for bid, deps in options.orders.items():
        if bid not in known:
            raise InvalidArgument(message=f"options.orders: unknown branch id {bid!r}")
        for d in deps:
            if d not in known:
                raise InvalidArgument(message=f"options.orders[{bid!r}]: unknown branch id {d!r}")
    seen: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(n: str) -> None:
        if seen.get(n) == 2:
            return
        if seen.get(n) == 1:
            raise InvalidArgument(message=f"options.orders has a cycle through {n!r}")
        seen[n] = 1
        for d in options.orders.get(n, []):
            visit(d)
        seen[n] = 2

    for n in ids:
        visit(n)


def _wait(wait: Any) -> float:
    if not isinstance(wait, int | float) or wait < 0 or wait > MAX_WAIT:
        raise InvalidArgument(message=f"wait must be 0..{MAX_WAIT:g} seconds")
    return float(wait)


class Txn:
    """The coordinator's RPC API."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator

    async def NewGid(self) -> str:
        return uuid.uuid4().hex

    async def Saga(self, gid: str, branches: list[dict[str, Any]],
                   options: dict[str, Any] | None = None, wait: float = 0.0) -> dict[str, Any]:
        gid = check_gid(gid)
        opts = Options.parse(options)
        rows: list[Branch] = []
        ids: list[str] = []
        for i, b in enumerate(_branch_list(branches)):
            unknown = set(b) - {"branch_id", "url", "action", "compensate", "payload"}
            if unknown:
                raise InvalidArgument(message=f"branches[{i}]: unknown field(s) {sorted(unknown)}")
            bid = check_gid(b.get("branch_id", f"{i + 1:02d}"), f"branches[{i}].branch_id")
            if bid in ids:
                raise InvalidArgument(message=f"branches[{i}].branch_id {bid!r} is repeated")
            ids.append(bid)
            url = _url(b.get("url"), f"branches[{i}].url")
            payload = b.get("payload")
            rows.append(Branch(gid, bid, BranchOp.ACTION, url,
                               _text(b.get("action"), f"branches[{i}].action"), payload))
            rows.append(Branch(gid, bid, BranchOp.COMPENSATE, url,
                               _text(b.get("compensate"), f"branches[{i}].compensate"), payload))
        _check_orders(opts, ids)
        await self.coordinator.create(Mode.SAGA, gid, rows, opts, TxStatus.SUBMITTED)
        return await self._answer(gid, _wait(wait))

    async def Prepare(self, gid: str, branches: list[dict[str, Any]],
                      options: dict[str, Any] | None = None) -> dict[str, Any]:
        gid = check_gid(gid)
        opts = Options.parse(options)
        rows: list[Branch] = []
        ids: list[str] = []
        for i, b in enumerate(_branch_list(branches)):
            unknown = set(b) - {"branch_id", "url", "action", "payload"}
            if unknown:
                raise InvalidArgument(message=f"branches[{i}]: unknown field(s) {sorted(unknown)}")
            bid = check_gid(b.get("branch_id", f"{i + 1:02d}"), f"branches[{i}].branch_id")
            if bid in ids:
                raise InvalidArgument(message=f"branches[{i}].branch_id {bid!r} is repeated")
            ids.append(bid)
            rows.append(Branch(gid, bid, BranchOp.ACTION, _url(b.get("url"), f"branches[{i}].url"),
                               _text(b.get("action"), f"branches[{i}].action"), b.get("payload")))
        _check_orders(opts, ids)
        await self.coordinator.create(Mode.MSG, gid, rows, opts, TxStatus.PREPARED)
        return await self._answer(gid, 0.0)

    async def Begin(self, gid: str, mode: str, options: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
        gid = check_gid(gid)
        m = self.coordinator.check_mode(mode)
        if m not in (Mode.TCC, Mode.XA):
            raise InvalidArgument(message="mode: Begin opens a tcc or xa transaction "
                                  "(saga: Txn.Saga, msg: Txn.Prepare)")
        opts = Options.parse(options)
        await self.coordinator.create(m, gid, [], opts, TxStatus.PREPARED)
        return await self._answer(gid, 0.0)

    async def Register(self, gid: str, branch_id: str, url: str, ops: dict[str, str],
                       payload: Any = None) -> dict[str, Any]:
        gid = check_gid(gid)
        branch_id = check_gid(branch_id, "branch_id")
        url = _url(url, "url")
        g, _ = await self.coordinator.load(gid)
        want = {Mode.TCC: {"confirm", "cancel"}, Mode.XA: {"commit", "rollback"}}.get(Mode(g.mode))
        if want is None:
            raise InvalidArgument(
                message=f"transaction {gid} is a {g.mode}: only tcc and xa register")
        if not isinstance(ops, dict) or set(ops) != want:
            raise InvalidArgument(message=f"ops must name exactly {sorted(want)} methods")
        rows = [Branch(gid, branch_id, op, url, _text(ops[op], f"ops.{op}"), payload)
                for op in sorted(want)]
        await self.coordinator.register(gid, rows)
        return await self._answer(gid, 0.0)

    async def Submit(self, gid: str, wait: float = 0.0) -> dict[str, Any]:
        gid = check_gid(gid)
        w = _wait(wait)
        await self.coordinator.submit(gid)
        return await self._answer(gid, w)

    async def Abort(self, gid: str, wait: float = 0.0) -> dict[str, Any]:
        gid = check_gid(gid)
        w = _wait(wait)
        await self.coordinator.abort(gid)
        return await self._answer(gid, w)

    async def Retry(self, gid: str) -> dict[str, Any]:
        gid = check_gid(gid)
        await self.coordinator.retry(gid)
        return await self._answer(gid, 0.0)

    async def Wait(self, gid: str, timeout: float = 10.0) -> dict[str, Any]:
        return await self._answer(check_gid(gid), _wait(timeout))

    async def Query(self, gid: str) -> dict[str, Any]:
        """The global transaction, its branch operations and their history."""
        gid = check_gid(gid)
        g, branches = await self.coordinator.load(gid)
        hist = await self.coordinator.store.run(sql.history(gid))
        return {"global": g.as_dict(), "branches": [b.as_dict() for b in branches],
                "history": [h.as_dict() for h in hist]}

    async def List(self, status: str = "", limit: int = 100) -> list[dict[str, Any]]:
        if status and status not in {s.value for s in TxStatus}:
            raise InvalidArgument(message=f"status must be one of {[s.value for s in TxStatus]}")
        if not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InvalidArgument(message="limit must be 1..10000")
        rows = await self.coordinator.store.run(sql.list_globals(status or None, limit))
        return [g.as_dict() for g in rows]

    async def Stats(self) -> dict[str, Any]:
        """This coordinator's counters, and every transaction in the store by status."""
        by_status = await self.coordinator.store.run(sql.count_by_status())
        store = self.coordinator.store
        return {"counters": dict(self.coordinator.counters), "by_status": by_status,
                "coordinator": self.coordinator.name, "active": len(self.coordinator.active()),
                # this process's store: local transactions committed, operations run in them
                "store": {"commits": getattr(store, "commits", 0),
                          "operations": getattr(store, "ops", 0)}}

    async def _answer(self, gid: str, wait: float) -> dict[str, Any]:
        if wait > 0:
            g = await self.coordinator.wait(gid, wait)
        else:
            g, _ = await self.coordinator.load(gid)
        return {"gid": g.gid, "mode": g.mode, "status": g.status, "reason": g.reason}
