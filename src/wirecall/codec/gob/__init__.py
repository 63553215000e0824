"""Go's ``encoding/gob``, written from its specification: both directions, stream-scoped types.

::

    from wirecall.codec.gob import Encoder, Decoder, GoInt64, GoUint32
    enc = Encoder()                       # one per stream: types are defined once per stream
    data = enc.encode(Args(A=10, B=5))    # type definition + value, exactly as Go sends them
    dec = Decoder()
    dec.feed(data)
    args = dec.decode(dec.next_value(), Args)

See ``docs/go-interop.md`` for the Python <-> Go type mapping.
"""

from __future__ import annotations

import contextlib
from typing import Any

from . import types
from .decoder import Decoder, GobMessage, WireType
from .encoder import Encoder
from .types import *  # noqa: F403 (the Python <-> Go type mapping, as types.__all__ lists it)
from .wire import GobError, GobTooLarge

__all__ = [
    "GOB_CODEC",
    "Decoder",
    "Encoder",
    "GobCodec",
    "GobError",
    "GobMessage",
    "GobTooLarge",
    "WireType",
    "decode",
    "encode",
]
__all__ += types.__all__


def encode(value: Any, pytype: Any = None) -> bytes:
    """One value as a complete, self-contained gob stream (what a fresh Go Encoder writes)."""
    return Encoder().encode(value, pytype)


def decode(data: bytes, pytype: Any = Any) -> Any:
    """Decode a self-contained gob stream holding one value."""
    return Decoder().decode_bytes(data, pytype)


class GobCodec:
    """Gob as a registry codec: each message is a self-contained stream (types included).

    For a long-lived stream (net/rpc), use :class:`Encoder` / :class:`Decoder` directly.
    """

    name = "gob"
    id = 4
    content_type = "application/x-gob"

    def encode(self, obj: Any) -> bytes:
        return encode(obj)

    def decode(self, data: bytes | memoryview, type: Any = Any) -> Any:
        return decode(bytes(data), type)


GOB_CODEC = GobCodec()


def _register() -> None:
    from ..base import register

    with contextlib.suppress(ValueError):  # id 4 taken by another codec: keep theirs
        register(GOB_CODEC)


_register()
