"""The Avro codec without a network: schemas derived from type hints (or given), the
fingerprint, Avro's resolution rules one rule at a time, and the per-connection session
(schema text sent until acknowledged, learnt once, bad input refused by name)."""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Annotated, ClassVar

import msgspec
import pytest

from wirecall.codec import get
from wirecall.codec.avro import AVRO_CODEC, AVRO_INT, AvroSession, schema_for


class Color(enum.Enum):
    RED = 1
    BLUE = 2


@dataclasses.dataclass
class Inner:
    tags: list[str]
    scores: dict[str, float]


@dataclasses.dataclass
class Outer:
    id: int
    small: Annotated[int, AVRO_INT]
    name: str
    blob: bytes
    color: Color
    inner: Inner
    more: list[Inner]
    maybe: str | None = None
    flag: bool = True


class Pt(msgspec.Struct):
    x: int
    y: int = 0


def test_schema_derived_from_type_hints() -> None:
    s = schema_for(Outer)
    assert s["type"] == "record" and s["name"] == "Outer"
    fields = {f["name"]: f for f in s["fields"]}
    assert fields["id"]["type"] == "long"
    assert fields["small"]["type"] == "int"
    assert fields["blob"]["type"] == "bytes"
    assert fields["color"]["type"] == {"type": "enum", "name": "Color",
                                       "symbols": ["RED", "BLUE"]}
    assert fields["inner"]["type"]["name"] == "Inner"
    assert fields["more"]["type"] == {"type": "array", "items": "Inner"}  # named once
    assert fields["maybe"] == {"name": "maybe", "type": ["null", "string"], "default": None}
    assert fields["flag"]["default"] is True
    assert schema_for(Pt)["fields"][1] == {"name": "y", "type": "long", "default": 0}
    with pytest.raises(TypeError, match="no Avro schema"):
        schema_for(object)
    with pytest.raises(TypeError, match="string keys"):
        schema_for(dict[int, str])


def test_round_trip_of_a_nested_record_and_primitives() -> None:
    v = Outer(7, 3, "n", b"\x00\xff", Color.BLUE, Inner(["a"], {"k": 1.5}),
              [Inner([], {})], None, False)
    data = AVRO_CODEC.encode(v)
    assert AVRO_CODEC.decode(data, Outer) == v
    assert AVRO_CODEC.decode(AVRO_CODEC.encode([1, 2, 3]), list[int]) == [1, 2, 3]
    assert AVRO_CODEC.decode(AVRO_CODEC.encode("hé"), str) == "hé"
    # Avro carries no field names: a 3-field record of small values is a few bytes
    assert len(AVRO_CODEC.encode(Pt(1, 2))) == 2
    assert get("avro") is AVRO_CODEC and get(5) is AVRO_CODEC


def test_a_given_schema_replaces_the_derived_one() -> None:
    @dataclasses.dataclass
    class Given:
        __avro_schema__: ClassVar[dict[str, object]] = {"type": "record", "name": "G",
                           "fields": [{"name": "v", "type": "int"}]}
        v: int

    assert schema_for(Given)["fields"][0]["type"] == "int"
    assert AVRO_CODEC.decode(AVRO_CODEC.encode(Given(5)), Given) == Given(5)


def _v(name: str, /, **fields: object) -> type:
    """A dataclass with Avro record name ``name`` (two versions of one record)."""
    aliases = fields.pop("__aliases__", {})
    annotations = {k: v[0] if isinstance(v, tuple) else v for k, v in fields.items()}
    ns: dict[str, object] = {"__annotations__": annotations, "__avro_name__": name,
                             "__avro_aliases__": aliases}
    for k, v in fields.items():
        if isinstance(v, tuple):
            ns[k] = v[1]
    return dataclasses.dataclass(type(name + "V", (), ns))


def _resolve(writer_obj: object, reader_type: type) -> object:
    body, schema = AVRO_CODEC.write(writer_obj)
    return AVRO_CODEC.read(body, reader_type, schema)


def test_evolution_rules_each_way() -> None:
    old = _v("P", x=int)
    new = _v("P", x=int, z=(int, 9))  # a field added with a default
    assert _resolve(old(1), new) == new(1, 9)
    assert _resolve(new(1, 5), old) == old(1)  # the reader ignores what it does not know

    old = _v("U", name=str, email=(str, "-"))
    new = _v("U", name=str)  # a field removed (it had a default)
    assert _resolve(old("a", "a@x"), new) == new("a")
    assert _resolve(new("a"), old) == old("a", "-")

    old = _v("I", title=str)
    new = _v("I", name=str, __aliases__={"name": ["title"]})  # renamed, old name an alias
    assert _resolve(old("t"), new) == new("t")
    with pytest.raises(ValueError, match="title"):  # the old reader has no alias back
        _resolve(new("t"), old)

    old = _v("C", n=Annotated[int, AVRO_INT])
    new = _v("C", n=int)  # int widened to long
    assert _resolve(old(2**31 - 1), new) == new(2**31 - 1)
    with pytest.raises(ValueError, match="cannot decode Avro data"):  # long -> int: refused
        _resolve(new(5), old)


def test_session_sends_the_schema_until_acknowledged_and_learns_it_once() -> None:
    a, b = AvroSession(AVRO_CODEC), AvroSession(AVRO_CODEC)
    body, md = a.encode(Pt(1, 2))
    assert md["wirecall-codec"] == "avro" and json.loads(md["avro-schema"])["name"] == "Pt"
    assert b.decode(body, Pt, md) == Pt(1, 2)
    _body2, md2 = a.encode(Pt(3, 4))
    assert "avro-schema" in md2  # not acknowledged yet (the call could have been reordered)
    reply, rmd = b.encode("ok")
    assert rmd["avro-ack"] == md["avro-fp"]  # b acknowledges what it learnt
    assert a.decode(reply, str, rmd) == "ok"
    body3, md3 = a.encode(Pt(5, 6))
    assert "avro-schema" not in md3 and md3["avro-fp"] == md["avro-fp"]
    assert b.decode(body3, Pt, md3) == Pt(5, 6)  # parsed once, found by fingerprint
    assert len(b.learnt) == 1


def test_session_refuses_bad_metadata_by_name() -> None:
    s = AvroSession(AVRO_CODEC)
    body, md = AvroSession(AVRO_CODEC).encode(Pt(1))
    with pytest.raises(ValueError, match="fingerprint"):
        s.decode(body, Pt, {"wirecall-codec": "avro"})
    with pytest.raises(ValueError, match="unknown Avro schema fingerprint"):
        s.decode(body, Pt, {"avro-fp": md["avro-fp"]})
    with pytest.raises(ValueError, match="does not match its fingerprint"):
        s.decode(body, Pt, {"avro-fp": "0" * 16, "avro-schema": md["avro-schema"]})
    with pytest.raises(ValueError, match="bad Avro schema"):
        s.decode(body, Pt, {"avro-fp": "1" * 16, "avro-schema": "{not json"})
    with pytest.raises(ValueError, match="cannot decode Avro data"):
        s.decode(b"\x01", Pt, md)  # truncated body
