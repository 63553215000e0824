"""The coordinator's decisions, sans-IO: given a global transaction and its branch operations,
what happens next (call these branches, change the status, wait), and what a branch's answer
does to the transaction. The asyncio driver in :mod:`wirecall.txn.coordinator` persists and
performs what this module decides.
"""

from __future__ import annotations

import dataclasses

from .model import Branch, BranchOp, GlobalTx, Mode, Outcome, TxStatus

__all__ = ["Step", "apply_outcome", "backoff", "next_step"]

#: how far in the future a transaction with nothing to do is looked at again (a safety net)
IDLE_RECHECK = 3600.0


@dataclasses.dataclass
class Step:
    """``calls``: branch operations to call now (concurrently); ``status``: move the global
    transaction there; ``query``: call the msg's query-prepared check-back; ``wait_until``:
    nothing to do before then."""

    calls: list[Branch] = dataclasses.field(default_factory=list)
    status: str | None = None
    reason: str = ""
    query: bool = False
    wait_until: float | None = None


# plain strings (an enum's class attribute costs a metaclass lookup each time: this is run
# once per step of every transaction)
_FORWARD = {str(k): str(v) for k, v in {
    Mode.SAGA: BranchOp.ACTION, Mode.MSG: BranchOp.ACTION, Mode.TCC: BranchOp.CONFIRM,
    Mode.XA: BranchOp.COMMIT}.items()}
# a msg has no backward operations: rolled back means its local transaction was
_BACKWARD = {str(k): str(v) for k, v in {
    Mode.SAGA: BranchOp.COMPENSATE, Mode.MSG: "", Mode.TCC: BranchOp.CANCEL,
    Mode.XA: BranchOp.ROLLBACK}.items()}
_SAGA, _MSG, _ACTION = str(Mode.SAGA), str(Mode.MSG), str(BranchOp.ACTION)
_PREPARED, _SUBMITTED = str(TxStatus.PREPARED), str(TxStatus.SUBMITTED)
_TERMINAL = frozenset({str(TxStatus.SUCCEEDED), str(TxStatus.FAILED)})


def _deps(g: GlobalTx, ops: list[Branch]) -> dict[str, list[str]]:
    """Forward dependencies by branch id: ordered = each on the previous one;
    concurrent = ``options.orders`` (none: all at once)."""
    ids = [b.branch_id for b in ops]
    if not g.options.concurrent:
        return {bid: ids[:i][-1:] for i, bid in enumerate(ids)}
    return {bid: list(g.options.orders.get(bid, [])) for bid in ids}


def next_step(g: GlobalTx, branches: list[Branch], now: float) -> Step:
    """What to do with ``g`` now."""
    if g.status in _TERMINAL:
        return Step()
    timed_out = g.timeout_at is not None and now >= g.timeout_at
    if g.status == _PREPARED:
        if g.mode == _MSG:
            if timed_out:
                return Step(query=True)
            return Step(wait_until=g.timeout_at if g.timeout_at is not None else now + 10)
        if timed_out:
            return Step(status=TxStatus.ABORTING, reason="global timeout while prepared")
        return Step(wait_until=g.timeout_at if g.timeout_at is not None else now + IDLE_RECHECK)
    if g.status == _SUBMITTED:
        fwd_op = _FORWARD[g.mode]
        ops = [b for b in branches if b.op == fwd_op]
        if g.mode == _SAGA:
            if any(b.status == "failed" for b in ops):
                failed = next(b for b in ops if b.status == "failed")
                return Step(status=TxStatus.ABORTING,
                            reason=f"branch {failed.branch_id} failed: {failed.last_error}")
            if timed_out and not all(b.status == "succeeded" for b in ops):
                return Step(status=TxStatus.ABORTING, reason="global timeout")
        pending = [b for b in ops if b.status != "succeeded"]
        if not pending:
            return Step(status=TxStatus.SUCCEEDED)
        if g.mode in (_SAGA, _MSG):
            deps = _deps(g, ops)
            done = {b.branch_id for b in ops if b.status == "succeeded"}
            ready = [b for b in pending if all(d in done for d in deps.get(b.branch_id, []))]
            return Step(calls=ready)
        return Step(calls=pending)
    # aborting: every backward op, reverse dependency order (a branch's compensation waits
    # for the compensations of the branches that depended on it)
    back_op = _BACKWARD[g.mode]
    ops = [b for b in branches if b.op == back_op]
    pending = [b for b in ops if b.status != "succeeded"]
    if not pending:
        return Step(status=TxStatus.FAILED, reason=g.reason)
    if g.mode != _SAGA:
        return Step(calls=pending)
    fwd = [b for b in branches if b.op == _ACTION]
    deps = _deps(g, fwd)
    dependents: dict[str, list[str]] = {b.branch_id: [] for b in fwd}
    for bid, ds in deps.items():
        for d in ds:
            dependents.setdefault(d, []).append(bid)
    done = {b.branch_id for b in ops if b.status == "succeeded"}
    ready = [b for b in pending if all(x in done for x in dependents.get(b.branch_id, []))]
    return Step(calls=ready)


def backoff(g: GlobalTx) -> float:
    """The next retry interval: the first is ``retry_interval``, then it doubles (capped)."""
    if g.interval <= 0:
        return g.options.retry_interval
    return min(g.interval * 2, g.options.max_retry_interval)


def apply_outcome(g: GlobalTx, b: Branch, outcome: Outcome, detail: str) -> tuple[str, bool]:
    """The branch operation's new status after ``outcome``, and whether the stuck alert fires
    now. Mutates ``b`` (status, attempts, last_error)."""
    alert = False
    if outcome == Outcome.SUCCESS:
        b.status = "succeeded"
        b.last_error = ""
        return b.status, False
    if outcome == Outcome.ONGOING:
        b.last_error = detail or "in progress"
        return b.status, False
    saga_action = g.mode == Mode.SAGA and b.op == BranchOp.ACTION
    b.attempts += 1
    b.last_error = detail
    if saga_action and outcome == Outcome.FAILURE:
        b.status = "failed"
    elif saga_action and g.options.retry_limit is not None and b.attempts > g.options.retry_limit:
        b.status = "failed"
        b.last_error = f"retry limit {g.options.retry_limit} reached: {detail}"
    elif not saga_action and b.attempts == g.options.alert_after:
        alert = True  # must-succeed operations retry forever; alert once at the threshold
    return b.status, alert
