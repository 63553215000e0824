"""Test services, importable by subprocess servers (``support.services:Probe``)."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import threading
import time
from collections.abc import AsyncIterator
from typing import Any, TypedDict

import msgspec

import wirecall
from wirecall import Context, NotFound, RpcError, Status, method


class Point(msgspec.Struct):
    x: int
    y: int


@dataclasses.dataclass
class Box:
    name: str
    corners: list[Point]


class Opts(TypedDict):
    scale: float
    label: str


class Probe:
    """Records what handlers saw, so tests can assert it."""

    def __init__(self) -> None:
        self.cancelled: list[str] = []
        self.seen_metadata: list[dict[str, str]] = []
        self.threads: list[str] = []
        self.entered = 0

    async def Echo(self, value: Any) -> Any:
        return value

    async def Sleep(self, seconds: float, tag: str = "") -> str:
        self.entered += 1
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.cancelled.append(tag)
            raise
        return f"slept {seconds}"

    def Entered(self) -> int:
        """How many Sleep calls have started (a test waits for a call to be in flight)."""
        return self.entered

    async def RandomDelay(self, i: int) -> int:
        await asyncio.sleep(random.random() * 0.02)
        return i

    async def Meta(self, ctx: Context) -> dict[str, Any]:
        self.seen_metadata.append(dict(ctx.metadata))
        return {"metadata": dict(ctx.metadata), "remaining": ctx.time_remaining(),
                "peer": ctx.peer, "method": ctx.method}

    async def Fail(self, kind: str) -> None:
        if kind == "rpc":
            raise RpcError(Status.FAILED_PRECONDITION, "not now")
        if kind == "key":
            raise KeyError("missing-key")
        raise ValueError("boom")

    def Blocking(self, seconds: float) -> str:
        self.threads.append(threading.current_thread().name)
        time.sleep(seconds)
        return threading.current_thread().name

    @method(inline=True)
    def Inline(self) -> str:
        return threading.current_thread().name

    async def Shape(self, box: Box, opts: Opts) -> dict[str, Any]:
        return {"name": box.name, "n": len(box.corners), "scale": opts["scale"],
                "sum": sum(p.x + p.y for p in box.corners)}

    async def Named(self, a: int, b: int = 10, *, c: str = "c") -> list[Any]:
        return [a, b, c]

    async def Bytes(self, data: bytes) -> bytes:
        return data[::-1]

    async def Big(self, n: int) -> bytes:
        return b"x" * n


class Relay:
    """Calls onward to another server, to show deadline/metadata inheritance."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.client: wirecall.Client | None = None

    async def Forward(self, ctx: Context) -> dict[str, Any]:
        if self.client is None:
            self.client = await wirecall.connect(self.target)
        out: dict[str, Any] = await self.client.call("Probe.Meta")
        return out


class Calc:
    """The four call modes for a plain Python class (streaming tests on every wire)."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.produced = 0

    async def Add(self, a: int, b: int) -> int:
        return a + b

    async def Count(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    async def Sum(self, points: AsyncIterator[Point]) -> Point:
        sx = sy = 0
        async for p in points:
            sx += p.x
            sy += p.y
        return Point(sx, sy)

    async def Double(self, nums: AsyncIterator[int]) -> AsyncIterator[int]:
        async for n in nums:
            if n < 0:
                raise NotFound(message=f"negative {n}")
            yield 2 * n

    async def Firehose(self, size: int, ctx: Context) -> AsyncIterator[bytes]:
        try:
            while True:
                self.produced += 1
                yield b"x" * size
        finally:  # GeneratorExit or CancelledError: the stream was cancelled
            self.cancelled.set()

    async def Sleepy(self, ctx: Context) -> AsyncIterator[int]:
        try:
            yield 1
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
