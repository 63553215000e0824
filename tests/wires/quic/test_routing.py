"""``transport/quic/routing.py`` without a network: frames queued by the native encoder are
split back by call id exactly (Hypothesis), and the call <-> stream table binds, ends and
forgets streams as the QUIC transport relies on."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wirecall.errors import ProtocolError
from wirecall.protocol import frames as fr
from wirecall.transport.quic.routing import CallStreams, split_frames

frame_spec = st.tuples(
    st.sampled_from(["request", "response", "message", "error", "window", "ping"]),
    st.integers(min_value=1, max_value=2**32 - 1),
    st.binary(max_size=300),
)


@given(preface=st.booleans(), specs=st.lists(frame_spec, max_size=20))
def test_split_frames_gives_back_each_frame_with_its_call_id(
        preface: bool, specs: list[tuple[str, int, bytes]]) -> None:
    enc = fr.FrameConnection(client=True)
    if preface:
        enc.initiate()
    expected: list[tuple[int, int]] = [(0, 0)] if preface else []
    for kind, cid, body in specs:
        if kind == "request":
            enc.send_request(cid, "Svc.M", body, 1.5 if len(body) % 2 else None,
                             {"k": "v"} if len(body) % 3 == 0 else None)
            expected.append((cid, fr.REQUEST))
        elif kind == "response":
            enc.send_response(cid, body)
            expected.append((cid, fr.RESPONSE))
        elif kind == "message":
            enc.send_message(cid, body, end_stream=bool(len(body) % 2))
            expected.append((cid, fr.MESSAGE))
        elif kind == "error":
            enc.send_error(cid, 3, body.hex()[:50])
            expected.append((cid, fr.ERROR))
        elif kind == "window":
            enc.send_window_update(cid, 8)
            expected.append((cid, fr.WINDOW_UPDATE))
        else:
            enc.send_ping(body[:8])
            expected.append((0, fr.PING))
    data = enc.data_to_send()
    parts = split_frames(data)
    assert [(cid, ftype) for cid, ftype, _flags, _f in parts] == expected
    assert b"".join(bytes(f) for _c, _t, _fl, f in parts) == data


def test_split_frames_refuses_a_partial_frame() -> None:
    enc = fr.FrameConnection(client=True)
    enc.send_response(7, b"abcdef")
    data = enc.data_to_send()
    with pytest.raises(ProtocolError, match="partial frame"):
        split_frames(data[:-1])
    with pytest.raises(ProtocolError, match="partial frame header"):
        split_frames(data + b"\x00\x01")


def test_call_streams_bind_end_and_forget() -> None:
    r = CallStreams()
    r.bind(1, 4)
    r.bind(1, 4)  # the same pair again: fine
    with pytest.raises(ProtocolError, match="already runs on stream 4"):
        r.bind(1, 8)
    with pytest.raises(ProtocolError, match="call id 0"):
        r.bind(0, 8)
    assert not r.end(4, CallStreams.RECEIVED)  # the peer ended its side; this side has not
    assert r.by_call == {1: 4}
    assert r.end(4, CallStreams.SENT)  # both sides ended: forgotten
    assert r.by_call == {} and r.by_stream == {} and r.ended == {}
    r.bind(2, 8)
    assert r.drop_call(2) == 8 and r.drop_stream(8) is None and len(r) == 0
