"""The coordinator's driver (asyncio): persists what :mod:`.plan` decides and performs it.

Each global transaction is driven by the coordinator that holds its lease (``owner``,
``lease_until``): every write it makes renews the lease and is fenced by it, so a coordinator
that lost the transaction to another (its lease expired) writes nothing more. A poller claims
due transactions (retries, timeouts, check-backs, and those of a dead coordinator once their
lease runs out). Branches are wirecall methods called through :func:`wirecall.connect` with
the named parameters ``gid``, ``branch_id``, ``op`` and ``payload``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections import Counter
from typing import Any

import wirecall
from wirecall.errors import InvalidArgument, NotFound, RpcError
from wirecall.status import Status

from . import plan
from .crash import armed, crash_point
from .model import (
    TERMINAL,
    Branch,
    BranchOp,
    GlobalTx,
    Mode,
    Options,
    Outcome,
    TxStatus,
    classify,
)
from .store import Store, sql

__all__ = ["COUNTERS", "Coordinator"]

log = logging.getLogger("wirecall.txn")

COUNTERS = ("started", "succeeded", "failed", "compensated", "stuck")
#: what a driver step tells the loop
NEXT, STOP, RELOAD = "next", "stop", "reload"
#: retries due sooner than this are woken by a local timer (later ones: the poller)
WAKE_WITHIN = 60.0
#: a msg's first check-back, when its options set no timeout
MSG_CHECK_AFTER = 10.0
#: TCC/XA global timeout when the options set none (DTM's TimeoutToFail is 35 s)
DEFAULT_TIMEOUT = 35.0


class _Writes:
    """A driver's branch answers not yet known to be durable: ``unsent`` (recorded in memory,
    not yet handed to the store; ``timer`` hands them over after ``record_delay``) and
    ``inflight`` (handed to the store, not yet committed).

    A branch call does not wait for the previous answer's record to be durable: if the
    coordinator dies first, recovery finds that branch not done and calls it again, which
    the barrier makes a duplicate that does nothing. What is awaited before acting on it:
    the global row before the first call (``create``), every status change (above all
    ``aborting`` before any compensation, the final state before answering a waiter), and
    every answer before a status change or a release of the lease (these may reorder with
    them on PostgreSQL's several writers, and would be refused by the fence after it).
    Answers still unsent at a status change are written with it, in one local transaction:
    a saga whose branches answer within ``record_delay`` is two commits (create, and its
    answers with the final status)."""

    __slots__ = ("inflight", "timer", "unsent")

    def __init__(self) -> None:
        self.inflight: list[asyncio.Future[Any]] = []
        self.unsent: list[sql.Answer] = []
        self.timer: asyncio.TimerHandle | None = None


def _after_record(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is None and fut.result() != "fenced":
        crash_point("branch.after_record")


def _expire(fut: asyncio.Future[GlobalTx | None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _detail(err: BaseException | None) -> str:
    if err is None:
        return ""
    if isinstance(err, RpcError):
        return f"{err.status.name}: {err.message}"
    return f"{type(err).__name__}: {err}"


class Coordinator:
    """Drives global transactions kept in ``store``."""

    def __init__(self, store: Store, *, name: str | None = None, lease: float = 15.0,
                 poll_interval: float = 1.0, claim_batch: int = 64,
                 record_delay: float = 0.05) -> None:
        self.store = store
        #: how long a branch's answer may wait in memory to be written with a later one
        #: (0: handed to the store before the next call); never past a status change, and
        #: well within the lease that the write renews
        self.record_delay = min(record_delay, lease / 4)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.lease = lease
        self.poll_interval = poll_interval
        self.claim_batch = claim_batch
        self.counters: Counter[str] = Counter({k: 0 for k in COUNTERS})
        self._clients: dict[str, wirecall.Client] = {}
        self._active: dict[str, asyncio.Task[None]] = {}
        #: Wait()ers by gid; the driver answers them with the terminal state it wrote (or
        #: None: read the store)
        self._waiters: dict[str, list[asyncio.Future[GlobalTx | None]]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._wakers: set[asyncio.Task[None]] = set()
        self._closing = False

    # -- life ----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.open()
        released = await self.store.run(sql.release_owned(self.name))
        if released:
            log.info("txn: %d transaction(s) of a previous life of %s released", released,
                     self.name)
        self._poller = asyncio.create_task(self._poll(), name="wirecall-txn-poll")

    async def close(self) -> None:
        self._closing = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        for h in self._timers.values():
            h.cancel()
        for t in [*self._active.values(), *self._wakers]:
            t.cancel()
        await asyncio.gather(*self._wakers, return_exceptions=True)
        await asyncio.gather(*self._active.values(), return_exceptions=True)
        for c in self._clients.values():
            with contextlib.suppress(Exception):
                await c.close()
        await self.store.close()

    async def _poll(self) -> None:
        while not self._closing:
            try:
                await self.poll_once()
            except Exception:  # the store is down: log, try again next round
                log.exception("txn: polling the store failed")
            await asyncio.sleep(self.poll_interval * random.uniform(0.8, 1.2))

    async def poll_once(self) -> int:
        """Claim due transactions and drive them; returns how many were claimed."""
        now = time.time()
        gids: list[str] = await self.store.run(
            sql.claim_due(self.name, now, now + self.lease, self.claim_batch))
        for gid in gids:
            self.kick(gid)
        return len(gids)

    def active(self) -> list[str]:
        """The gids this coordinator is driving right now."""
        return list(self._active)

    def kick(self, gid: str, state: tuple[GlobalTx, list[Branch]] | None = None) -> None:
        """Drive ``gid`` (``state``: what the caller just wrote, saving a load)."""
        if gid not in self._active and not self._closing:
            self._active[gid] = asyncio.create_task(self._drive(gid, state))

    # -- the API (the RPC service calls these) ---------------------------------------------

    async def create(self, mode: Mode, gid: str, branches: list[Branch], options: Options,
                     status: TxStatus) -> bool:
        now = time.time()
        owned = status == TxStatus.SUBMITTED
        if mode == Mode.MSG:
            timeout_at: float | None = now + (options.timeout or MSG_CHECK_AFTER)
        elif mode == Mode.SAGA:
            timeout_at = now + options.timeout if options.timeout else None
        else:
            timeout_at = now + (options.timeout or DEFAULT_TIMEOUT)
        g = GlobalTx(gid=gid, mode=mode, status=status, options=options, created_at=now,
                     updated_at=now, timeout_at=timeout_at,
                     next_due=now if owned else (timeout_at or now),
                     owner=self.name if owned else "",
                     lease_until=now + self.lease if owned else 0.0)
        created = bool(await self.store.run(sql.create(g, branches)))
        if created:
            self.counters["started"] += 1
            crash_point("submit.after_create")
            if owned:
                self.kick(gid, (g, branches))
        return created

    async def load(self, gid: str) -> tuple[GlobalTx, list[Branch]]:
        got = await self.store.run(sql.load(gid))
        if got is None:
            raise NotFound(message=f"no global transaction {gid!r}")
        return got  # type: ignore[no-any-return]

    async def register(self, gid: str, branches: list[Branch]) -> None:
        res = await self.store.run(sql.register(gid, branches, TxStatus.PREPARED))
        if res == "missing":
            raise NotFound(message=f"no global transaction {gid!r}")
        if res not in ("ok", "exists"):
            raise RpcError(Status.FAILED_PRECONDITION,
                           f"transaction {gid} is {res}: branches can be registered only "
                           "while it is prepared")

    async def submit(self, gid: str) -> str:
        """prepared -> submitted (msg, TCC, XA); idempotent."""
        now = time.time()
        ok = await self.store.run(sql.update_global(
            gid, expect_status=[TxStatus.PREPARED], fence=self.name, claim=True, now=now,
            status=TxStatus.SUBMITTED, owner=self.name, lease_until=now + self.lease,
            next_due=now, interval_s=0.0, updated_at=now))
        if ok:
            crash_point("status.after_change")
            self.kick(gid)
            return TxStatus.SUBMITTED
        g, _ = await self.load(gid)
        if g.status in (TxStatus.SUBMITTED, TxStatus.SUCCEEDED):
            return g.status
        raise RpcError(Status.FAILED_PRECONDITION, f"transaction {gid} is {g.status}: "
                       "it cannot be submitted")

    async def abort(self, gid: str, reason: str = "aborted by request") -> str:
        """prepared -> aborting (TCC, XA), prepared -> failed (msg), submitted saga -> aborting."""
        g, _ = await self.load(gid)
        if g.status in (TxStatus.ABORTING, TxStatus.FAILED):
            return g.status
        if g.status == TxStatus.SUCCEEDED or (
                g.status == TxStatus.SUBMITTED and g.mode != Mode.SAGA):
            raise RpcError(Status.FAILED_PRECONDITION,
                           f"transaction {gid} ({g.mode}) is {g.status}: too late to abort")
        now = time.time()
        new = TxStatus.FAILED if g.mode == Mode.MSG else TxStatus.ABORTING
        ok = await self.store.run(sql.update_global(
            gid, expect_status=[g.status], status=new, reason=reason, next_due=now,
            interval_s=0.0, updated_at=now))
        if not ok:  # raced with another change: report what it is now
            g, _ = await self.load(gid)
            return g.status
        if new == TxStatus.FAILED:
            self.counters["failed"] += 1
            self._notify(gid)
        else:
            await self._try_claim_and_kick(gid)
        return new

    async def retry(self, gid: str) -> str:
        """Make a non-terminal transaction due now, backoff reset (operators' ``txn retry``)."""
        g, _ = await self.load(gid)
        if g.terminal:
            raise RpcError(Status.FAILED_PRECONDITION, f"transaction {gid} is {g.status}")
        now = time.time()
        await self.store.run(sql.update_global(gid, expect_status=[g.status], next_due=now,
                                               interval_s=0.0, updated_at=now))
        if g.status != TxStatus.PREPARED or g.mode == Mode.MSG:
            await self._try_claim_and_kick(gid)
        return g.status

    async def _try_claim_and_kick(self, gid: str) -> None:
        now = time.time()
        if gid in self._active:
            return
        if await self.store.run(sql.update_global(
                gid, expect_status=list(plan_statuses()), fence=self.name, claim=True, now=now,
                owner=self.name, lease_until=now + self.lease)):
            self.kick(gid)

    async def wait(self, gid: str, timeout: float) -> GlobalTx:
        """Wait until ``gid`` is terminal or ``timeout`` passes; returns its state."""
        deadline = time.monotonic() + timeout
        while True:
            # listen first, then read: a driver finishing in between still wakes us
            fut: asyncio.Future[GlobalTx | None] = asyncio.get_running_loop().create_future()
            waiters = self._waiters.setdefault(gid, [])
            waiters.append(fut)
            try:
                left = deadline - time.monotonic()
                # a transaction this coordinator is driving needs no read: its driver answers
                # with the terminal state it wrote, or None when it stops short of one
                if gid not in self._active or left <= 0:
                    g, _ = await self.load(gid)
                    left = deadline - time.monotonic()
                    if g.terminal or left <= 0:
                        return g
                # woken by the driver here, or re-read now and then (another coordinator):
                # None either way (a timer, not wait_for: no wrapper future per wait)
                timer = asyncio.get_running_loop().call_later(min(left, 1.0), _expire, fut)
                try:
                    done = await fut
                finally:
                    timer.cancel()
                if done is not None:
                    return done
            finally:
                with contextlib.suppress(ValueError):
                    waiters.remove(fut)
                if not waiters and self._waiters.get(gid) is waiters:
                    del self._waiters[gid]

    def _notify(self, gid: str, done: GlobalTx | None = None) -> None:
        for fut in self._waiters.pop(gid, []):
            if not fut.done():
                fut.set_result(done)

    # -- the driver ------------------------------------------------------------------------

    async def _drive(self, gid: str, state: tuple[GlobalTx, list[Branch]] | None) -> None:
        """Load once, then step in memory while every fenced write succeeds; a refused
        status change (an operator's abort, say) reloads; a refused record (another
        coordinator took the lease) stops."""
        final: GlobalTx | None = None
        w = _Writes()
        try:
            while not self._closing:
                if state is None:
                    state = await self.store.run(sql.load(gid))
                    if state is None:
                        return
                    g = state[0]
                    if g.terminal or g.owner != self.name or g.lease_until < time.time():
                        return
                verdict = await self._step(state[0], state[1], w)
                if verdict == STOP:
                    if state[0].terminal:  # written (a refused write returns RELOAD)
                        final = state[0]
                    return
                if verdict == RELOAD:
                    state = None
            await self._settle(w)  # stopped short (closing): what was answered, recorded
        except asyncio.CancelledError:
            raise
        except Exception:  # the store failed: the lease runs out, the poller retries later
            log.exception("txn %s: driving failed", gid)
        finally:
            if w.timer is not None:
                w.timer.cancel()
            self._active.pop(gid, None)
            self._notify(gid, final)

    async def _step(self, g: GlobalTx, branches: list[Branch], w: _Writes) -> str:
        """One step of ``g`` (mutated in memory as its rows are written)."""
        now = time.time()
        step = plan.next_step(g, branches, now)
        if step.status is not None:
            return await self._set_status(g, branches, step.status, step.reason, w)
        if step.query:
            return await self._check_back(g)
        if step.calls:
            # the previous step's answers go to the store while these calls run
            if not self._flush(g, w):
                return STOP  # lost the lease
            if len(step.calls) == 1:  # an ordered saga's step: no task per call
                outcomes = [await self._call(g, step.calls[0], w)]
            else:
                outcomes = await asyncio.gather(*(self._call(g, b, w) for b in step.calls))
            if Outcome.FAILURE in outcomes and g.mode == Mode.SAGA:
                return NEXT
            if all(o == Outcome.SUCCESS for o in outcomes):
                g.interval = 0.0
                return NEXT
            ongoing = all(o in (Outcome.SUCCESS, Outcome.ONGOING) for o in outcomes)
            interval = g.options.retry_interval if ongoing else plan.backoff(g)
            return await self._schedule(g, now + interval, interval, w)
        return await self._schedule(g, step.wait_until or now + plan.IDLE_RECHECK, g.interval,
                                    w)

    def _flush(self, g: GlobalTx, w: _Writes) -> bool:
        """Hand the unsent answers to the store (not awaited); False if an earlier record
        was refused (another coordinator holds the transaction)."""
        if w.inflight:
            kept = []
            for fut in w.inflight:
                if not fut.done():
                    kept.append(fut)
                elif fut.result() == "fenced":  # (a store failure raises here)
                    return False
            w.inflight = kept
        if w.unsent and w.timer is None:
            if self.record_delay <= 0:
                g.lease_until = self._send(w)
            else:
                w.timer = asyncio.get_running_loop().call_later(
                    self.record_delay, self._send_later, g, w)
        return True

    def _send_later(self, g: GlobalTx, w: _Writes) -> None:
        w.timer = None
        if w.unsent:
            g.lease_until = self._send(w)

    def _send(self, w: _Writes) -> float:
        """The unsent answers to the store as one operation; returns the lease it renews."""
        if w.timer is not None:
            w.timer.cancel()
            w.timer = None
        lease_until = time.time() + self.lease
        fut = self.store.submit(sql.record_step(w.unsent, self.name, lease_until))
        w.unsent = []
        if armed():
            fut.add_done_callback(_after_record)
        w.inflight.append(fut)
        return lease_until

    async def _settle(self, w: _Writes) -> bool:
        """Every answer durable (False: a record was refused, the lease is lost)."""
        if w.unsent:
            self._send(w)
        return await self._settle_inflight(w)

    async def _schedule(self, g: GlobalTx, due: float, interval: float,
                        w: _Writes | None = None) -> str:
        if w is not None and not await self._settle(w):
            return STOP  # lost the lease
        # a saga going forward, or anything prepared, must wake at its global timeout
        if g.timeout_at is not None and g.timeout_at > time.time() and (
                g.status == TxStatus.PREPARED
                or (g.status == TxStatus.SUBMITTED and g.mode == Mode.SAGA)):
            due = min(due, g.timeout_at)
        await self.store.run(sql.update_global(
            g.gid, fence=self.name, next_due=due, interval_s=interval, owner="",
            lease_until=0.0))
        delay = due - time.time()
        if delay < WAKE_WITHIN and not self._closing:  # retry on time, not at the next poll
            old = self._timers.pop(g.gid, None)
            if old is not None:
                old.cancel()
            self._timers[g.gid] = asyncio.get_running_loop().call_later(
                max(0.0, delay), self._wake, g.gid)
        return STOP

    def _wake(self, gid: str) -> None:
        self._timers.pop(gid, None)
        if not self._closing:
            task = asyncio.create_task(self._try_claim_and_kick(gid))
            self._wakers.add(task)
            task.add_done_callback(self._wakers.discard)

    async def _set_status(self, g: GlobalTx, branches: list[Branch], status: str,
                          reason: str, w: _Writes | None = None) -> str:
        # earlier answers durable first (several PostgreSQL writers may reorder them, and the
        # fence refuses them once a terminal status released the lease); the last step's
        # answers are written with the status change, in one local transaction
        if w is not None and w.inflight and not await self._settle_inflight(w):
            return RELOAD  # lost the lease: the reload stops
        now = time.time()
        terminal = status in TERMINAL
        was_prepared = g.status == TxStatus.PREPARED
        lease_until = 0.0 if terminal else now + self.lease
        values: dict[str, Any] = {
            "status": status, "reason": reason, "updated_at": now, "next_due": now,
            "interval_s": 0.0, "owner": "" if terminal else self.name}
        if w is not None and w.unsent:
            if w.timer is not None:
                w.timer.cancel()
                w.timer = None
            answers, w.unsent = w.unsent, []
            res = await self.store.run(sql.record_step(answers, self.name, lease_until, values,
                                                       g.status))
            if res != "fenced":
                crash_point("branch.after_record")
            ok = res == "ok"
        else:
            ok = await self.store.run(sql.update_global(
                g.gid, expect_status=[g.status], fence=self.name, lease_until=lease_until,
                **values))
        if not ok:
            return RELOAD
        g.status, g.reason, g.interval, g.lease_until = status, reason, 0.0, lease_until
        crash_point("status.after_change")
        if status == TxStatus.SUCCEEDED:
            self.counters["succeeded"] += 1
        elif status == TxStatus.FAILED:
            self.counters["failed"] += 1
            if any(b.op in (BranchOp.COMPENSATE, BranchOp.CANCEL, BranchOp.ROLLBACK)
                   for b in branches):
                self.counters["compensated"] += 1
        if status == TxStatus.ABORTING:
            log.info("txn %s: aborting (%s)", g.gid, reason)
        if terminal:
            return STOP
        # leaving "prepared" closes registration (Register needs it), but a branch may have
        # been registered after this driver read the branches: read them again, now complete
        # (else its cancel/rollback would never be called: a TCC's money held forever)
        return RELOAD if was_prepared else NEXT

    async def client(self, url: str) -> wirecall.Client:
        c = self._clients.get(url)
        if c is None:
            c = wirecall.Client(url)
            self._clients[url] = c
        return c

    async def _invoke(self, url: str, method: str, params: dict[str, Any],
                      timeout: float) -> BaseException | None:
        try:
            c = await self.client(url)
            await c.invoke(method, params, timeout=timeout)
            return None
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except BaseException as exc:  # every failure is an outcome (retry, abort, ongoing)
            return exc

    async def _settle_inflight(self, w: _Writes) -> bool:
        inflight, w.inflight = w.inflight, []
        ok = True
        for fut in inflight:
            if await fut == "fenced":
                ok = False
        return ok

    async def _call(self, g: GlobalTx, b: Branch, w: _Writes) -> Outcome:
        crash_point("branch.before_call")
        err = await self._invoke(b.url, b.method, {"gid": b.gid, "branch_id": b.branch_id,
                                                   "op": b.op, "payload": b.payload},
                                 g.options.branch_timeout)
        outcome = classify(err)
        crash_point("branch.after_call")
        detail = _detail(err)
        _status, alert = plan.apply_outcome(g, b, outcome, detail)
        if alert:
            self.counters["stuck"] += 1
            log.error("txn %s: branch %s %s failed %d times, still retrying: %s", g.gid,
                      b.branch_id, b.op, b.attempts, detail)
        # written by the next step (see _Writes), as it is now
        w.unsent.append((b.gid, b.branch_id, b.op, b.status, b.attempts, b.last_error, outcome,
                         detail))
        return outcome

    async def _check_back(self, g: GlobalTx) -> str:
        """A prepared msg past its timeout: ask the submitter's query-prepared method."""
        qp = g.options.query_prepared
        now = time.time()
        if not qp:  # nobody to ask: the submitter never sent a way to check back
            return await self._set_status(g, [], TxStatus.FAILED,
                                          "prepared msg timed out and has no query_prepared")
        err = await self._invoke(qp["url"], qp["method"], {
            "gid": g.gid, "branch_id": "00", "op": "query", "payload": None},
            g.options.branch_timeout)
        crash_point("query.after_call")
        outcome = classify(err)
        await self.store.run(sql.add_history(g.gid, "00", "query", outcome, _detail(err)))
        if outcome == Outcome.SUCCESS:
            return await self._set_status(g, [], TxStatus.SUBMITTED,
                                          "check-back: local transaction committed")
        if outcome == Outcome.FAILURE:
            return await self._set_status(g, [], TxStatus.FAILED,
                                          "check-back: local transaction rolled back")
        interval = g.options.retry_interval if outcome == Outcome.ONGOING else plan.backoff(g)
        return await self._schedule(g, now + interval, interval)

    def check_mode(self, mode: str) -> Mode:
        try:
            return Mode(mode)
        except ValueError:
            raise InvalidArgument(message=f"mode must be one of {[m.value for m in Mode]}, "
                                  f"got {mode!r}") from None


def plan_statuses() -> tuple[str, ...]:
    return (TxStatus.SUBMITTED, TxStatus.ABORTING, TxStatus.PREPARED)
