"""Property-based fuzzing of every parser, through the public wire only (issue #18).

For each listener scheme, Hypothesis sends random bytes and garbled frames behind a valid
start (a native preface, an HTTP request line, the HTTP/2 preface, a gob type definition,
a WebSocket upgrade...). Afterwards the server must still be running and a well-behaved
client on the same listener must have been served throughout.

CI runs :data:`CI_EXAMPLES` examples per scheme. ``LONG_FUZZ=<n>`` runs ``n`` examples per
scheme instead (``LONG_FUZZ=1`` means 5,000), for a long run outside CI::

    LONG_FUZZ=20000 .venv/bin/python -m pytest tests/hostile/test_fuzz_hostile.py -o timeout=0
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostile.peers import (
    GOB_REQUEST_TYPEDEF,
    H2_PREFACE,
    Prober,
    ServerProc,
    assert_served,
    gob_call,
    gob_message,
    h2_frame,
    http_post,
    native_frame,
    native_preface,
    native_request,
    raw_connect,
    read_until_closed,
)

CI_EXAMPLES = 60
_long = os.environ.get("LONG_FUZZ", "")
EXAMPLES = (5000 if _long == "1" else int(_long)) if _long else CI_EXAMPLES

junk = st.binary(max_size=600)
u8 = st.integers(0, 255)
u32 = st.integers(0, 2**32 - 1)
small_payload = st.binary(max_size=64)

# -- native frames: a valid preface, then frames with random fields ------------------------
native_frames = st.lists(
    st.one_of(
        st.builds(native_frame, st.integers(0, 12), u8, u32, small_payload),
        st.builds(native_request, u32, st.sampled_from(["Svc.Echo", "Svc.Nope", "x", "Svc.Hold"]),
                  small_payload, u8),
        # a header whose length disagrees with what follows
        st.builds(lambda n, t, rest: struct.pack("!IBBHI", n, t, 0, 0, 1) + rest,
                  u32, st.integers(1, 9), small_payload),
        junk,
    ),
    max_size=8,
).map(b"".join)
native_input = st.one_of(
    junk,
    st.builds(lambda p, f: p + f,
              st.builds(native_preface, st.integers(0, 5), u32, st.integers(0, 3)),
              native_frames),
    st.builds(lambda f: native_preface() + f, native_frames),
)

# -- gob: the Request type, then random messages -------------------------------------------
gob_input = st.one_of(
    junk,
    st.builds(lambda b: GOB_REQUEST_TYPEDEF + b, junk),
    st.builds(lambda bodies: GOB_REQUEST_TYPEDEF + b"".join(map(gob_message, bodies)),
              st.lists(small_payload, max_size=6)),
    st.builds(lambda seq, m, a, tail: GOB_REQUEST_TYPEDEF + gob_call(seq, m, a) + tail,
              st.integers(0, 2**63), st.sampled_from(["Svc.Big", "Svc.Echo", "Nope", ""]),
              st.integers(-(2**62), 2**62), junk),
)

# -- Go JSON-RPC: JSON-ish lines ----------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                               max_size=4),
    max_leaves=12,
)
json_lines = st.builds(
    lambda method, params, ident, cut: (
        b'{"method":%s,"params":%s,"id":%s}\n' % (method, params, ident)
    )[: cut or None],
    st.sampled_from([b'"Svc.Echo"', b'"Svc.Nope"', b"1", b"null", b'"'] ),
    st.one_of(json_values.map(lambda v: __import__("json").dumps(v).encode()), junk),
    st.sampled_from([b"1", b'"a"', b"null", b"[]", b"1e999"]),
    st.integers(0, 80),
)
jsonrpc_input = st.one_of(junk, st.lists(json_lines, max_size=5).map(b"".join))

# -- HTTP/1.1 -----------------------------------------------------------------------------
http_input = st.one_of(
    junk,
    st.builds(lambda body: http_post("/jsonrpc", body), st.one_of(junk, json_lines)),
    st.builds(lambda line, rest: line + b"\r\n" + rest,
              st.sampled_from([b"POST /jsonrpc HTTP/1.1", b"GET /ws HTTP/1.1",
                               b"POST /jsonrpc HTTP/1.0", b"CONNECT /_goRPC_ HTTP/1.0",
                               b"POST / HTTP/9.9"]),
              junk),
    st.builds(lambda n, body: (b"POST /jsonrpc HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                               b"\r\n" % n) + body, st.integers(0, 2**40), junk),
)

# -- WebSocket: a valid upgrade, then random frames ---------------------------------------
WS_UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def _ws_frame(fin_op: int, masked: bool, length_code: int, payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04" if masked else b""
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if masked else payload
    return bytes([fin_op, (0x80 if masked else 0) | length_code]) + mask + body


ws_input = st.one_of(
    st.builds(lambda b: WS_UPGRADE + b, junk),
    st.builds(lambda frames: WS_UPGRADE + b"".join(frames), st.lists(
        st.builds(_ws_frame, u8, st.booleans(), st.integers(0, 127), small_payload),
        max_size=6,
    )),
    st.builds(lambda line: WS_UPGRADE + _ws_frame(0x81, True, len(line[:125]), line[:125]),
              json_lines),
)

# -- HTTP/2 -------------------------------------------------------------------------------
h2_frames = st.lists(
    st.one_of(
        st.builds(h2_frame, st.integers(0, 12), u8, st.integers(0, 2**31 - 1), small_payload),
        st.builds(lambda t, n, rest: n.to_bytes(3, "big") + bytes([t, 0, 0, 0, 0, 1]) + rest,
                  st.integers(0, 10), st.integers(0, 2**24 - 1), small_payload),
        junk,
    ),
    max_size=8,
).map(b"".join)
grpc_input = st.one_of(
    junk,
    st.builds(lambda f: H2_PREFACE + h2_frame(4, 0, 0) + f, h2_frames),
    st.builds(lambda f: H2_PREFACE + f, h2_frames),
)

INPUTS = {
    "tcp": native_input,
    "gob": gob_input,
    "jsonrpc": jsonrpc_input,
    "http": http_input,
    "ws": ws_input,
    "grpc": grpc_input,
    "any": st.one_of(native_input, gob_input, jsonrpc_input, http_input, ws_input, grpc_input),
}


def _address(srv: ServerProc, scheme: str) -> tuple[str, int]:
    try:
        return srv.address(scheme)
    except LookupError:
        if scheme != "ws":
            raise
        return srv.address("http")


def _probe_for(srv: ServerProc, scheme: str) -> Prober:
    """A well-behaved client on the fuzzed listener itself."""
    if scheme == "ws":  # a ws:// listener reports ws://host:port/ws (http:// before bf84672)
        host, port = _address(srv, "ws")
        return Prober(f"ws://{host}:{port}/ws")
    url = srv.url(scheme)
    if scheme == "gob":
        return Prober(url, "Svc.Big", (10,), str)
    if scheme == "any":  # the sniffing listener serves the native protocol too
        return Prober("tcp://" + url.split("://", 1)[1])
    if scheme == "http":
        return Prober(url.rstrip("/") + "/jsonrpc" if url.count("/") == 2 else url)
    return Prober(url)


@pytest.mark.parametrize("scheme", list(INPUTS))
def test_fuzz_listener_keeps_serving(scheme: str) -> None:
    stalls: list[tuple[float, float]] = []  # this process's own pauses (long runs)
    stop = threading.Event()

    def heartbeat() -> None:  # a thread that should wake every 10 ms: when it does not,
        while not stop.is_set():  # this process (driver and probe alike) was held up
            t0 = time.monotonic()
            time.sleep(0.01)
            if time.monotonic() - t0 > 0.3:
                stalls.append((t0, time.monotonic() - t0))

    if _long:
        threading.Thread(target=heartbeat, daemon=True).start()
    with ServerProc(f"{scheme}://127.0.0.1:0", watch_loop=bool(_long)) as srv, \
            _probe_for(srv, scheme) as probe:
        addr = _address(srv, scheme)
        seen: list[tuple[float, bytes]] = []  # (when it was sent, its first 200 bytes)

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not _long,
                  suppress_health_check=list(HealthCheck))
        @given(data=INPUTS[scheme])
        def hit(data: bytes) -> None:
            seen.append((time.monotonic(), data[:200]))
            try:
                sock = raw_connect(addr, timeout=2.0)
            except OSError as exc:
                raise AssertionError(f"the {scheme}:// listener refused a connection: {exc}\n"
                                     f"{srv.describe()}") from exc
            try:
                sock.sendall(data)
                read_until_closed(sock, 0.02)
            except OSError:
                pass  # the server closing on garbage is fine
            finally:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            assert srv.alive(), f"the server died on {data[:200]!r}\n{srv.describe()}"

        hit()
        report = probe.stop()
        stop.set()
        assert srv.alive(), srv.describe()
        if _long:  # a long run reports what was sent around each failed or slow call
            mine = [(round(a, 3), round(b, 3)) for a, b in stalls]
            print(f"{scheme}: server event-loop stalls > 0.3 s: {srv.loop_stalls()}; "
                  f"this process's stalls > 0.3 s: {mine}")
            for t0, what in [(t, "FAILED") for t in report.failed_at] + [
                    (t, f"slow {took * 1000:.0f} ms") for t, took in report.slow]:
                near = [(round(t - t0, 3), d) for t, d in seen if t0 - 1.0 <= t <= t0 + 2.5]
                print(f"{scheme}: probe call at {t0:.3f} {what}; inputs sent from 1 s before "
                      f"to 2.5 s after (s from the call's start): {near}")
            print(f"{scheme}: {len(seen)} examples; {report}")
        try:
            assert_served(report)
        except AssertionError as exc:  # what the server logged meanwhile helps find why
            raise AssertionError(f"{exc}\nlast inputs: {seen[-3:]}\n{srv.describe()}") from None
