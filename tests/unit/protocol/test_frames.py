"""The native protocol's sans-IO core: bytes in, events out."""

from __future__ import annotations

import zlib

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wirecall.errors import FrameTooLarge, ProtocolError
from wirecall.protocol import frames as fr


def pair(**kw: object) -> tuple[fr.FrameConnection, fr.FrameConnection]:
    c = fr.FrameConnection(client=True, **kw)  # type: ignore[arg-type]
    s = fr.FrameConnection(client=False, **kw)  # type: ignore[arg-type]
    c.initiate()
    return c, s


def test_documented_example_bytes() -> None:
    c, _s = pair()
    c.send_request(1, "Calculator.Add", msgspec.msgpack.encode([{"A": 10, "B": 5}]))
    assert c.data_to_send().hex(" ") == (
        "57 52 50 43 01 01 00 01 00 40 00 00 "
        "00 00 00 18 01 00 00 00 00 00 00 01 "
        "00 0e 43 61 6c 63 75 6c 61 74 6f 72 2e 41 64 64 "
        "91 82 a1 41 0a a1 42 05"
    )


def test_request_response_roundtrip_with_every_field() -> None:
    c, s = pair()
    c.send_request(7, "Svc.M", b"body", timeout=2.5, metadata={"k": "v", "ü": "ß"})
    events = s.receive_data(c.data_to_send())
    assert isinstance(events[0], fr.PrefaceReceived)
    req = events[1]
    assert isinstance(req, fr.RequestReceived)
    assert (req.call_id, req.method, bytes(req.body), req.timeout, req.metadata) == (
        7, "Svc.M", b"body", 2.5, {"k": "v", "ü": "ß"})
    s.send_response(7, b"result", metadata={"trailer": "1"})
    s.send_error(8, 5, "not found", b"\x01")
    s.send_goaway(8, 14, "bye")
    evs = c.receive_data(s.data_to_send())
    assert [type(e) for e in evs] == [fr.PrefaceReceived, fr.ResponseReceived, fr.ErrorReceived,
                                      fr.GoAwayReceived]
    assert bytes(evs[1].body) == b"result" and evs[1].metadata == {"trailer": "1"}
    assert (evs[2].status, evs[2].message, evs[2].details) == (5, "not found", b"\x01")
    assert (evs[3].last_call_id, evs[3].status, evs[3].message) == (8, 14, "bye")


def test_byte_by_byte_feeding_gives_the_same_events() -> None:
    c, s = pair()
    for i in range(1, 20):
        c.send_request(i, f"S.m{i}", msgspec.msgpack.encode([i] * i))
    data = c.data_to_send()
    events = []
    for i in range(len(data)):
        events += s.receive_data(data[i : i + 1])
    reqs = [e for e in events if isinstance(e, fr.RequestReceived)]
    assert [r.call_id for r in reqs] == list(range(1, 20))
    assert [msgspec.msgpack.decode(r.body) for r in reqs] == [[i] * i for i in range(1, 20)]


def test_ping_is_answered_automatically() -> None:
    c, s = pair()
    c.send_ping(b"12345678")
    evs = s.receive_data(c.data_to_send())
    assert isinstance(evs[-1], fr.PingReceived)
    back = c.receive_data(s.data_to_send())
    assert isinstance(back[-1], fr.PongReceived) and back[-1].opaque == b"12345678"


def test_cancel_message_and_window_frames() -> None:
    c, s = pair()
    c.send_cancel(3)
    c.send_message(4, b"m", end_stream=True)
    c.send_window_update(4, 16)
    evs = s.receive_data(c.data_to_send())[1:]
    assert evs == [fr.CancelReceived(3), fr.MessageReceived(4, b"m", False, True),
                   fr.WindowUpdated(4, 16)]


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "bad preface"),
        (fr.PREFACE.pack(b"WRPC", 9, 1, 0, 1024), "unsupported protocol version 9"),
        (fr.PREFACE.pack(b"WRPC", 1, 1, 0, 1024) + fr.HEADER.pack(0, 0x7F, 0, 0, 1),
         "unknown frame type 0x7f"),
        (fr.PREFACE.pack(b"WRPC", 1, 1, 0, 1024) + fr.HEADER.pack(0, 1, 0, 5, 1),
         "reserved header bits"),
        (fr.PREFACE.pack(b"WRPC", 1, 1, 0, 1024) + fr.HEADER.pack(3, 1, 0, 0, 1) + b"\x00\x09x",
         "method name missing or overruns"),
        (fr.PREFACE.pack(b"WRPC", 1, 1, 0, 1024) + fr.HEADER.pack(3, fr.PING, 0, 0, 0) + b"abc",
         "PING payload must be 8 bytes"),
        (fr.PREFACE.pack(b"WRPC", 1, 1, 0, 1024) + fr.HEADER.pack(4, 1, 0, 0, 1)
         + b"\x00\x02\xff\xfe", "not UTF-8"),
    ],
)
def test_garbage_is_a_protocol_error_naming_the_problem(data: bytes, needle: str) -> None:
    s = fr.FrameConnection(client=False)
    with pytest.raises(ProtocolError, match=needle):
        s.receive_data(data)
    assert s.closed
    assert s.receive_data(b"more") == []


def test_unsupported_codec_is_refused_with_goaway() -> None:
    c = fr.FrameConnection(client=True, codec_id=77)
    c.initiate()
    s = fr.FrameConnection(client=False, codecs=frozenset({1, 2}))
    with pytest.raises(ProtocolError, match="unsupported codec id 77"):
        s.receive_data(c.data_to_send())
    evs = c.receive_data(s.data_to_send())
    assert isinstance(evs[-1], fr.GoAwayReceived) and "unsupported codec" in evs[-1].message


def test_oversized_frame_is_refused_without_buffering() -> None:
    c, s = pair(max_frame_size=1024)
    s.receive_data(c.data_to_send())
    header = fr.HEADER.pack(10_000, fr.REQUEST, 0, 0, 5)
    evs = s.receive_data(header)
    assert evs == [fr.FrameRefused(5, fr.REQUEST, 10_000)]
    for _ in range(10):  # stream the 10 000 payload bytes in: none are kept
        assert s.receive_data(b"z" * 1000) == []
        assert len(s._buf) == 0
    c.send_request(6, "S.m", b"ok")
    evs = s.receive_data(c.data_to_send())
    assert isinstance(evs[0], fr.RequestReceived) and evs[0].call_id == 6


def test_absurd_length_closes_the_connection() -> None:
    s = fr.FrameConnection(client=False, max_frame_size=1024)
    data = fr.PREFACE.pack(b"WRPC", 1, 1, 0, 1024) + fr.HEADER.pack(2**31, fr.REQUEST, 0, 0, 1)
    with pytest.raises(ProtocolError, match="far beyond the limit"):
        s.receive_data(data)


def test_sender_refuses_frames_over_the_peer_limit() -> None:
    c = fr.FrameConnection(client=True)
    c.initiate()
    c.receive_data(fr.PREFACE.pack(b"WRPC", 1, 1, 0, 100))
    with pytest.raises(FrameTooLarge, match="exceeds the peer's limit of 100"):
        c.send_request(1, "S.m", b"x" * 200)


def test_decompress_refuses_bombs() -> None:
    bomb = zlib.compress(b"\0" * 10_000_000)
    with pytest.raises(FrameTooLarge):
        fr.decompress(bomb, 1_000_000)
    assert fr.decompress(zlib.compress(b"abc"), 10) == b"abc"
    with pytest.raises(ProtocolError, match="corrupt compressed body"):
        fr.decompress(b"not zlib", 10)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.integers(min_value=1, max_value=64))
def test_any_bytes_give_events_or_a_clean_error_and_bounded_buffers(
    data: bytes, chunk: int
) -> None:
    s = fr.FrameConnection(client=False, max_frame_size=512)
    s.receive_data(fr.PREFACE.pack(b"WRPC", 1, 1, 0, 512))
    try:
        for i in range(0, len(data), chunk):
            evs = s.receive_data(data[i : i + chunk])
            assert all(isinstance(e, fr.Event) for e in evs)
            assert len(s._buf) <= 512 + fr.HEADER.size
    except ProtocolError as exc:
        assert exc.message and s.closed


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=2**32 - 1),
            st.text(min_size=1, max_size=40),
            st.binary(max_size=300),
            st.one_of(st.none(), st.floats(min_value=0, max_value=1e6)),
            st.dictionaries(st.text(max_size=10), st.text(max_size=30), max_size=4),
        ),
        max_size=8,
    ),
    st.integers(min_value=1, max_value=50),
)
def test_requests_roundtrip_through_any_chunking(reqs: list, chunk: int) -> None:  # type: ignore[type-arg]
    c, s = pair()
    for cid, meth, body, timeout, md in reqs:
        c.send_request(cid, meth, body, timeout, md)
    data = c.data_to_send()
    events = []
    for i in range(0, len(data), chunk):
        events += s.receive_data(data[i : i + chunk])
    got = [e for e in events if isinstance(e, fr.RequestReceived)]
    assert len(got) == len(reqs)
    for ev, (cid, meth, body, timeout, md) in zip(got, reqs, strict=True):
        assert (ev.call_id, ev.method, bytes(ev.body), ev.metadata or {}) == (cid, meth, body, md)
        if timeout is None:
            assert ev.timeout is None
        else:
            assert abs(ev.timeout - timeout) < 1e-5


def _request_with_metadata(raw_md: bytes) -> bytes:
    payload = b"\x00\x03S.m" + raw_md
    return (fr.PREFACE.pack(b"WRPC", 1, 1, 0, 1024)
            + fr.HEADER.pack(len(payload), fr.REQUEST, fr.F_METADATA, 0, 1) + payload)


@pytest.mark.parametrize(
    ("raw_md", "needle"),
    [
        (b"\x00\x01\x00\x02\xff\xfe\x00\x00\x00\x00", "metadata key is not UTF-8"),
        (b"\x00\x01\x00\x01k\x00\x00\x00\x02\xff\xfe", "metadata value of 'k' is not UTF-8"),
        (b"\x00\x05\x00\x01k", "truncated metadata"),
    ],
)
def test_bad_metadata_is_a_clean_protocol_error(raw_md: bytes, needle: str) -> None:
    s = fr.FrameConnection(client=False)
    with pytest.raises(ProtocolError, match=needle):
        s.receive_data(_request_with_metadata(raw_md))
    assert s.closed  # and nothing more is parsed on this connection


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=255), st.binary(max_size=200),
       st.sampled_from(list(range(1, 10))))
def test_valid_headers_with_any_flags_and_payload_never_escape_as_other_errors(
    flags: int, payload: bytes, ftype: int
) -> None:
    s = fr.FrameConnection(client=False)
    data = (fr.PREFACE.pack(b"WRPC", 1, 1, 0, 1024)
            + fr.HEADER.pack(len(payload), ftype, flags, 0, 1) + payload)
    try:
        evs = s.receive_data(data)
        assert all(isinstance(e, fr.Event) for e in evs)
    except ProtocolError as exc:
        assert exc.message and s.closed


# -- the hot-path callbacks (set_fast_callbacks) -----------------------------------------------


def _recorder(conn: fr.FrameConnection) -> list[tuple[object, ...]]:
    """Everything the connection delivers, callbacks and events, in delivery order."""
    seen: list[tuple[object, ...]] = []
    conn.set_fast_callbacks(
        on_request=lambda cid, m, b: seen.append(("req", cid, m, bytes(b))),
        on_response=lambda cid, b: seen.append(("resp", cid, bytes(b))),
    )
    return seen


def test_plain_requests_and_responses_come_by_callback_not_as_events() -> None:
    c, s = pair()
    s.receive_data(c.data_to_send())  # the preface read: no callbacks there
    seen_s = _recorder(s)
    c.send_request(1, "S.a", b"x")
    c.send_request(2, "S.b", b"yy")
    assert s.receive_data(c.data_to_send()) == []
    assert seen_s == [("req", 1, "S.a", b"x"), ("req", 2, "S.b", b"yy")]
    seen_c = _recorder(c)
    c.receive_data(s.data_to_send())  # the server's preface
    s.send_response(2, b"r2")
    s.send_response(1, b"r1")
    assert c.receive_data(s.data_to_send()) == []
    assert seen_c == [("resp", 2, b"r2"), ("resp", 1, b"r1")]


def test_callbacks_stop_at_the_first_event_of_a_read_so_wire_order_is_kept() -> None:
    c, s = pair()
    s.receive_data(c.data_to_send())
    c.receive_data(s.data_to_send())  # both prefaces exchanged
    seen_c = _recorder(c)
    s.send_response(1, b"first")  # plain: by callback
    s.send_message(2, b"m1")  # an event: from here on, events only
    s.send_message(2, b"m2", end_stream=True)
    s.send_response(2, b"final")  # plain, but after an event: an event too
    evs = c.receive_data(s.data_to_send())
    assert seen_c == [("resp", 1, b"first")]
    assert [type(e) for e in evs] == [fr.MessageReceived, fr.MessageReceived,
                                      fr.ResponseReceived]
    assert bytes(evs[2].body) == b"final"


def test_the_read_carrying_the_preface_gives_events_only() -> None:
    c, s = pair()
    seen = _recorder(s)
    c.send_request(1, "S.a", b"x")
    evs = s.receive_data(c.data_to_send())
    assert seen == []
    assert [type(e) for e in evs] == [fr.PrefaceReceived, fr.RequestReceived]


def test_requests_with_flags_stay_events() -> None:
    c, s = pair()
    s.receive_data(c.data_to_send())
    seen = _recorder(s)
    c.send_request(1, "S.a", b"x", timeout=1.0)
    c.send_request(2, "S.b", b"y")
    evs = s.receive_data(c.data_to_send())
    assert seen == []  # the first frame became an event, so the second follows it
    assert [e.call_id for e in evs] == [1, 2]  # type: ignore[attr-defined]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["plain", "timeout", "cancel"]), st.binary(max_size=40)),
             min_size=1, max_size=12),
    st.integers(min_value=1, max_value=64),
)
def test_callbacks_and_events_together_keep_wire_order(
    frames: list[tuple[str, bytes]], chunk: int
) -> None:
    c, s = pair()
    s.receive_data(c.data_to_send())
    seen = _recorder(s)
    for i, (kind, body) in enumerate(frames, 1):
        if kind == "cancel":
            c.send_cancel(i)
        else:
            c.send_request(i, "S.m", body, timeout=5.0 if kind == "timeout" else None)
    data = c.data_to_send()
    for i in range(0, len(data), chunk):
        for ev in s.receive_data(data[i : i + chunk]):
            seen.append(("ev", ev.call_id))  # type: ignore[attr-defined]
    assert [x[1] for x in seen] == list(range(1, len(frames) + 1))
