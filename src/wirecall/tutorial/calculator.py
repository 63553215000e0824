"""The tutorial's Calculator (section 2.1.1), as a wirecall service.

Go::

    type Args struct { A, B int }
    func (c *Calculator) Add(args *Args, reply *int) error
    func (c *Calculator) Divide(args *Args, reply *float64) error  // "除数不能为零"

Serve it with ``wirecall serve wirecall.tutorial.calculator:Calculator --listen tcp://:1234``.
"""

from __future__ import annotations

import msgspec

from wirecall import RpcError, Status, method

__all__ = ["DIVIDE_BY_ZERO", "Args", "Calculator", "CalculatorAPI"]

#: The tutorial's error text, sent as the error message (Go clients see exactly this string).
DIVIDE_BY_ZERO = "除数不能为零"


class Args(msgspec.Struct):
    """The tutorial's ``Args{A, B int}``."""

    A: int
    B: int


class Calculator:
    """Registered as ``Calculator``: ``Calculator.Add`` and ``Calculator.Divide``."""

    @method(inline=True)  # pure arithmetic: run on the event loop, no worker thread
    def Add(self, args: Args) -> int:
        """A + B."""
        return args.A + args.B

    @method(inline=True)
    def Divide(self, args: Args) -> float:
        """A / B; B == 0 is an error with the tutorial's message."""
        if args.B == 0:
            raise RpcError(Status.INVALID_ARGUMENT, DIVIDE_BY_ZERO)
        return args.A / args.B


class CalculatorAPI:
    """The client's typed view of the service: ``client.stub(CalculatorAPI)``."""

    __wirecall_service__ = "Calculator"

    async def Add(self, args: Args) -> int:
        raise NotImplementedError

    async def Divide(self, args: Args) -> float:
        raise NotImplementedError
