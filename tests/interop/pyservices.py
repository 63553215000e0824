"""The Python side of the Go interop tests: the tutorial's Calculator and an Echo service
mirroring tests/interop/go/calcserver's Echo."""

from __future__ import annotations

import asyncio

import msgspec

from wirecall import method
from wirecall.codec.gob.wire import to_float32
from wirecall.tutorial.calculator import Args, Calculator

from .gotypes import Rich, rich_full

__all__ = ["Args", "Calculator", "Echo", "rich_full_as_go_sees_it"]


def rich_full_as_go_sees_it() -> Rich:
    """rich_full() after a trip through Go (F32 is a float32 there)."""
    return msgspec.structs.replace(rich_full(), F32=to_float32(0.1))


class Echo:
    @method(inline=True)
    def Rich(self, args: Rich) -> Rich:
        return args

    @method(inline=True)
    def Check(self, args: Rich) -> str:
        return "equal" if args == rich_full_as_go_sees_it() else f"got {args!r}"

    async def Sleep(self, ms: int) -> int:
        await asyncio.sleep(ms / 1000)
        return ms
