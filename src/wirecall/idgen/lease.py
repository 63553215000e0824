"""Worker ids leased from etcd or ZooKeeper, and fenced.

Keys under ``prefix`` (``/wirecall/idgen/default`` by default)::

    {prefix}/lock/{id}    who holds worker id {id}; written with the holder's lease
                          (etcd lease / ZooKeeper ephemeral node): gone when the lease ends
    {prefix}/state/{id}   {"until_ms": ..., "holder": ...}: persistent; the last timestamp the
                          holders of {id} may have issued in (the reserved horizon)

How a node holds an id (:class:`WorkerLease`):

1. **Acquire**: grant a lease (``ttl``), read every ``state`` key, then ``create`` (atomic
   create-if-absent) the ``lock`` key of a free id, preferring ids whose ``until_ms`` is
   already in the past on this node's clock. The id's **floor** is the larger of the
   registry's ``until_ms`` and the local state file's: the generator issues only in time
   units after it, so a new holder never repeats a timestamp a previous holder could have
   used, whatever the clocks did (a restart with the clock set back refuses, ``UNAVAILABLE``,
   until its clock passes the floor, rather than repeat).
2. **Reserve**: before issuing in a time, the node persists ``until_ms = now + horizon``,
   locally (fsynced) and then in the registry, and only issues below ``until_ms``. A
   reservation counts only if the registry write returned before the fence and the lock
   still reads as ours afterwards: then it was applied while the id was held, so no later
   holder can have read an older floor. Renewed every ``horizon / 4``; never lowered.
3. **Fence**: the generator stops issuing at ``lease.expires_at - margin``
   (``expires_at``: the send time of the last successful renewal + ttl, on the local
   monotonic clock), i.e. before the registry can have expired the lease and handed the id to
   someone else. A registry outage therefore stops issuing within ``ttl - margin`` of the
   last renewal; it resumes by itself if the lease survives, else the id is re-acquired.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from .snowflake import Layout, Snowflake
from .state import LocalState

__all__ = ["NoFreeWorker", "WorkerLease"]

log = logging.getLogger("wirecall.idgen.lease")


class NoFreeWorker(RuntimeError):
    """Every worker id is held (and stayed held until the acquire timeout)."""


class WorkerLease:
    """One worker id held through ``registry`` (a ``wirecall.cluster.registry.Registry``).

    ``await lease.acquire()`` returns a fenced :class:`Snowflake`; :meth:`run` (a task)
    keeps the reservation ahead and re-acquires an id if the lease is lost, calling
    ``on_generator(new_generator)``; :meth:`close` revokes the lease (after the last ID).
    """

    def __init__(
        self,
        registry: Any,
        *,
        layout: Layout | None = None,
        prefix: str = "/wirecall/idgen/default",
        ttl: float = 6.0,
        margin: float | None = None,
        horizon: float | None = None,
        max_workers: int | None = None,
        state: LocalState | None = None,
        clock_offset_ms: int = 0,
        max_backward_ms: int = 5,
        holder: str | None = None,
        on_generator: Callable[[Snowflake], None] | None = None,
    ) -> None:
        self.registry = registry
        self.layout = layout or Layout()
        self.prefix = prefix.rstrip("/")
        self.ttl = ttl
        self.margin = margin if margin is not None else max(0.5, ttl * 0.25)
        if not 0 < self.margin < ttl:
            raise ValueError(f"margin {self.margin} must be between 0 and ttl {ttl}")
        self.horizon_ms = int((horizon if horizon is not None else ttl) * 1000)
        limit = self.layout.max_worker + 1
        self.max_workers = min(max_workers or limit, limit)
        self.state = state
        self.clock_offset_ms = clock_offset_ms
        self.max_backward_ms = max_backward_ms
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self.on_generator = on_generator
        self.lease: Any = None
        self.generator: Snowflake | None = None
        self.worker_id: int | None = None
        self.floor_ms = 0
        self._reserved = 0
        self._closed = False

    def _key(self, kind: str, worker: int) -> str:
        return f"{self.prefix}/{kind}/{worker}"

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.clock_offset_ms

    def fence(self) -> float:
        """The monotonic time at which issuing stops (the lease's expiry - margin)."""
        lease = self.lease
        if lease is None or lease.lost.is_set():
            return 0.0
        return float(lease.expires_at) - self.margin

    # -- acquire -------------------------------------------------------------------------

    async def acquire(self, timeout: float | None = None) -> Snowflake:
        """Hold a free worker id (waiting up to ``timeout`` for one to be freed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.lease = await self.registry.grant_lease(self.ttl)
        while True:
            worker = await self._try_ids()
            if worker is not None:
                return await self._start(worker)
            if deadline is not None and time.monotonic() >= deadline:
                await self._revoke()
                raise NoFreeWorker(f"all {self.max_workers} worker ids under {self.prefix} "
                                   "are held")
            await asyncio.sleep(min(1.0, self.ttl / 4))

    async def _try_ids(self) -> int | None:
        states = await self.registry.get_prefix(f"{self.prefix}/state/")
        locks = await self.registry.get_prefix(f"{self.prefix}/lock/")
        now = self.now_ms()
        floors = {w: self._floor_from(states.get(self._key("state", w))) for w in
                  range(self.max_workers)}
        free = [w for w in range(self.max_workers) if self._key("lock", w) not in locks]
        # usable now first (floor in the past on our clock), then the nearest floor
        free.sort(key=lambda w: (floors[w] >= now, floors[w] if floors[w] >= now else w))
        me = json.dumps({"holder": self.holder, "lease": self.lease.id}).encode()
        for w in free:
            if await self.registry.create(self._key("lock", w), me, lease=self.lease):
                return w
        return None

    @staticmethod
    def _floor_from(raw: bytes | None) -> int:
        if not raw:
            return 0
        try:
            return int(json.loads(raw)["until_ms"])
        except (ValueError, KeyError, TypeError):
            # unreadable state: refuse to guess a floor (a low guess could repeat IDs)
            raise ValueError(f"idgen: unreadable worker state {raw[:100]!r}") from None

    async def _start(self, worker: int) -> Snowflake:
        # read the state again now that we hold the id: a previous holder's last reservation
        # was applied before its lease ended, i.e. before our create succeeded
        reg_floor = self._floor_from(await self.registry.get(self._key("state", worker)))
        local = self.state.get(self._local_key(worker)) if self.state else 0
        self.floor_ms = max(reg_floor, local)
        self._reserved = self.floor_ms
        gen = Snowflake(worker, self.layout, clock_offset_ms=self.clock_offset_ms,
                        max_backward_ms=self.max_backward_ms, floor_ms=self.floor_ms)
        gen.set_fence(self.fence)
        gen.reserve_until(self.floor_ms)  # nothing issuable until the first reservation
        self.worker_id, self.generator = worker, gen
        log.info("idgen: worker %d leased under %s (floor %d, clock offset %d ms)",
                 worker, self.prefix, self.floor_ms, self.clock_offset_ms)
        await self.reserve()
        return gen

    def _local_key(self, worker: int) -> str:
        return f"{getattr(self.registry, 'url', '')}{self.prefix}/{worker}"

    # -- keep it -------------------------------------------------------------------------

    async def reserve(self) -> bool:
        """Persist a new horizon (locally, then in the registry) and let the generator
        issue up to it; False if the registry write did not land before the fence, or the
        id's lock is no longer ours (the lease was revoked: the node stops at once)."""
        gen, worker = self.generator, self.worker_id
        if gen is None or worker is None:
            return False
        if not await self._still_ours(worker):
            gen.set_fence(0.0)
            self.lease.mark_lost(f"the lock of worker {worker} is gone or not ours")
            return False
        # never lower a reservation (a clock stepped back must not shrink what a successor
        # has to start above)
        until = max(self.now_ms(), self.floor_ms) + self.horizon_ms
        until = self._reserved = max(until, self._reserved)
        if self.state is not None:
            await asyncio.to_thread(self.state.put, self._local_key(worker), until)
        value = json.dumps({"until_ms": until, "holder": self.holder}).encode()
        await self.registry.put(self._key("state", worker), value)
        # the write counts only if it landed while the id was ours: then no successor can
        # have read an older floor (it reads the state after creating the lock). Checked
        # by time (the fence) and by reading the lock back (a linearizable read), so a lease
        # that expired earlier than we thought cannot slip a reservation past a successor.
        if time.monotonic() >= self.fence() or not await self._still_ours(worker):
            return False
        gen.reserve_until(until)
        return True

    async def _still_ours(self, worker: int) -> bool:
        raw = await self.registry.get(self._key("lock", worker))
        try:
            return raw is not None and json.loads(raw).get("lease") == self.lease.id
        except ValueError:
            return False

    async def run(self) -> None:
        """Renew the reservation every ``horizon / 4``; re-acquire an id after a lost lease."""
        interval = max(0.05, self.horizon_ms / 4000)
        while not self._closed:
            await asyncio.sleep(interval)
            if self.lease is not None and self.lease.lost.is_set():
                await self._reacquire()
                continue
            try:
                await self.reserve()
            except Exception as exc:  # registry down: the fence will stop issuing in time
                log.warning("idgen: reserving the next horizon failed: %s", exc)

    async def _reacquire(self) -> None:
        log.warning("idgen: lease of worker %s lost; acquiring a worker id again",
                    self.worker_id)
        if self.generator is not None:
            # fenced for good: its fence must not follow the next lease
            self.generator.set_fence(0.0)
            self.generator = None
        try:
            gen = await self.acquire()
        except Exception as exc:
            log.warning("idgen: re-acquiring failed (%s); retrying", exc)
            return
        if self.on_generator is not None:
            self.on_generator(gen)

    async def _revoke(self) -> None:
        if self.lease is not None:
            with contextlib.suppress(Exception):
                await self.lease.revoke()

    async def close(self) -> None:
        """Stop issuing, then give the id back (its state key stays for the next holder)."""
        self._closed = True
        gen, worker = self.generator, self.worker_id
        if gen is not None and worker is not None:
            gen.set_fence(0.0)
            # nothing is issued any more: the next holder may start right after the last
            # time actually issued in (written while we still hold the lease)
            last = gen.last_ms
            with contextlib.suppress(Exception):
                if self.state is not None:
                    self.state.settle(self._local_key(worker), last)
                value = json.dumps({"until_ms": last, "holder": self.holder}).encode()
                if time.monotonic() < float(self.lease.expires_at) - self.margin:
                    await self.registry.put(self._key("state", worker), value)
        await self._revoke()
