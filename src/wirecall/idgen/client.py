"""A client for an ID cluster: prefetches batches, spreads them over the nodes, fails over.

    ids = await IdClient.open("static://127.0.0.1:7001,127.0.0.1:7002")   # or etcd://.../idgen
    one = await ids.next()               # from the local buffer; refilled in the background
    many = await ids.batch(10_000)       # straight from a node (IdGen.Batch)
    await ids.close()

The target is anything :func:`wirecall.connect` takes: one address (``tcp://host:port``) or a
cluster target (``static://a,b,c``, ``etcd://host:port/idgen``, ``zk://...`` for nodes started
with ``wirecall idgen serve --register``), so the cluster layer balances the batch calls over
the nodes and its retry policy moves a refused call (``UNAVAILABLE``: a node whose clock went
back, whose lease is fenced, whose store is down) to another node. On top of that the client
tries up to ``attempts`` times itself (a single-address target has no cluster retries).

The buffer holds IDs of several nodes: each ID is unique, but the order of :meth:`next`
across refills is not globally increasing (each node's IDs are). IDs left in the buffer at
:meth:`close` are dropped (gaps, never duplicates).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any

from wirecall.errors import RpcError, Unavailable

__all__ = ["IdClient"]

RETRYABLE = (Unavailable,)


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


class IdClient:
    """Prefetching ID client over a connected client (``wirecall.Client``/``ClusterClient``)."""

    def __init__(self, client: Any, *, tag: str = "", prefetch: int = 1000,
                 low_water: float = 0.25, attempts: int = 3) -> None:
        if not 1 <= prefetch <= 100_000:
            raise ValueError(f"prefetch must be between 1 and 100000, got {prefetch}")
        if not 0.0 <= low_water < 1.0:
            raise ValueError(f"low_water must be in [0, 1), got {low_water}")
        self.client = client
        self.tag = tag
        self.prefetch = prefetch
        self.low = int(prefetch * low_water)
        self.attempts = max(1, attempts)
        self._buf: collections.deque[int] = collections.deque()
        self._refill: asyncio.Task[None] | None = None
        #: batch calls made, and calls refused by a node and tried again
        self.calls = 0
        self.failovers = 0

    @classmethod
    async def open(cls, target: str, **options: Any) -> IdClient:
        """Connect to ``target`` (see the module docstring) and wrap it."""
        from wirecall.client import connect

        mine = {k: options.pop(k) for k in ("tag", "prefetch", "low_water", "attempts")
                if k in options}
        client = await connect(target, **options)
        set_policy = getattr(client, "set_policy", None)
        if set_policy is not None:  # a cluster client: refused batches go to another node
            from wirecall.cluster.policy import MethodPolicy, RetryPolicy

            set_policy("IdGen.Batch", MethodPolicy(idempotent=True, retry=RetryPolicy()))
        return cls(client, **mine)

    async def next(self) -> int:
        """One ID from the buffer (waiting for a refill only when it is empty)."""
        buf = self._buf
        if len(buf) <= self.low and self._refill is None:
            self._refill = asyncio.ensure_future(self._fill())
            # a background refill that fails is retried by the next call; its error is
            # raised only to a caller that waits for it
            self._refill.add_done_callback(_retrieve)
        while not buf:
            task = self._refill
            if task is None:
                task = self._refill = asyncio.ensure_future(self._fill())
            await asyncio.shield(task)
        return buf.popleft()

    async def batch(self, n: int) -> list[int]:
        """``n`` IDs from one node's ``IdGen.Batch`` (several calls above 100,000)."""
        out: list[int] = []
        while len(out) < n:
            out += await self._call(min(n - len(out), 100_000))
        return out

    async def _fill(self) -> None:
        try:
            self._buf.extend(await self._call(self.prefetch))
        finally:
            self._refill = None

    async def _call(self, n: int) -> list[int]:
        last: RpcError | None = None
        for attempt in range(self.attempts):
            self.calls += 1
            try:
                ids: list[int] = await self.client.call("IdGen.Batch", self.tag, n)
                return ids
            except RETRYABLE as exc:
                last = exc
                self.failovers += 1
                await asyncio.sleep(0.01 * (attempt + 1))
        assert last is not None
        raise last

    async def close(self) -> None:
        if self._refill is not None:
            self._refill.cancel()
            with contextlib.suppress(BaseException):
                await self._refill
        self._buf.clear()
        await self.client.close()

    async def __aenter__(self) -> IdClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
