"""A plain call observer (no ``fast_handler``) keeps the native fast lane: the server runs its
``call_started`` and ``on_done`` around the inline handler, in a copy of the context."""

from __future__ import annotations

import contextvars
from typing import Any

import msgspec
import pytest

from wirecall import Client, Context, Internal, NotFound, PermissionDenied, RpcError, Server
from wirecall import method as rpc_method

SEEN: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="-")


class Args(msgspec.Struct):
    A: int
    B: int


class Calc:
    @rpc_method(inline=True)
    def Add(self, args: Args) -> int:
        return args.A + args.B

    @rpc_method(inline=True)
    def Tag(self, args: Args) -> str:
        """What the observer set in the context the handler runs in."""
        return SEEN.get()

    @rpc_method(inline=True)
    def Refuse(self, args: Args) -> int:
        if args.A < 0:
            raise ValueError("negative")  # INTERNAL for the caller
        raise NotFound(message=f"refused {args.A}")


class Plain:
    """An observer without ``fast_handler``: records starts and ends, sets a context
    variable for the handler, refuses calls of the method named in ``refuse``."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.refuse = ""

    def call_started(self, method: str, ctx: Context, on_done: Any) -> Any:
        self.events.append(("start", method, ctx.transport, SEEN.get()))
        if method == self.refuse:
            raise PermissionDenied(message="not you")
        SEEN.set(f"set for {method}")

        def done(result: Any, err: BaseException | None) -> None:
            self.events.append(("done", method, result, err))
            on_done(result, err)

        return done

    def stream_started(self, method: str, ctx: Context, on_done: Any) -> Any:
        return on_done


async def test_plain_observer_on_the_fast_lane() -> None:
    server = Server()
    server.register(Calc())
    plain = Plain()
    server.add_observer(plain)
    lane = server.fast_lane(msgspec.msgpack)
    [url] = await server.start("tcp://127.0.0.1:0")
    try:
        async with Client(url) as c:
            assert await c.call("Calc.Add", Args(1, 2), result_type=int) == 3
            # the lane took it (an entry exists) and the observer saw it start and end
            assert lane.get("Calc.Add") is not None
            assert plain.events == [
                ("start", "Calc.Add", "tcp", "-"),
                ("done", "Calc.Add", 3, None),
            ]
            # what call_started set is the handler's, and goes no further (the copy)
            assert await c.call("Calc.Tag", Args(0, 0), result_type=str) == "set for Calc.Tag"
            assert plain.events[-2][3] == "-"
            assert await c.call("Calc.Tag", Args(0, 0), result_type=str) == "set for Calc.Tag"
            assert plain.events[-2] == ("start", "Calc.Tag", "tcp", "-")
            with pytest.raises(NotFound, match="refused 4"):
                await c.call("Calc.Refuse", Args(4, 0))
            kind, name, result, err = plain.events[-1]
            assert (kind, name, result) == ("done", "Calc.Refuse", None)
            assert isinstance(err, NotFound)
            # a handler's bug reaches the observer as the INTERNAL the caller gets
            with pytest.raises(Internal) as got:
                await c.call("Calc.Refuse", Args(-1, 0))
            err = plain.events[-1][3]
            assert isinstance(err, Internal) and err.message == got.value.message
            # refusing from call_started: the handler does not run
            plain.refuse = "Calc.Add"
            n = len(plain.events)
            with pytest.raises(RpcError) as refused:
                await c.call("Calc.Add", Args(1, 2), result_type=int)
            assert isinstance(refused.value, PermissionDenied)
            assert plain.events[n:] == [("start", "Calc.Add", "tcp", "-")]
    finally:
        await server.close(drain_timeout=1)
