"""Go JSON-RPC 1.0, sans-IO: stream splitting, Go's request/response semantics."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interop.gotypes import Inner, Rich
from wirecall.errors import FrameTooLarge, ProtocolError
from wirecall.protocol import gojsonrpc as gj

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(), c, max_size=3),
    max_leaves=8,
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.dictionaries(st.text(), values, max_size=4), min_size=1, max_size=4),
       st.integers(1, 13), st.sampled_from(["\n", " ", "", "\r\n\t"]))
def test_splitter_any_chunking(objs: list[dict], chunk: int, sep: str) -> None:
    data = sep.join(json.dumps(o, indent=None if chunk % 2 else 1) for o in objs).encode()
    sp = gj.JsonValueSplitter()
    got = []
    for i in range(0, len(data), chunk):
        got += sp.feed(data[i : i + chunk])
    assert got == objs


def test_splitter_refuses_garbage_and_oversized() -> None:
    with pytest.raises(ProtocolError):
        gj.JsonValueSplitter().feed(b"12 ")
    sp = gj.JsonValueSplitter(max_size=50)
    with pytest.raises(FrameTooLarge):
        sp.feed(b'{"a": "' + b"x" * 100)


def test_go_request_semantics() -> None:
    assert gj.parse_request({"method": "A.B", "id": 1}).error == gj.MISSING_PARAMS
    assert gj.parse_request({"method": "A.B", "params": None}).error == gj.MISSING_PARAMS
    c = gj.parse_request({"method": "A.B", "params": {"x": 1}, "id": 2})
    assert c.error == "json: cannot unmarshal object into Go value of type [1]interface {}"
    c = gj.parse_request({"method": "A.B", "params": [5, 6], "id": "z"})
    assert (c.arg, c.id, c.error) == (5, "z", None)
    with pytest.raises(ProtocolError):
        gj.parse_request([1])


def test_go_json_convert_is_case_insensitive_and_null_tolerant() -> None:
    r = gj.go_json_convert({"s": "x", "n": None, "in": {"name": "a", "tags": None}}, Rich)
    assert r.S == "x" and r.N == [] and r.In == Inner("a", [])
    assert gj.go_json_convert(None, int) == 0


def test_responses_are_spelt_like_go() -> None:
    assert gj.encode_response(1, 2.0) == b'{"id":1,"result":2,"error":null}\n'
    assert gj.encode_response("a", error="除数不能为零") == (
        '{"id":"a","result":null,"error":"除数不能为零"}\n'.encode()
    )
    assert gj.encode_response(None, "<a&b>") == (
        b'{"id":null,"result":"\\u003ca\\u0026b\\u003e","error":null}\n'
    )
    assert gj.go_float(1e-7) == b"1e-7" and gj.go_float(1e21) == b"1e+21"
    assert gj.go_float(0.000001) == b"0.000001" and gj.go_float(-0.0) == b"-0"
    assert gj.encode_request(3, "A.B", Inner("n")) == (
        b'{"method":"A.B","params":[{"Name":"n","Tags":null}],"id":3}\n'
    )


async def test_a_call_still_running_after_the_read_is_tracked_and_answered() -> None:
    """An async handler outlives the read that started it: the connection tracks its Context
    (in a set: Context must hash by identity) and answers when it completes."""
    import asyncio

    import wirecall

    class Slow:
        async def Wait(self, ms: int) -> int:
            await asyncio.sleep(ms / 1000)
            return ms

    srv = wirecall.Server()
    srv.register(Slow())
    (url,) = await srv.start("jsonrpc://127.0.0.1:0")
    try:
        host, port = url.split("//", 1)[1].rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b'{"method":"Slow.Wait","params":[20],"id":1}\n'
                     b'{"method":"Slow.Wait","params":[1],"id":2}\n')
        lines = [json.loads(await asyncio.wait_for(reader.readline(), 5)) for _ in range(2)]
        writer.close()
        assert sorted((r["id"], r["result"], r["error"]) for r in lines) == [
            (1, 20, None), (2, 1, None)]
    finally:
        await srv.close(drain_timeout=1)
