"""The native sans-IO core's fast callbacks (``FrameConnection.set_fast_callbacks``): plain
REQUEST/RESPONSE frames delivered by the compact loop, split at any byte, mixed with events,
oversized or malformed frames, callbacks turned on and off. No sockets."""

from __future__ import annotations

from typing import Any

import pytest

from wirecall.protocol import frames as fr


def _recorder(conn: fr.FrameConnection) -> list[tuple[Any, ...]]:
    seen: list[tuple[Any, ...]] = []
    conn.set_fast_callbacks(
        on_request=lambda cid, m, b: seen.append(("req", cid, m, bytes(b))),
        on_response=lambda cid, b: seen.append(("resp", cid, bytes(b))),
    )
    return seen


def _server_after_preface(**kw: Any) -> tuple[fr.FrameConnection, fr.FrameConnection]:
    c = fr.FrameConnection(client=True, **kw)
    s = fr.FrameConnection(client=False, **kw)
    c.initiate()
    s.receive_data(c.data_to_send())
    c.receive_data(s.data_to_send())
    return c, s


@pytest.mark.parametrize("body_size", [3, fr.SMALL + 5])
def test_a_plain_request_split_at_every_byte_gives_one_callback(body_size: int) -> None:
    """The method is cached (so the compact loop would take it), then the next request is
    fed in two pieces cut at every offset: exactly one callback, same id, method and body."""
    c, s = _server_after_preface()
    seen = _recorder(s)
    c.send_request(1, "S.m", b"a")
    assert s.receive_data(c.data_to_send()) == []  # caches "S.m"
    body = bytes(range(256)) * (body_size // 256) + b"z" * (body_size % 256)
    for cut in range(1, 12 + 2 + 3 + body_size):
        seen.clear()
        c.send_request(cut + 1, "S.m", body)
        wire = c.data_to_send()
        assert s.receive_data(wire[:cut]) == []
        assert seen == []
        assert s.receive_data(wire[cut:]) == []
        assert seen == [("req", cut + 1, "S.m", body)], cut


def test_byte_by_byte_run_of_plain_frames_then_an_event_keeps_order() -> None:
    c, s = _server_after_preface()
    seen = _recorder(s)
    for i in range(1, 4):
        c.send_request(i, "S.m", b"%d" % i)
    c.send_cancel(2)
    c.send_request(4, "S.m", b"4")
    wire = c.data_to_send()
    events: list[fr.Event] = []
    for i in range(len(wire)):
        events.extend(s.receive_data(wire[i : i + 1]))
    # fed a byte at a time every frame completes alone: the cancel is an event, but the
    # request after it (completed by a later read) is a callback again
    assert seen == [("req", 1, "S.m", b"1"), ("req", 2, "S.m", b"2"),
                    ("req", 3, "S.m", b"3"), ("req", 4, "S.m", b"4")]
    assert events == [fr.CancelReceived(2)]


def test_an_oversized_frame_between_plain_ones_is_refused_and_skipped() -> None:
    c, s = _server_after_preface(max_frame_size=1024)
    seen = _recorder(s)
    c.send_request(1, "S.m", b"a")
    s.receive_data(c.data_to_send())
    seen.clear()
    c.peer_max_frame_size = 1 << 20  # let the client send what the server refuses
    c.send_request(2, "S.m", b"b")
    c.send_request(3, "S.m", b"x" * 5000)  # over the server's 1 KiB
    c.send_request(4, "S.m", b"d")
    wire = c.data_to_send()
    cut = len(wire) - 2000  # the oversized frame ends in the next read
    evs = s.receive_data(wire[:cut])
    assert seen == [("req", 2, "S.m", b"b")]
    assert [type(e) for e in evs] == [fr.FrameRefused]
    assert (evs[0].call_id, evs[0].size) == (3, 2 + 3 + 5000)  # type: ignore[attr-defined]
    assert s.receive_data(wire[cut:]) == []  # the rest skipped, then request 4 by callback
    assert seen[1:] == [("req", 4, "S.m", b"d")]
    c.send_request(5, "S.m", b"e")  # and the hot path is back
    assert s.receive_data(c.data_to_send()) == []
    assert seen[-1] == ("req", 5, "S.m", b"e")


def test_garbage_after_plain_frames_in_one_read_delivers_them_then_fails() -> None:
    c, s = _server_after_preface()
    seen = _recorder(s)
    c.send_request(1, "S.m", b"a")
    s.receive_data(c.data_to_send())
    c.send_request(2, "S.m", b"b")
    wire = c.data_to_send() + fr.HEADER.pack(0, 0x7F, 0, 0, 9)
    with pytest.raises(fr.ProtocolError, match="unknown frame type 0x7f"):
        s.receive_data(wire)
    assert seen[-1] == ("req", 2, "S.m", b"b")
    n = len(seen)
    c.send_request(3, "S.m", b"c")
    assert s.receive_data(c.data_to_send()) == []  # closed: nothing parsed, nothing called
    assert len(seen) == n and s.closed


def test_reserved_bits_and_bad_method_names_are_still_refused_on_the_hot_path() -> None:
    for frame, needle in [
        (fr.HEADER.pack(5, fr.REQUEST, 0, 1, 7) + b"\x00\x03S.m", "reserved header bits"),
        (fr.HEADER.pack(4, fr.REQUEST, 0, 0, 7) + b"\x00\x05S.", "overruns the frame"),
        (fr.HEADER.pack(2, fr.REQUEST, 0, 0, 7) + b"\x00\x00", "method name missing"),
        (fr.HEADER.pack(4, fr.REQUEST, 0, 0, 7) + b"\x00\x02\xff\xfe", "not UTF-8"),
    ]:
        c, s = _server_after_preface()
        seen = _recorder(s)
        c.send_request(1, "S.m", b"a")
        s.receive_data(c.data_to_send())  # the hot path is on (method cached)
        with pytest.raises(fr.ProtocolError, match=needle):
            s.receive_data(frame)
        assert seen == [("req", 1, "S.m", b"a")]


def test_callbacks_set_after_the_preface_and_removed_again() -> None:
    c, s = _server_after_preface()
    c.send_request(1, "S.m", b"a")
    assert [type(e) for e in s.receive_data(c.data_to_send())] == [fr.RequestReceived]
    seen = _recorder(s)  # set late: the hot path turns on at once
    c.send_request(2, "S.m", b"b")
    assert s.receive_data(c.data_to_send()) == [] and seen == [("req", 2, "S.m", b"b")]
    s.set_fast_callbacks()  # removed: events again
    c.send_request(3, "S.m", b"c")
    assert [type(e) for e in s.receive_data(c.data_to_send())] == [fr.RequestReceived]
    assert len(seen) == 1


def test_callbacks_set_on_a_failed_connection_stay_off() -> None:
    c, s = _server_after_preface()
    s.fail("bye")
    seen = _recorder(s)
    c.send_request(1, "S.m", b"a")
    assert s.receive_data(c.data_to_send()) == []
    assert seen == []


def test_a_preface_split_across_reads_then_plain_frames_in_the_same_read() -> None:
    c = fr.FrameConnection(client=True)
    s = fr.FrameConnection(client=False)
    seen = _recorder(s)
    c.initiate()
    c.send_request(1, "S.m", b"a")
    c.send_request(2, "S.m", b"b")
    wire = c.data_to_send()
    assert s.receive_data(wire[:5]) == []
    evs = s.receive_data(wire[5:])
    assert [type(e) for e in evs] == [fr.PrefaceReceived, fr.RequestReceived,
                                      fr.RequestReceived]
    assert seen == []
    c.send_request(3, "S.m", b"c")
    assert s.receive_data(c.data_to_send()) == []
    assert seen == [("req", 3, "S.m", b"c")]


def test_responses_with_flags_and_big_bodies_on_the_client() -> None:
    c, s = _server_after_preface()
    seen = _recorder(c)
    big = b"B" * (fr.SMALL * 3)
    s.send_response(1, big)
    s.send_response(2, b"zipped", compressed=True)
    s.send_response(3, b"plain-after")
    evs = c.receive_data(s.data_to_send())
    assert seen == [("resp", 1, big)]
    assert [(type(e), e.call_id) for e in evs] == [  # type: ignore[attr-defined]
        (fr.ResponseReceived, 2), (fr.ResponseReceived, 3)]
    assert evs[0].compressed and not evs[1].compressed  # type: ignore[attr-defined]
