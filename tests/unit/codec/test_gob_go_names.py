"""Gob sends struct fields under Go's exported names (Go's gob fills only exported fields,
matched by exact name): snake_case -> CamelCase, ``__go_fields__`` overrides; decoding into
a class accepts the Go name, the Python name, or either with case and underscores ignored.
(A real Go program decoding such a reply: tests/idgen/test_go_wires.py.)"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import msgspec
import pytest

from wirecall.codec.gob import decode, encode, go_field_name, go_type


@dataclasses.dataclass
class Span:
    __go_fields__: ClassVar[dict[str, str]] = {"id": "ID"}

    id: int
    time_ms: int = 0
    worker: int = 0
    Kept: str = ""


class Camel(msgspec.Struct, rename="camel"):
    start_ms: int = 0


@dataclasses.dataclass
class Clash:
    a: int = 0
    A: int = 0


def test_the_rule() -> None:
    assert [go_field_name(n) for n in ("time_ms", "id", "worker", "timeMs", "A", "UserId")] == [
        "TimeMs",
        "Id",
        "Worker",
        "TimeMs",
        "A",
        "UserId",
    ]
    assert [f.name for f in go_type(Span).fields] == ["ID", "TimeMs", "Worker", "Kept"]
    assert [f.name for f in go_type(Camel).fields] == ["StartMs"]


def test_sent_under_go_names_and_read_back_into_the_class() -> None:
    s = Span(7, 1250, 3, "k")
    data = encode(s, Span)
    assert decode(data) == {"ID": 7, "TimeMs": 1250, "Worker": 3, "Kept": "k"}
    assert decode(data, Span) == s
    assert decode(encode(Camel(5), Camel)) == {"StartMs": 5}
    assert decode(encode(Camel(5), Camel), Camel) == Camel(5)
    # a dict sent as the struct may use the Python names
    assert decode(encode({"id": 1, "time_ms": 2}, Span)) == {
        "ID": 1,
        "TimeMs": 2,
        "Worker": 0,
        "Kept": "",
    }


@dataclasses.dataclass
class OldWire:  # what an older wirecall peer sent: the Python names, as they are
    __go_fields__: ClassVar[dict[str, str]] = {"id": "id", "time_ms": "time_ms"}

    id: int
    time_ms: int


@dataclasses.dataclass
class GoSpelling:  # a Go struct {ID int64; TimeMS int64}
    __go_fields__: ClassVar[dict[str, str]] = {"time_ms": "TimeMS"}

    ID: int
    time_ms: int


def test_decoding_accepts_python_names_and_loose_spellings() -> None:
    assert decode(encode(OldWire(4, 9), OldWire), Span) == Span(4, 9)
    assert decode(encode(GoSpelling(4, 9), GoSpelling), Span) == Span(4, 9)


def test_two_fields_with_one_go_name_are_refused() -> None:
    with pytest.raises(TypeError, match="fields 'a' and 'A' are both Go field 'A'"):
        encode(Clash(1, 2), Clash)
