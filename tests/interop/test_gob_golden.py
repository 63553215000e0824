"""Byte-exact gob: wirecall's encoder writes what Go's encoding/gob writes, and both decode
each other's bytes. The reference bytes come from tests/interop/go/gobgolden (built and run
in this session); each case runs in a fresh Go process because Go's type ids are per process.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

import msgspec
import pytest

from interop import goharness
from interop.gotypes import Args, Arr, Point, Rich, rich_full
from wirecall.codec.gob import Decoder, Encoder, GoInt64, GoUint64, decode
from wirecall.codec.gob.wire import to_float32


class RequestHdr(msgspec.Struct):
    __go_name__ = "Request"
    ServiceMethod: str = ""
    Seq: Annotated[int, GoUint64] = 0


class ResponseHdr(msgspec.Struct):
    __go_name__ = "Response"
    ServiceMethod: str = ""
    Seq: Annotated[int, GoUint64] = 0
    Error: str = ""


class Empty(msgspec.Struct):
    __go_name__ = ""


# name -> (values encoded in order on one stream, Python type of each)
CASES: dict[str, tuple[list[Any], Any]] = {
    "point": ([Point(22, 33)], Point),
    "point_twice": ([Point(1, 2), Point(3, 4)], Point),
    "int3": ([3], int),
    "int_neg": ([-129], int),
    "int64_min": ([-(1 << 63)], Annotated[int, GoInt64]),
    "uint64_max": ([(1 << 64) - 1], Annotated[int, GoUint64]),
    "float17": ([17.0], float),
    "float_inf": ([-math.inf], float),
    "bool_true": ([True], bool),
    "string_utf8": (["除数不能为零"], str),
    "bytes": ([b"\x01\x02\x03"], bytes),
    "strings": ([["a", "", "c"]], list[str]),
    "map1": ([{"one": 1}], dict[str, int]),
    "args": ([Args(10, 5)], Args),
    "args_zero": ([Args()], Args),
    "rich": ([rich_full()], Rich),
    "rich_zero": ([Rich()], Rich),
    "arr": ([Arr(A=[1, 0, 3], C=complex(1.5, -2))], Arr),
}
NETRPC = {
    "netrpc_request": [(RequestHdr("Calculator.Add", 1), RequestHdr), (Args(10, 5), Args)],
    "netrpc_response": [
        (ResponseHdr("Calculator.Divide", 2, "除数不能为零"), ResponseHdr),
        (Empty(), Empty),
    ],
}


@pytest.fixture(scope="module")
def golden() -> dict[str, bytes]:
    out = {}
    for name in [*CASES, *NETRPC]:
        (line,) = goharness.run("gobgolden", "-mode", "encode", "-case", name)
        out[line["name"]] = bytes.fromhex(line["hex"])
    return out


def _ours(values: list[tuple[Any, Any]]) -> bytes:
    enc = Encoder()
    return b"".join(enc.encode(v, t) for v, t in values)


@pytest.mark.parametrize("name", list(CASES))
def test_encoder_matches_go_bytes(golden: dict[str, bytes], name: str) -> None:
    values, tp = CASES[name]
    assert _ours([(v, tp) for v in values]).hex() == golden[name].hex()


@pytest.mark.parametrize("name", list(NETRPC))
def test_netrpc_messages_match_go_bytes(golden: dict[str, bytes], name: str) -> None:
    assert _ours(NETRPC[name]).hex() == golden[name].hex()


def _expected(name: str, v: Any) -> Any:
    if name == "rich":
        return msgspec.structs.replace(v, F32=to_float32(0.1))
    return v


@pytest.mark.parametrize("name", list(CASES))
def test_decoder_reads_go_bytes(golden: dict[str, bytes], name: str) -> None:
    values, tp = CASES[name]
    dec = Decoder()
    dec.feed(golden[name])
    for want in values:
        msg = dec.next_value()
        assert msg is not None
        assert dec.decode(msg, tp) == _expected(name, want)
    assert dec.next_value() is None


def test_untyped_decoding_gives_plain_values(golden: dict[str, bytes]) -> None:
    rich = decode(golden["rich"])
    assert rich["I"] == -(1 << 63) and rich["U"] == (1 << 64) - 1
    assert rich["S"] == "héllo, 世界" and rich["Raw"] == b"\x00\x01\x02\xff"
    assert rich["M"] == {"k": -7} and rich["Any"] == 7
    assert rich["In"] == {"Name": "in", "Tags": ["a", "b"]}
    assert rich["L"] == [{"Name": "x", "Tags": []}, {"Name": "", "Tags": ["t"]}]
    zero = decode(golden["rich_zero"])
    # every wire field is present, omitted ones as Go zero values
    assert zero["I"] == 0 and zero["S"] == "" and zero["N"] == [] and zero["M"] == {}
    assert zero["In"] == {"Name": "", "Tags": []} and zero["Any"] is None
    typed_zero = decode(golden["rich_zero"], Rich)
    assert typed_zero == Rich() and typed_zero.P is None


def test_go_decodes_our_bytes() -> None:
    lines = []
    for name, (values, tp) in CASES.items():
        lines.append(json.dumps({"name": name, "hex": _ours([(v, tp) for v in values]).hex()}))
    # a multi-entry map (Go's iteration order is random, so it cannot be byte-compared)
    results = goharness.run("gobgolden", "-mode", "decode", stdin="\n".join(lines) + "\n")
    assert len(results) == len(CASES)
    bad = [r for r in results if not r["ok"]]
    assert not bad, bad


def test_inner_type_shared_between_fields_is_defined_once() -> None:
    data = Encoder().encode(rich_full(), Rich)
    assert data.count(b"\x05Inner") == 1
