"""Test services, importable by subprocess servers (``services:Probe``)."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import threading
import time
from typing import Any, TypedDict

import msgspec

import wirecall
from wirecall import Context, RpcError, Status, method


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
