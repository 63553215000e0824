"""``Context`` (a msgspec Struct) keeps plain object semantics: identity equality and hash,
keyword construction, copy, pickle, per-instance cancellation, a readable repr."""

from __future__ import annotations

import copy
import pickle

from wirecall import Context


def test_context_keeps_object_semantics() -> None:
    a = Context("S.m", {"k": "v"}, None, "peer", "tcp")
    b = Context("S.m", {"k": "v"}, None, "peer", "tcp")
    assert a != b and a == a and len({a, b}) == 2
    k = Context(method="S.k", metadata={"x": "y"}, transport="grpc")
    assert (k.method, dict(k.metadata), k.deadline, k.peer, k.transport) == (
        "S.k", {"x": "y"}, None, "", "grpc")
    assert dict(Context().metadata) == {} and Context().method == ""
    c = copy.copy(a)
    assert c is not a and c.metadata == a.metadata
    p = pickle.loads(pickle.dumps(a))
    assert (p.method, dict(p.metadata), p.peer, p.transport) == ("S.m", {"k": "v"}, "peer", "tcp")
    a.cancel()
    assert a.cancelled and not b.cancelled and not c.cancelled
    assert "S.m" in repr(a)
