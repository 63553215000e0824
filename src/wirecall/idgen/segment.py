"""Leaf's segment mode: IDs handed out from ranges allocated in a database row per tag.

A :class:`SegmentStore` owns one row per business tag (``max_id``, base ``step``) and
allocates a range atomically (``UPDATE ... SET max_id = max_id + step ... RETURNING``), so
any number of nodes sharing the database never hand out the same ID. The stores are in
:mod:`wirecall.idgen.stores` (SQLite embedded by default, PostgreSQL for several nodes).

:class:`SegmentAllocator` keeps, per tag, a **double buffer**: the segment being consumed
and the next one, fetched in the background once ``prefetch_at`` (10 %) of the current one is
used, so a caller crossing a segment boundary finds the next segment ready (``stalls`` counts
the calls that had to wait for a fetch anyway). The **step adapts** to the consumption rate:
doubled (up to ``max_step``) when a segment lasted less than ``grow_below`` seconds, halved
(down to the tag's base step) when it lasted more than ``shrink_above``.

A fetch that fails (database down) is retried by the next call; while both buffers are empty
calls fail with :class:`SegmentUnavailable` (the service answers ``UNAVAILABLE``). Unused IDs
of a segment are lost at shutdown (gaps, never duplicates).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "Segment",
    "SegmentAllocator",
    "SegmentStore",
    "SegmentUnavailable",
    "UnknownTag",
]

log = logging.getLogger("wirecall.idgen.segment")


class SegmentUnavailable(Exception):
    """No segment could be fetched (the store is unreachable or failing)."""


class UnknownTag(LookupError):
    """The tag has no row in the store."""


class SegmentStore(Protocol):
    """Where segments come from. ``allocate`` must be atomic across processes."""

    async def allocate(self, tag: str, step: int) -> int:
        """Add ``step`` to the tag's ``max_id`` and return the new value: the caller owns
        ``(new - step, new]``. Raises :class:`UnknownTag` for a tag without a row."""
        ...

    async def base_step(self, tag: str) -> int:
        """The tag's configured step (raises :class:`UnknownTag`)."""
        ...

    async def tags(self) -> list[str]: ...

    async def create_tag(self, tag: str, *, start: int = 1, step: int = 1000) -> bool:
        """Add a row (first ID ``start``); False if the tag exists (left as it is)."""
        ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class Segment:
    """IDs ``cursor..end`` (inclusive) still to hand out; ``start`` was the first."""

    start: int
    end: int
    cursor: int
    fetched_at: float
    step: int

    @property
    def remaining(self) -> int:
        return self.end - self.cursor + 1


@dataclass(slots=True)
class _Buffer:
    tag: str
    base_step: int
    step: int
    current: Segment
    next: Segment | None = None
    loading: asyncio.Task[Segment] | None = None
    #: fetch after this ID of the current segment is handed out
    trigger: int = 0
    #: when the last fetch started (the adaptive step measures between fetches)
    fetched_at: float = 0.0
    error: BaseException | None = field(default=None)


class SegmentAllocator:
    """Per-tag double buffers over a :class:`SegmentStore` (one per node, on one loop)."""

    def __init__(
        self,
        store: SegmentStore,
        *,
        prefetch_at: float = 0.1,
        max_step: int = 1_000_000,
        grow_below: float = 900.0,
        shrink_above: float = 1800.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 <= prefetch_at < 1.0:
            raise ValueError("prefetch_at must be in [0, 1)")
        self.store = store
        self.prefetch_at = prefetch_at
        self.max_step = max_step
        self.grow_below = grow_below
        self.shrink_above = shrink_above
        self._clock = clock
        self._buffers: dict[str, _Buffer] = {}
        self._first: dict[str, asyncio.Task[_Buffer]] = {}
        #: ``next`` calls that found both buffers empty and waited for a fetch (after the
        #: first load): what the double buffer is there to prevent
        self.stalls = 0
        #: ``batch`` calls that needed more than was buffered and waited for a fetch
        self.batch_waits = 0
        #: segments fetched from the store
        self.fetches = 0

    async def preload(self) -> list[str]:
        """Load the first segment of every tag in the store (a node does this at start)."""
        tags = await self.store.tags()
        for tag in tags:
            await self._buffer(tag)
        return tags

    def step_of(self, tag: str) -> int | None:
        b = self._buffers.get(tag)
        return None if b is None else b.step

    def next_loaded(self, tag: str) -> bool:
        """True when the tag's next segment is already in the buffer (fetched ahead)."""
        b = self._buffers.get(tag)
        return b is not None and b.next is not None

    async def next(self, tag: str) -> int:
        b = self._buffers.get(tag) or await self._buffer(tag)
        seg = b.current
        v = seg.cursor
        if v <= seg.end:
            seg.cursor = v + 1
            if v >= b.trigger and b.next is None and b.loading is None:
                self._prefetch(b)
            return v
        await self._advance(b, count=True)
        return await self.next(tag)

    async def batch(self, tag: str, n: int) -> list[int]:
        b = self._buffers.get(tag) or await self._buffer(tag)
        out: list[int] = []
        while len(out) < n:
            seg = b.current
            take = min(n - len(out), seg.remaining)
            if take > 0:
                out += range(seg.cursor, seg.cursor + take)
                seg.cursor += take
                if seg.cursor > b.trigger and b.next is None and b.loading is None:
                    self._prefetch(b)
            if len(out) < n:
                if b.next is None:
                    self.batch_waits += 1
                await self._advance(b, count=False)
        return out

    async def close(self) -> None:
        for b in self._buffers.values():
            if b.loading is not None:
                b.loading.cancel()
        self._buffers.clear()

    # -- internals -------------------------------------------------------------------------

    async def _buffer(self, tag: str) -> _Buffer:
        task = self._first.get(tag)
        if task is None:
            task = self._first[tag] = asyncio.ensure_future(self._load_first(tag))
        try:
            return await asyncio.shield(task)
        finally:
            if task.done():
                self._first.pop(tag, None)

    async def _load_first(self, tag: str) -> _Buffer:
        try:
            base = await self.store.base_step(tag)
            seg = await self._fetch(tag, base)
        except UnknownTag:
            raise
        except Exception as exc:
            raise SegmentUnavailable(f"segment store: {type(exc).__name__}: {exc}") from exc
        b = _Buffer(tag, base, base, seg, fetched_at=self._clock())
        b.trigger = seg.start + int(self.prefetch_at * (seg.end - seg.start + 1))
        self._buffers[tag] = b
        return b

    async def _fetch(self, tag: str, step: int) -> Segment:
        new_max = await self.store.allocate(tag, step)
        self.fetches += 1
        return Segment(new_max - step + 1, new_max, new_max - step + 1, self._clock(), step)

    def _prefetch(self, b: _Buffer) -> None:
        # Leaf's rule: the time since the previous fetch is how long a segment lasts
        now = self._clock()
        lasted, b.fetched_at = now - b.fetched_at, now
        if lasted < self.grow_below:
            b.step = max(min(b.step * 2, self.max_step), b.base_step)
        elif lasted > self.shrink_above:
            b.step = max(b.step // 2, b.base_step)
        task = b.loading = asyncio.ensure_future(self._fetch(b.tag, b.step))
        task.add_done_callback(functools.partial(self._loaded, b))

    def _loaded(self, b: _Buffer, t: asyncio.Task[Segment]) -> None:
        if b.loading is t:
            b.loading = None
        if t.cancelled():
            return
        exc = t.exception()
        if exc is not None:
            b.error = exc
            log.warning("idgen: fetching a segment of %r failed: %s", b.tag, exc)
            return
        b.error = None
        b.next = t.result()

    async def _advance(self, b: _Buffer, *, count: bool) -> None:
        """The current segment is used up: switch to the next one, fetching it if needed
        (``_loaded`` is the only place a fetched segment enters the buffer: never twice)."""
        waited = False
        while b.current.remaining == 0:
            if b.next is not None:
                seg, b.next = b.next, None
                b.current = seg
                b.trigger = seg.start + int(self.prefetch_at * (seg.end - seg.start + 1))
                return
            if not waited:
                self.stalls += count
                waited = True
            if b.loading is None:
                self._prefetch(b)
            task = b.loading
            assert task is not None
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise SegmentUnavailable(
                    f"segment store: {type(exc).__name__}: {exc}") from exc
            if b.next is None and b.current.remaining == 0:
                await asyncio.sleep(0)  # let the fetch's done callback run
