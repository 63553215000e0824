"""Named arguments bind Go's exported spellings: exact name first, then the one parameter
equal with case and underscores ignored (``Tag`` -> ``tag``, ``TimeMs`` -> ``time_ms``).
What a Go struct sends over gob or Go JSON-RPC; the rule is the same on every wire."""

from __future__ import annotations

from typing import Any

import pytest

from wirecall import InvalidArgument
from wirecall.service import MethodSpec


def spec_of(fn: Any) -> MethodSpec:
    return MethodSpec("S.f", fn)


def test_go_field_names_bind_to_snake_case_parameters() -> None:
    def batch(tag: str, n: int) -> None: ...

    def span(start_ms: int, time_ms: int = 0, worker_id: int = 0) -> None: ...

    assert spec_of(batch).bind({"Tag": "x", "N": 3}) == ([], {"tag": "x", "n": 3})
    assert spec_of(batch).bind({"tag": "x", "n": 3}) == ([], {"tag": "x", "n": 3})
    s = spec_of(span)
    got = s.bind({"StartMs": 1, "TimeMS": 2, "WorkerID": 3})
    assert got == ([], {"start_ms": 1, "time_ms": 2, "worker_id": 3})
    assert s.bind({"START_MS": 5}) == ([], {"start_ms": 5})
    # values are still converted to the parameter's type, and reported under its name
    with pytest.raises(InvalidArgument, match="invalid argument 'n'"):
        spec_of(batch).bind({"Tag": "x", "N": "three"})


def test_exact_match_wins_then_ambiguous_unknown_and_repeated_names_are_refused() -> None:
    def f(time_ms: int = 0, timems: int = 0, Tag: str = "", tag: str = "") -> None: ...

    s = spec_of(f)
    # every parameter reachable by its exact name, even where the folded names collide
    assert s.bind({"time_ms": 1, "timems": 2, "Tag": "a", "tag": "b"}) == (
        [],
        {"time_ms": 1, "timems": 2, "Tag": "a", "tag": "b"},
    )
    with pytest.raises(InvalidArgument, match=r"'TimeMs' of S\.f matches several.*'time_ms'"):
        s.bind({"TimeMs": 1})
    with pytest.raises(InvalidArgument, match=r"'TAG' of S\.f matches several"):
        s.bind({"TAG": "x"})

    def g(tag: str, n: int = 1) -> None: ...

    with pytest.raises(InvalidArgument, match=r"unexpected argument 'Size' for S\.f"):
        spec_of(g).bind({"Tag": "x", "Size": 2})
    with pytest.raises(InvalidArgument, match=r"argument 'Tag' of S\.f names 'tag' again"):
        spec_of(g).bind({"tag": "x", "Tag": "y"})
    with pytest.raises(InvalidArgument, match=r"argument 'TAG' of S\.f names 'tag' again"):
        spec_of(g).bind({"Tag": "x", "TAG": "y"})
    with pytest.raises(InvalidArgument, match="missing argument 'tag'"):
        spec_of(g).bind({"N": 2})


def test_loose_names_bind_before_kwargs_and_not_to_positional_only() -> None:
    def f(tag: str = "", /, n: int = 1, **extra: Any) -> None: ...

    s = spec_of(f)
    assert s.bind(["x"]) == (["x"], {})
    assert s.bind({"N": 2, "Other": 3}) == ([], {"n": 2, "Other": 3})
    with pytest.raises(InvalidArgument, match=r"argument 'Tag' of S\.f is positional"):
        s.bind({"Tag": "x"})
