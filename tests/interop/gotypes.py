"""Python mirrors of the Go types in tests/interop/go/*: field names are the Go names."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from wirecall.codec.gob import GoArray, GoFloat32, GoInt32, GoInt64, GoUint32, GoUint64


class Point(msgspec.Struct):
    X: int = 0
    Y: int = 0


class Args(msgspec.Struct):
    A: int = 0
    B: int = 0


class Inner(msgspec.Struct):
    Name: str = ""
    Tags: list[str] = []


class Rich(msgspec.Struct):
    I: Annotated[int, GoInt64] = 0  # noqa: E741 - the Go field name
    U: Annotated[int, GoUint64] = 0
    F: float = 0.0
    B: bool = False
    S: str = ""
    Raw: bytes = b""
    M: dict[str, int] = {}
    In: Inner = msgspec.field(default_factory=Inner)
    P: Inner | None = None
    L: list[Inner] = []
    N: list[int] = []
    I32: Annotated[int, GoInt32] = 0
    U32: Annotated[int, GoUint32] = 0
    F32: Annotated[float, GoFloat32] = 0.0
    Any: Any = None


class Arr(msgspec.Struct):
    A: Annotated[list[int], GoArray(3)] = msgspec.field(default_factory=lambda: [0, 0, 0])
    C: complex = 0j


def rich_full() -> Rich:
    """The same value as richFull() in the Go programs."""
    return Rich(
        I=-(1 << 63),
        U=(1 << 64) - 1,
        F=3.25,
        B=True,
        S="héllo, 世界",
        Raw=bytes([0, 1, 2, 255]),
        M={"k": -7},
        In=Inner(Name="in", Tags=["a", "b"]),
        P=Inner(Name="p"),
        L=[Inner(Name="x"), Inner(Tags=["t"])],
        N=[0, 1, -1, 1 << 40],
        I32=-(1 << 31),
        U32=(1 << 32) - 1,
        F32=0.1,
        Any=7,
    )
