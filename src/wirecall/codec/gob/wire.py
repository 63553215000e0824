"""Gob's primitive encodings: unsigned/signed integers, floats, strings; and its errors."""

from __future__ import annotations

import struct

from ...errors import FrameTooLarge, ProtocolError

__all__ = [
    "GobError",
    "GobTooLarge",
    "append_int",
    "append_uint",
    "float_bits",
    "float_from_bits",
    "read_int",
    "read_uint",
]

_pack_le_d = struct.Struct("<d").pack
_unpack_le_d = struct.Struct("<d").unpack
_pack_f = struct.Struct("<f").pack
_unpack_f = struct.Struct("<f").unpack


class GobError(ProtocolError):
    """Malformed, hostile or incompatible gob data (the message says what and where)."""

    def __init__(self, message: str) -> None:
        super().__init__("gob: " + message)


class GobTooLarge(FrameTooLarge):
    """A gob message whose length is over the limit; refused before it is buffered."""


def append_uint(out: bytearray, u: int) -> None:
    """Append ``u`` (0 <= u < 2**64): one byte below 128, else -count then big-endian bytes."""
    if u < 128:
        out.append(u)
        return
    n = (u.bit_length() + 7) >> 3
    out.append(256 - n)
    out += u.to_bytes(n, "big")


def uint_bytes(u: int) -> bytes:
    if u < 128:
        return bytes((u,))
    n = (u.bit_length() + 7) >> 3
    return bytes((256 - n,)) + u.to_bytes(n, "big")


def append_int(out: bytearray, i: int) -> None:
    """Signed: bit 0 says "complement"; the rest is the value (or its complement)."""
    if i >= 0:
        u = i << 1
        if u < 128:
            out.append(u)
            return
    else:
        u = ((~i) << 1) | 1
    append_uint(out, u)


def int_bytes(i: int) -> bytes:
    out = bytearray()
    append_int(out, i)
    return bytes(out)


def float_bits(f: float) -> int:
    """The uint gob sends for a float64: its IEEE bits, byte-reversed."""
    return int.from_bytes(_pack_le_d(f), "big")


def float_from_bits(u: int) -> float:
    return float(_unpack_le_d(u.to_bytes(8, "big"))[0])


def to_float32(f: float) -> float:
    """Round like Go's ``float32(f)`` (overflow raises ``OverflowError``)."""
    return float(_unpack_f(_pack_f(f))[0])


def read_uint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode an unsigned integer at ``pos``; ``(value, new_pos)``. Raises IndexError if short."""
    b = buf[pos]
    if b < 128:
        return b, pos + 1
    n = 256 - b
    if n > 8:
        raise GobError(f"invalid uint byte count {n} at offset {pos}")
    end = pos + 1 + n
    if end > len(buf):
        raise GobError(f"truncated uint at offset {pos}")
    return int.from_bytes(buf[pos + 1 : end], "big"), end


def read_int(buf: bytes, pos: int) -> tuple[int, int]:
    b = buf[pos]
    if b < 128:
        return (~(b >> 1) if b & 1 else b >> 1), pos + 1
    u, pos = read_uint(buf, pos)
    return (~(u >> 1) if u & 1 else u >> 1), pos
