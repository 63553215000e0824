"""The ``IdGen`` service: ``Next(tag)``, ``Batch(tag, n)``, ``Decode(id)``, on every wire.

Two implementations share the name ``IdGen``: :class:`SnowflakeIdGen` (one worker's
snowflake IDs; the tag is checked and otherwise ignored: IDs are unique across all tags) and
:class:`SegmentIdGen` (Leaf's segment mode: one counter per business tag, ranges from a
database). Register either with :func:`register`::

    server = Server()
    register(server, SnowflakeIdGen(Snowflake(worker_id=1)))
    await server.start("tcp://127.0.0.1:7000", "grpc://127.0.0.1:7001")

Refusals (clock behind, lease fence passed, horizon not reserved, store down) are
``UNAVAILABLE`` so a client moves to another node; bad arguments are ``INVALID_ARGUMENT``
naming the field; an unknown segment tag is ``NOT_FOUND``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from wirecall.errors import InvalidArgument, NotFound, Unavailable
from wirecall.server import Server
from wirecall.service import method

from .segment import SegmentAllocator, SegmentUnavailable, UnknownTag
from .snowflake import Decoded, IssueRefused, Snowflake

__all__ = ["MAX_BATCH", "MAX_TAG_LENGTH", "SegmentIdGen", "SnowflakeIdGen", "register"]

MAX_BATCH = 100_000
MAX_TAG_LENGTH = 128


def check_tag(tag: Any) -> str:
    if not isinstance(tag, str):
        raise InvalidArgument(message=f"tag must be a string, not {type(tag).__name__}")
    if len(tag) > MAX_TAG_LENGTH:
        raise InvalidArgument(message=f"tag is {len(tag)} characters; at most {MAX_TAG_LENGTH}")
    return tag


def check_n(n: Any, limit: int) -> int:
    if not isinstance(n, int) or isinstance(n, bool):
        raise InvalidArgument(message=f"n must be an integer, not {type(n).__name__}")
    if not 1 <= n <= limit:
        raise InvalidArgument(message=f"n must be between 1 and {limit}, got {n}")
    return n


def unknown_tag(tag: str) -> str:
    return (f"tag {tag!r} has no segment row (create it on the node: "
            f"wirecall idgen serve --tag {tag or 'NAME'}:START:STEP)")


class SnowflakeIdGen:
    """``IdGen`` over one :class:`Snowflake`. ``Next`` runs inline on the event loop (it
    waits at most one time unit or ``max_backward_ms``, so only small layouts qualify: use
    :class:`ThreadedSnowflakeIdGen` for units over 10 ms); ``Batch`` waits on the loop."""

    def __init__(self, generator: Snowflake, *, max_batch: int = MAX_BATCH) -> None:
        self.generator = generator
        self.max_batch = max_batch
        self._batching: asyncio.Lock | None = None
        self._queued = 0

    @method(inline=True)
    def Next(self, tag: str) -> int:
        # the native fast lane runs this for every call: the checks inlined, one call deep
        if type(tag) is not str or len(tag) > MAX_TAG_LENGTH:
            check_tag(tag)
        try:
            return self.generator.next()
        except IssueRefused as exc:
            raise Unavailable(message=str(exc)) from None

    def _one(self, tag: str) -> int:
        check_tag(tag)
        try:
            return self.generator.next()
        except IssueRefused as exc:
            raise Unavailable(message=str(exc)) from None

    async def Batch(self, tag: str, n: int) -> list[int]:
        check_tag(tag)
        n = check_n(n, self.max_batch)
        # one batch at a time drains the sequence (the others queue instead of all waking up
        # at each time unit to fight over it); a batch that fits in the current unit does
        # not wait at all
        out: list[int] = []
        if not self._queued:  # nobody is waiting for the sequence: try now
            runs, _ = self._take(n)
            for r in runs:
                out += r
            if len(out) >= n:
                return out
        if self._batching is None:
            self._batching = asyncio.Lock()
        self._queued += 1
        try:
            async with self._batching:
                while True:
                    runs, wait = self._take(n - len(out))
                    for r in runs:
                        out += r
                    if len(out) >= n:
                        return out
                    await asyncio.sleep(wait)
        finally:
            self._queued -= 1

    def _take(self, n: int) -> tuple[list[range], float]:
        try:
            return self.generator.take(n)
        except IssueRefused as exc:
            # what was taken is lost (never issued twice); the caller retries elsewhere
            raise Unavailable(message=str(exc)) from None

    @method(inline=True)
    def Decode(self, id: int) -> Decoded:
        try:
            return self.generator.layout.decode(id)
        except ValueError as exc:
            raise InvalidArgument(message=f"id: {exc}") from None


class ThreadedSnowflakeIdGen(SnowflakeIdGen):
    """:class:`SnowflakeIdGen` with ``Next`` in a worker thread (layouts with long units)."""

    def Next(self, tag: str) -> int:
        return self._one(tag)


class SegmentIdGen:
    """``IdGen`` over a :class:`SegmentAllocator` (Leaf segment mode): IDs are plain
    increasing integers per tag; ``Decode`` has nothing to decode (INVALID_ARGUMENT)."""

    def __init__(self, allocator: SegmentAllocator, *, max_batch: int = MAX_BATCH) -> None:
        self.allocator = allocator
        self.max_batch = max_batch

    async def Next(self, tag: str) -> int:
        check_tag(tag)
        try:
            return await self.allocator.next(tag)
        except SegmentUnavailable as exc:
            raise Unavailable(message=str(exc)) from None
        except UnknownTag:
            raise NotFound(message=unknown_tag(tag)) from None

    async def Batch(self, tag: str, n: int) -> list[int]:
        check_tag(tag)
        n = check_n(n, self.max_batch)
        try:
            return await self.allocator.batch(tag, n)
        except SegmentUnavailable as exc:
            raise Unavailable(message=str(exc)) from None
        except UnknownTag:
            raise NotFound(message=unknown_tag(tag)) from None

    @method(inline=True)
    def Decode(self, id: int) -> Decoded:
        raise InvalidArgument(message="id: segment-mode IDs are plain counters, nothing to decode")


def register(server: Server, service: SnowflakeIdGen | SegmentIdGen) -> Server:
    """Register ``service`` as ``IdGen`` on ``server``."""
    return server.register(service, name="IdGen")
