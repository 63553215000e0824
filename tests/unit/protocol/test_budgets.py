"""The per-connection budgets of the sans-IO cores (docs/limits.md, issue #18), and fuzzing of
every parser: bytes in, only the parser's own errors out.

Each budget test states what a peer sends and what the core must keep (or refuse); the
Hypothesis tests feed arbitrary bytes, and valid streams cut anywhere.
"""

from __future__ import annotations

import contextlib
import json
import struct

import h2.config
import h2.connection
import h2.errors
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wirecall.codec.gob import GobError
from wirecall.codec.gob.decoder import Decoder
from wirecall.codec.gob.wire import GobTooLarge
from wirecall.errors import FrameTooLarge, ProtocolError
from wirecall.limits import DEFAULT_LIMITS, Limits
from wirecall.protocol import frames as fr
from wirecall.protocol import gojsonrpc as gj
from wirecall.protocol import jsonrpc2 as j2
from wirecall.protocol import netrpc as nr
from wirecall.protocol.flood import FloodGuard
from wirecall.protocol.grpc import connection as gc
from wirecall.protocol.grpc.events import ConnectionClosed

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


# -- native frames --------------------------------------------------------------------------

def _preface() -> bytes:
    return fr.PREFACE.pack(fr.MAGIC, fr.VERSION, 1, 0, fr.DEFAULT_MAX_FRAME)


def _request(cid: int, method: bytes, body: bytes = b"\x90", flags: int = 0) -> bytes:
    payload = struct.pack("!H", len(method)) + method + body
    return fr.HEADER.pack(len(payload), fr.REQUEST, flags, 0, cid) + payload


def _server(fast: bool = False, **kw: int) -> tuple[fr.FrameConnection, list[tuple[int, str]]]:
    conn = fr.FrameConnection(client=False, **kw)
    seen: list[tuple[int, str]] = []
    if fast:
        conn.set_fast_callbacks(on_request=lambda cid, m, _b: seen.append((cid, m)))
    return conn, seen


@pytest.mark.parametrize("fast", [False, True])
def test_request_with_call_id_zero_is_a_protocol_error(fast: bool) -> None:
    conn, seen = _server(fast)
    conn.receive_data(_preface())
    with pytest.raises(ProtocolError, match="call id 0"):
        conn.receive_data(_request(1, b"S.M") + _request(0, b"S.M"))
    assert [c for c, _ in seen] in ([], [1])  # the call before it was delivered, never id 0
    assert conn.closed


@pytest.mark.parametrize("fast", [False, True])
def test_remembered_method_names_are_bounded_in_count_and_bytes(fast: bool) -> None:
    conn, seen = _server(fast, max_method_names=8, max_method_name_bytes=1000)
    conn.receive_data(_preface())
    names = [b"Svc.M%03d" % i for i in range(50)] + [b"x" * 600, b"y" * 600]
    data = b"".join(_request(i + 1, n) for i, n in enumerate(names))
    events = conn.receive_data(data)
    got = [m for _, m in seen] + [e.method for e in events if type(e) is fr.RequestReceived]
    assert got == [n.decode() for n in names]  # every name still works ...
    kept = conn._methods  # ... but few are remembered
    assert len(kept) <= 8
    assert sum(map(len, kept)) <= 1000
    # and the remembered ones are served by the fast path again
    more = conn.receive_data(_request(99, names[0]))
    assert [m for c, m in seen if c == 99] or [e.method for e in more] == [names[0].decode()]


def test_unfinished_frame_is_visible_and_counted() -> None:
    conn, _ = _server()
    assert not conn.unfinished
    conn.receive_data(_preface()[:5])
    assert conn.unfinished and conn.partials == 1
    conn.receive_data(_preface()[5:])
    assert not conn.unfinished
    frame = _request(1, b"S.M", b"\x91\x01")
    conn.receive_data(frame[:7])
    assert conn.unfinished and conn.partials == 2
    events = conn.receive_data(frame[7:])
    assert not conn.unfinished and [type(e) for e in events] == [fr.RequestReceived]


def test_control_frames_are_counted() -> None:
    conn, _ = _server()
    conn.receive_data(_preface())
    ping = fr.HEADER.pack(8, fr.PING, 0, 0, 0) + b"12345678"
    settings_f = fr.HEADER.pack(0, fr.SETTINGS, 0, 0, 0)
    conn.receive_data(ping * 3 + settings_f * 2)
    assert conn.control_frames == 5


def test_release_drops_buffers_and_callbacks() -> None:
    conn, _ = _server(True)
    conn.receive_data(_preface() + _request(1, b"S.M", b"x" * 5000)[:3000])
    assert conn.unfinished
    conn.release()
    assert not conn.unfinished and conn.closed
    assert conn._on_request is None


native_stream = st.lists(
    st.one_of(
        st.builds(_request, st.integers(0, 2**32 - 1), st.binary(min_size=1, max_size=20),
                  st.binary(max_size=30), st.integers(0, 255)),
        st.builds(lambda t, f, c, p: fr.HEADER.pack(len(p), t, f, 0, c) + p,
                  st.integers(0, 12), st.integers(0, 255), st.integers(0, 2**32 - 1),
                  st.binary(max_size=30)),
        st.binary(max_size=40),
    ),
    max_size=8,
).map(b"".join)


@FUZZ
@given(native_stream, st.booleans(), st.integers(1, 64))
def test_fuzz_native_parser_raises_only_protocol_errors(
    data: bytes, fast: bool, chunk: int
) -> None:
    conn, _ = _server(fast)
    stream = _preface() + data
    try:
        for i in range(0, len(stream), chunk):
            conn.receive_data(stream[i : i + chunk])
    except (ProtocolError, FrameTooLarge):
        assert conn.closed


@FUZZ
@given(st.lists(st.tuples(st.integers(1, 2**32 - 1), st.sampled_from([b"A.B", b"Svc.Echo"]),
                          st.binary(max_size=40)), min_size=1, max_size=10),
       st.integers(1, 50))
def test_fuzz_native_any_cut_gives_the_same_requests(
    reqs: list[tuple[int, bytes, bytes]], chunk: int
) -> None:
    stream = _preface() + b"".join(_request(c, m, b) for c, m, b in reqs)
    whole, seen_whole = _server(True)
    ev_whole = whole.receive_data(stream)
    cut, seen_cut = _server(True)
    ev_cut = []
    for i in range(0, len(stream), chunk):
        ev_cut += cut.receive_data(stream[i : i + chunk])

    def calls(seen: list[tuple[int, str]], evs: list[fr.Event]) -> list[tuple[int, str]]:
        return sorted(seen + [(e.call_id, e.method) for e in evs
                              if type(e) is fr.RequestReceived])

    assert calls(seen_whole, ev_whole) == calls(seen_cut, ev_cut) == sorted(
        (c, m.decode()) for c, m, _ in reqs)


# -- Go JSON-RPC splitter ----------------------------------------------------------------

tricky_text = st.text(alphabet=st.sampled_from('ab"\\/{}[]\n \u00e9\u2028'), max_size=30)
json_docs = st.recursive(
    st.none() | st.booleans() | st.integers() | tricky_text,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(tricky_text, c, max_size=3),
    max_leaves=10,
)


@FUZZ
@given(st.lists(st.dictionaries(tricky_text, json_docs, max_size=4), min_size=1, max_size=4),
       st.lists(st.integers(1, 9), min_size=1, max_size=20))
def test_fuzz_json_splitter_any_cut_with_escapes(objs: list[dict], cuts: list[int]) -> None:
    """Strings full of quotes, backslashes and brackets, cut anywhere (a cut right after a
    backslash included): the same values come out (the scan state survives the cut)."""
    data = b"\n".join(json.dumps(o).encode() for o in objs)
    sp = gj.JsonValueSplitter()
    got: list[object] = []
    i = k = 0
    while i < len(data):
        n = cuts[k % len(cuts)]
        got += sp.feed(data[i : i + n])
        i += n
        k += 1
    got += sp.feed(b"\n")
    assert got == objs
    assert sp.buffered == 0


class _CountingPattern:
    """A compiled pattern that counts the bytes its ``search`` looked at."""

    def __init__(self, pattern: object) -> None:
        self.pattern = pattern
        self.scanned = 0

    def search(self, buf: bytearray, pos: int = 0) -> object:
        m = self.pattern.search(buf, pos)  # type: ignore[attr-defined]
        self.scanned += (m.end() if m is not None else len(buf)) - pos
        return m


def test_json_splitter_does_not_rescan_an_unfinished_string(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1 MiB of an unfinished string, then 1,000 one-byte packets: the bytes looked at stay
    about the bytes received (a re-scan from the value's start would be ~1 GiB)."""
    for name in ("_STRING_STOP", "_TOKEN"):
        monkeypatch.setattr(gj, name, _CountingPattern(getattr(gj, name)))
    sp = gj.JsonValueSplitter()
    head = b'{"method":"A.B","params":["' + b"a" * (1 << 20)
    assert sp.feed(head) == []
    for _ in range(1000):
        assert sp.feed(b"a") == []
    assert sp.buffered == len(head) + 1000
    assert sp.feed(b'"],"id":1}') == [{"method": "A.B", "params": ["a" * ((1 << 20) + 1000)],
                                       "id": 1}]
    scanned = gj._STRING_STOP.scanned + gj._TOKEN.scanned  # type: ignore[attr-defined]
    assert scanned <= 3 * (len(head) + 2000), f"{scanned} bytes scanned"


@FUZZ
@given(st.binary(max_size=300), st.integers(1, 40))
def test_fuzz_json_splitter_raises_only_its_errors(data: bytes, chunk: int) -> None:
    sp = gj.JsonValueSplitter(max_size=200)
    try:
        for i in range(0, len(data), chunk):
            for v in sp.feed(data[i : i + chunk]):
                assert isinstance(v, (dict, list))
    except (ProtocolError, FrameTooLarge):
        pass


@FUZZ
@given(st.one_of(st.binary(max_size=300),
                 json_docs.map(lambda d: json.dumps(d).encode()),
                 st.lists(json_docs, max_size=5).map(lambda d: json.dumps(d).encode())))
def test_fuzz_jsonrpc2_parse_never_raises(body: bytes) -> None:
    items, _batch = j2.parse(body)
    assert items


# -- gob ---------------------------------------------------------------------------------

def _gob_uint(u: int) -> bytes:
    if u < 128:
        return bytes([u])
    b = u.to_bytes((u.bit_length() + 7) // 8, "big")
    return bytes([256 - len(b)]) + b


def _gob_int(i: int) -> bytes:
    return _gob_uint((~i << 1) | 1 if i < 0 else i << 1)


def _gob_str(s: bytes) -> bytes:
    return _gob_uint(len(s)) + s


def _struct_typedef(tid: int, nfields: int) -> bytes:
    fields = b"".join(b"\x01" + _gob_str(b"F%05d" % i) + b"\x01" + _gob_int(2) + b"\x00"
                      for i in range(nfields))
    common = b"\x01" + _gob_str(b"T%d" % tid) + b"\x01" + _gob_int(tid) + b"\x00"
    body = _gob_int(-tid) + b"\x03" + b"\x01" + common + b"\x01" + _gob_uint(nfields) + fields \
        + b"\x00" + b"\x00"
    return _gob_uint(len(body)) + body


def test_gob_type_definitions_bounded_in_count() -> None:
    dec = Decoder(max_types=10, max_type_bytes=1 << 20)
    dec.feed(b"".join(_struct_typedef(65 + i, 1) for i in range(10)))
    assert dec.next_value() is None and len(dec.types) == 10
    dec.feed(_struct_typedef(75, 1))
    with pytest.raises(GobTooLarge, match="max_type_definitions"):
        dec.next_value()


def test_gob_type_definitions_bounded_in_bytes() -> None:
    dec = Decoder(max_types=1000, max_type_bytes=10_000)
    defs = [_struct_typedef(65 + i, 200) for i in range(20)]  # ~2 KB each
    dec.feed(b"".join(defs))
    with pytest.raises(GobTooLarge, match="max_type_definition_bytes"):
        dec.next_value()
    assert sum(len(d) for d in defs[: len(dec.types)]) <= 10_000


def test_gob_defaults_are_the_documented_limits() -> None:
    dec = nr.ServerConnection(4 << 20).decoder
    assert (dec.max_types, dec.max_type_bytes) == (
        DEFAULT_LIMITS.max_type_definitions, DEFAULT_LIMITS.max_type_definition_bytes)


@FUZZ
@given(st.one_of(
    st.binary(max_size=300),
    st.lists(st.binary(min_size=1, max_size=40).map(lambda b: _gob_uint(len(b)) + b),
             max_size=6).map(b"".join),
    st.builds(lambda t, n, tail: _struct_typedef(t, n) + tail,
              st.integers(-5, 200), st.integers(0, 5), st.binary(max_size=40)),
), st.integers(1, 50))
def test_fuzz_netrpc_server_raises_only_gob_errors(data: bytes, chunk: int) -> None:
    conn = nr.ServerConnection(1 << 16, max_types=16, max_type_bytes=4096)
    try:
        for i in range(0, len(data), chunk):
            for call in conn.receive(data[i : i + chunk]):
                with contextlib.suppress(GobError):
                    conn.decode_body(call.body)
    except (GobError, ProtocolError):
        pass


# -- the flood guard and HTTP/2 -------------------------------------------------------------

def test_flood_guard_counts_per_window() -> None:
    g = FloodGuard(3, window=1.0)
    assert [g.hit(0.0) for _ in range(3)] == [False] * 3
    assert g.hit(0.5)  # the 4th in the same second
    assert not g.hit(1.6)  # a new window
    assert g.hit(1.7, n=3)
    assert g.total == 8
    with pytest.raises(ValueError):
        FloodGuard(0)


def _h2_client_bytes(frames: bytes) -> bytes:
    cfg = h2.config.H2Configuration(client_side=True)
    c = h2.connection.H2Connection(cfg)
    c.initiate_connection()
    return c.data_to_send() + frames


def _h2_frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + struct.pack("!BBI", ftype, flags, sid) + payload


@pytest.mark.parametrize("frame", [
    _h2_frame(4, 0, 0, b"\x00\x04\x00\x00\xff\xff"),  # SETTINGS
    _h2_frame(6, 0, 0, b"hostile!"),  # PING
    _h2_frame(2, 0, 3, b"\x00\x00\x00\x00\x10"),  # PRIORITY
    _h2_frame(0x42, 0, 0, b"whatever"),  # unknown type
], ids=["settings", "ping", "priority", "unknown"])
def test_h2_control_flood_ends_in_enhance_your_calm(frame: bytes) -> None:
    conn = gc.GrpcConnection(client_side=False, control_limit=50)
    conn.initiate()
    conn.data_to_send()
    # 40 frames a second for three seconds: under the budget, nothing happens
    for sec in range(3):
        events = conn.receive(_h2_client_bytes(b"") if sec == 0 else b"", now=float(sec))
        events += conn.receive(frame * 40, now=sec + 0.5)
        assert not [e for e in events if type(e) is ConnectionClosed]
    # 60 in one second: GOAWAY ENHANCE_YOUR_CALM, a local close
    events = conn.receive(frame * 60, now=10.0)
    closed = [e for e in events if type(e) is ConnectionClosed]
    calm = int(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
    assert closed and closed[0].local and closed[0].error_code == calm
    out = conn.data_to_send()
    assert b"control frames" in out  # the GOAWAY's debug data says why


def test_limits_validate() -> None:
    assert Limits(frame_timeout=0.5).frame_timeout == 0.5
    with pytest.raises(ValueError, match="max_unsent_bytes"):
        Limits(max_unsent_bytes=0)
    with pytest.raises(ValueError, match="max_method_names"):
        Limits(max_method_names=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Limits(no_such_budget=1)  # type: ignore[call-arg]


h2_stream = st.lists(
    st.one_of(
        st.builds(_h2_frame, st.integers(0, 12), st.integers(0, 255), st.integers(0, 9),
                  st.binary(max_size=40)),
        st.binary(max_size=30),
    ),
    max_size=10,
).map(b"".join)


@FUZZ
@given(h2_stream, st.booleans(), st.integers(1, 60))
def test_fuzz_grpc_connection_returns_events_never_raises(
    frames: bytes, with_settings: bool, chunk: int
) -> None:
    """The HTTP/2 + gRPC core on garbage behind a valid preface: events (a local
    ConnectionClosed for violations), never an exception."""
    conn = gc.GrpcConnection(client_side=False, control_limit=5)
    conn.initiate()
    data = _h2_client_bytes(b"") if with_settings else b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    data += frames
    for i in range(0, len(data), chunk):
        for ev in conn.receive(data[i : i + chunk], now=0.0):
            assert type(ev).__module__ == "wirecall.protocol.grpc.events"
        conn.data_to_send()
