"""The gob codec on its own: Hypothesis round trips, type mapping, hostile input."""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated, Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interop.gotypes import Inner, Rich
from wirecall.codec import get as get_codec
from wirecall.codec.gob import (
    Decoder,
    Encoder,
    GobError,
    GobTooLarge,
    GoInt32,
    GoUint8,
    GoUint64,
    decode,
    encode,
)
from wirecall.codec.gob.wire import append_int, append_uint, read_int, read_uint, to_float32

i64 = st.integers(-(1 << 63), (1 << 63) - 1)
u64 = st.integers(0, (1 << 64) - 1)
floats = st.floats(allow_nan=False)
text = st.text()


@given(u64)
def test_uint_roundtrip(u: int) -> None:
    out = bytearray()
    append_uint(out, u)
    assert read_uint(bytes(out), 0) == (u, len(out))


@given(i64)
def test_int_roundtrip(i: int) -> None:
    out = bytearray()
    append_int(out, i)
    assert read_int(bytes(out), 0) == (i, len(out))


def test_spec_examples() -> None:
    out = bytearray()
    append_uint(out, 256)
    assert bytes(out) == b"\xfe\x01\x00"
    out = bytearray()
    append_int(out, -129)
    assert bytes(out) == b"\xfe\x01\x01"
    assert encode(17.0)[-3:] == b"\xfe\x31\x40"


inner_st = st.builds(Inner, Name=text, Tags=st.lists(text, max_size=3))
rich_st = st.builds(
    Rich,
    I=i64,
    U=u64,
    F=floats,
    B=st.booleans(),
    S=text,
    Raw=st.binary(),
    M=st.dictionaries(text, i64, max_size=4),
    In=inner_st,
    P=st.none() | inner_st,
    L=st.lists(inner_st, max_size=3),
    N=st.lists(i64, max_size=5),
    I32=st.integers(-(1 << 31), (1 << 31) - 1),
    U32=st.integers(0, (1 << 32) - 1),
    F32=floats.map(lambda f: to_float32(f) if abs(f) < 3e38 else 0.0),
    Any=st.none() | i64 | text | st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(rich_st)
def test_rich_struct_roundtrip(r: Rich) -> None:
    assert decode(encode(r, Rich), Rich) == r


@settings(max_examples=100, deadline=None)
@given(st.lists(rich_st, min_size=1, max_size=4))
def test_one_stream_many_values(values: list[Rich]) -> None:
    enc = Encoder()
    data = b"".join(enc.encode(v, Rich) for v in values)
    assert data.count(b"\x04Rich") == 1  # the type is defined once per stream
    dec = Decoder()
    for cut in (1, 7, len(data)):  # any chunking of the stream works
        dec = Decoder()
        got = []
        for i in range(0, len(data), cut):
            dec.feed(data[i : i + cut])
            while (m := dec.next_value()) is not None:
                got.append(dec.decode(m, Rich))
        assert got == values


json_like = st.recursive(
    st.none() | st.booleans() | i64 | floats | text,
    lambda children: st.lists(children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(text, i64, max_size=5), st.lists(text, max_size=5), floats, st.binary())
def test_untyped_values_roundtrip(m: dict[str, int], lst: list[str], f: float, b: bytes) -> None:
    assert decode(encode(m)) == m
    assert decode(encode(lst)) == lst
    got = decode(encode(f))
    assert got == f and math.copysign(1, got) == math.copysign(1, f)
    assert decode(encode(b)) == b


@dataclasses.dataclass
class Node:
    Value: int = 0
    Children: list[Node] = dataclasses.field(default_factory=list)


def test_recursive_types_and_dataclasses() -> None:
    tree = Node(1, [Node(2), Node(3, [Node(4)])])
    assert decode(encode(tree, Node), Node) == tree
    assert decode(encode(tree, Node))["Children"][1]["Children"][0]["Value"] == 4


class Renamed(msgspec.Struct, rename="pascal"):
    user_id: int = 0


def test_msgspec_rename_gives_go_field_names() -> None:
    assert decode(encode(Renamed(5), Renamed)) == {"UserId": 5}


def test_range_checked_markers() -> None:
    with pytest.raises(GobError, match="out of range for Go int32"):
        encode(1 << 31, Annotated[int, GoInt32])
    with pytest.raises(GobError, match="out of range for Go uint64"):
        encode(-1, Annotated[int, GoUint64])
    with pytest.raises(GobError, match="out of range for Go uint8"):
        decode(encode(300, Annotated[int, GoUint64]), Annotated[int, GoUint8])


def test_signedness_mismatch_is_an_error_like_go() -> None:
    with pytest.raises(GobError, match="type mismatch"):
        decode(encode(5, Annotated[int, GoUint64]), Annotated[int, GoInt32])
    with pytest.raises(GobError, match="type mismatch"):
        decode(encode("x"), int)


class Other(msgspec.Struct):
    Z: int = 0


def test_struct_with_no_common_field_is_an_error() -> None:
    with pytest.raises(GobError, match="no fields matched"):
        decode(encode(Inner("a"), Inner), Other)


def test_registry_codec() -> None:
    c = get_codec("gob")
    assert c.id == 4 and c.decode(c.encode(Inner("x", ["y"])), Inner) == Inner("x", ["y"])


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x03\x7f\x00\x00", "type id -64 is not defined|reserved|not defined"),
        (b"\x03\xff\x82\x00", "not defined"),  # value of undefined type 65
        (b"\x04\xff\x81\x09\x00", "unknown wireType field"),
        (b"\x06\xff\x81\x03\x01\x02\x02", "says it is type|truncated"),
        (b"\x05\x0c\x00\x7f\x41\x41", "overruns"),  # string longer than the message
        (b"\x02\x04\x00", "truncated"),
        (b"\x00", "empty message"),
        (b"\xf5", "invalid message length"),
    ],
)
def test_hostile_input_gives_clear_errors(data: bytes, match: str) -> None:
    dec = Decoder()
    with pytest.raises(GobError, match=match):
        dec.feed(data)
        m = dec.next_value()
        if m is not None:
            dec.decode(m)
        else:
            raise GobError("truncated (incomplete)")


def test_huge_counts_and_lengths_are_refused() -> None:
    dec = Decoder(max_message_size=1000)
    with pytest.raises(GobTooLarge):
        dec.feed(b"\xfc\x40\x00\x00\x00")  # a 1 GiB message announced
        dec.next_value()
    # a slice claiming 2**40 elements in a 10-byte message
    enc = encode([1, 2, 3])
    evil = enc.replace(b"\x03\x02\x04\x06", b"\xfb\x01\x00\x00\x00\x00\x00")
    with pytest.raises(GobError):
        decode(evil)


def test_recursive_value_nesting_is_bounded() -> None:
    deep: Any = Node()
    for _ in range(3000):
        deep = Node(1, [deep])
    with pytest.raises((GobError, RecursionError)):
        encode(deep, Node)
