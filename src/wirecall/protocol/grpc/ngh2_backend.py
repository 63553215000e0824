"""The ``ngh2`` HTTP/2 backend: libnghttp2 (through the ``ngh2`` package, sans-IO) doing the
framing, HPACK, stream states and flow-control accounting in C. The only module of wirecall
importing ``ngh2``.

nghttp2's own defences stay on (ngh2's defaults): incoming RST_STREAM rate limit (rapid reset),
at most 8 CONTINUATION frames per header block, a queued SETTINGS/PING-ack limit, the "glitch"
rate limit, header list size and count limits. Received data is acknowledged only when
consumed (``auto_window_update=False``, :meth:`Ngh2Backend.acknowledge`).

nghttp2 drops PRIORITY and unknown frames without surfacing them, so the control frames the
flood guard counts are read from the frame headers here (a 9-byte header scan per frame).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import ngh2

from . import http2
from .http2 import BackendError, ErrorCodes, Http2Backend, StreamGone

__all__ = ["Ngh2Backend"]

_PREFACE = 24  # b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_MAX_STREAMS = 3  # SETTINGS_MAX_CONCURRENT_STREAMS
_INITIAL_WINDOW = 4  # SETTINGS_INITIAL_WINDOW_SIZE
_UNLIMITED = 2**31 - 1


class Ngh2Backend(Http2Backend):
    name = "ngh2"
    max_frame = 1 << 30  # nghttp2 splits DATA into frames itself

    def __init__(self, *, client_side: bool, max_header_list: int) -> None:
        cfg = ngh2.Configuration(
            auto_window_update=False, max_inbound_header_list_size=max_header_list
        )
        self.c = ngh2.Connection(ngh2.Role.CLIENT if client_side else ngh2.Role.SERVER, cfg)
        self.client_side = client_side
        self._skip = 0 if client_side else _PREFACE  # bytes left of the current frame
        self._head = b""  # a partial frame header
        self._offset = 0  # bytes scanned so far (the stream offset of the next read)
        self._frame_start = 0  # stream offset of the frame being received
        self._in_block = False  # a header block awaits CONTINUATION ...
        self._block_start = 0  # ... since this stream offset
        self._outbound: set[int] = set()
        self._highest_in = 0
        self._dead = False
        self._early = b""  # bytes serialized ahead of a reset (see reset_stream)

    def initiate(self, settings: dict[int, int], connection_window: int) -> None:
        self.c.initiate_connection(settings)
        if connection_window != 65535:
            self.c.set_local_window_size(connection_window, stream_id=0)

    def _scan(self, data: bytes) -> int:
        """Control frames whose header is in ``data`` (SETTINGS and PING not acks, PRIORITY,
        PRIORITY_UPDATE, unknown types). Also follows where frames and header blocks start
        and end, for :attr:`unfinished` (the unfinished-frame time limit)."""
        n = len(data)
        skip = self._skip
        base = self._offset
        self._offset = base + n
        if skip >= n:
            self._skip = skip = skip - n
            self.unfinished = skip > 0 or self._in_block
            return 0
        if self._head:
            base -= len(self._head)
            data = self._head + data
            n = len(data)
            self._head = b""
        i = start = skip
        control = 0
        in_block = self._in_block
        while i + 9 <= n:
            t = data[i + 3]
            if t >= 0xA or t == 2 or ((t == 4 or t == 6) and not data[i + 4] & 1):
                control += 1
            elif t == 1 or t == 9 or t == 5:  # HEADERS, CONTINUATION, PUSH_PROMISE
                if not in_block:
                    self._block_start = base + i
                in_block = not data[i + 4] & 4  # END_HEADERS
            start = i
            i += 9 + int.from_bytes(data[i:i + 3], "big")
        if i > n:
            self._skip = i - n
            self._frame_start = base + start
            self.unfinished = True
        else:
            self._skip = 0
            self._head = data[i:]
            self._frame_start = base + i
            self.unfinished = i < n or in_block
        self._in_block = in_block
        return control

    def unfinished_marks(self) -> list[tuple[str, int]]:
        marks = []
        if (self._skip and self._offset) or self._head:
            marks.append(("frame", self._frame_start))
        if self._in_block:
            marks.append(("header block", self._block_start))
        return marks

    def recv_window(self, stream_id: int) -> int:
        c = self.c
        try:
            w: int = c.stream_local_window_size(stream_id)
            cw: int = c.local_window_size
        except (ngh2.NGH2Error, ValueError):
            return 0
        return w if w < cw else cw

    def receive(self, data: bytes) -> tuple[list[object], int]:
        control = self._scan(data) if self.count_control else 0
        c = self.c
        try:
            c.receive_data(data)
            evs: list[Any] = c.events()
        except ngh2.ConnectionStateError:
            # the session already ended (a GOAWAY received and no stream left open): what
            # arrives now is dropped, the events already queued (a request refused before it
            # was sent, REFUSED_STREAM) are delivered
            evs = c.events()
        except ngh2.DenialOfServiceError as exc:
            self._dead = True
            self._last_goaway(ErrorCodes.ENHANCE_YOUR_CALM, b"HTTP/2 flood")
            raise BackendError(ErrorCodes.ENHANCE_YOUR_CALM, f"HTTP/2 flood: {exc}") from None
        except ngh2.NGH2Error as exc:
            self._dead = True
            self._last_goaway(ErrorCodes.PROTOCOL_ERROR, b"HTTP/2 protocol error")
            raise BackendError(ErrorCodes.PROTOCOL_ERROR, f"HTTP/2 protocol error: {exc}") from None
        out: list[object] = []
        # the frequent event classes as locals, bound once per call (the rare ones: http2.X)
        H2Data, H2Ended, H2Window = http2.H2Data, http2.H2Ended, http2.H2Window
        H2Request, H2Response, H2Trailers = http2.H2Request, http2.H2Response, http2.H2Trailers
        for ev in evs:
            t = type(ev)
            if t is ngh2.DataReceived:
                d = ev.data
                out.append(H2Data(ev.stream_id, d, len(d)))
                if ev.end_stream:
                    out.append(H2Ended(ev.stream_id))
            elif t is ngh2.RequestReceived:
                sid = ev.stream_id
                if sid > self._highest_in:
                    self._highest_in = sid
                out.append(H2Request(sid, ev.headers, ev.end_stream))
                if ev.end_stream:
                    out.append(H2Ended(sid))
            elif t is ngh2.ResponseReceived:
                out.append(H2Response(ev.stream_id, ev.headers, ev.end_stream))
                if ev.end_stream:
                    out.append(H2Ended(ev.stream_id))
            elif t is ngh2.TrailersReceived:
                out.append(H2Trailers(ev.stream_id, ev.headers))
                out.append(H2Ended(ev.stream_id))
            elif t is ngh2.StreamClosed:
                self._outbound.discard(ev.stream_id)
                if ev.error_code:
                    out.append(http2.H2Closed(ev.stream_id, ev.error_code))
            elif t is ngh2.StreamReset:
                out.append(http2.H2Reset(ev.stream_id, ev.error_code))
            elif t is ngh2.WindowUpdated:
                out.append(H2Window(ev.stream_id))
            elif t is ngh2.SettingsReceived:
                out.append(http2.H2Settings())
            elif t is ngh2.GoAwayReceived:
                out.append(http2.H2GoAway(ev.error_code, ev.last_stream_id, ev.debug_data))
            elif t is ngh2.PingAcknowledged:
                out.append(http2.H2PingAck(ev.opaque_data))
        return out, control

    def _last_goaway(self, code: int, debug: bytes) -> None:
        """The session is dead (nghttp2 will not write any more): the GOAWAY telling the peer
        why is built here, so it is not closed on without a word (issue #18)."""
        payload = (self._highest_in & 0x7FFFFFFF).to_bytes(4, "big") + int(code).to_bytes(
            4, "big") + debug
        self._early += len(payload).to_bytes(3, "big") + bytes([7, 0, 0, 0, 0, 0]) + payload

    def data_to_send(self) -> bytes:
        try:
            out = self.c.data_to_send()
        except ngh2.NGH2Error:
            out = b""
        if self._early:
            out, self._early = self._early + out, b""
        return out

    def send_request(self, headers: Sequence[tuple[str, str]], end_stream: bool) -> int:
        sid = self.c.send_request(_enc(headers), end_stream=end_stream)
        self._outbound.add(sid)
        return sid

    def send_headers(self, stream_id: int, headers: list[tuple[str, str]],
                     end_stream: bool = False) -> None:
        try:
            self.c.send_response(stream_id, _enc(headers), end_stream=end_stream)
        except ngh2.NGH2Error:
            raise StreamGone(stream_id) from None

    def send_trailers(self, stream_id: int, headers: list[tuple[str, str]]) -> None:
        try:
            self.c.send_trailers(stream_id, _enc(headers))
        except ngh2.NGH2Error:
            raise StreamGone(stream_id) from None

    def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        try:
            self.c.send_data(stream_id, data, end_stream=end_stream)
        except ngh2.NGH2Error:
            raise StreamGone(stream_id) from None

    def end_stream(self, stream_id: int) -> None:
        try:
            self.c.end_stream(stream_id)
        except ngh2.NGH2Error:
            raise StreamGone(stream_id) from None

    def window(self, stream_id: int) -> int:
        c = self.c
        try:
            w = c.stream_remote_window_size(stream_id)
        except ngh2.NGH2Error:  # HEADERS not written yet: the stream's initial window
            try:
                w = c.remote_settings.get(_INITIAL_WINDOW, 65535)
            except ngh2.NGH2Error:
                return 0
        w -= c.queued_body_size(stream_id)
        cw = c.remote_window_size - c.queued_body_size()
        return w if w < cw else cw

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        self._outbound.discard(stream_id)
        # nghttp2 drops a closed stream's frames not serialized yet: the trailers of a call
        # refused just before (then RST_STREAM NO_ERROR) are serialized first
        self._early = self.data_to_send()  # (holds what was held already)
        with contextlib.suppress(ngh2.NGH2Error):
            self.c.reset_stream(stream_id, error_code)

    def acknowledge(self, stream_id: int, nbytes: int) -> None:
        # (a closed stream's bytes credit the connection window; a connection that is
        # terminating takes no acknowledgement)
        try:  # noqa: SIM105 (try, not contextlib.suppress: the hot path)
            self.c.acknowledge_received_data(nbytes, stream_id)
        except (ngh2.NGH2Error, ValueError):
            pass

    def goaway(self, error_code: int, debug: bytes) -> None:
        if self._dead:
            return
        try:
            self.c.send_goaway(error_code, debug_data=debug)
            self.c.terminate_connection(error_code)
        except ngh2.NGH2Error:
            pass

    def graceful_goaway(self, last: int | None) -> int:
        with contextlib.suppress(ngh2.NGH2Error):
            if last is not None and not self.client_side:
                self.c.send_shutdown_notice()  # GOAWAY naming 2^31-1
                return last
            last = self._highest_in
            self.c.send_goaway(0, last_stream_id=last)
        return last if last is not None else self._highest_in

    def ping(self, data: bytes) -> None:
        try:
            self.c.ping(data)
        except ngh2.NGH2Error as exc:
            raise BackendError(ErrorCodes.INTERNAL_ERROR, str(exc)) from None

    def peer_max_streams(self) -> int:
        try:
            return self.c.remote_settings.get(_MAX_STREAMS, _UNLIMITED)
        except ngh2.NGH2Error:
            return 0

    def open_outbound(self) -> int:
        return len(self._outbound)


_ENCODED: dict[tuple[str, str], tuple[bytes, bytes]] = {}
#: whole short header lists that repeat call after call (response headers, OK trailers)
_ENCODED_LISTS: dict[tuple[tuple[str, str], ...], list[tuple[bytes, bytes]]] = {}


def _enc(headers: Sequence[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    # most header fields of a call repeat (":status 200", the content-type, the path...):
    # encoded once, kept (up to 4096 fields); short lists (":status 200" and a
    # content-type, "grpc-status 0") are kept whole (up to 256 of them; not those carrying
    # a grpc-message, whose text varies); a tuple is a list the caller keeps (request
    # headers without timeout or metadata: GrpcConnection.start_request)
    if type(headers) is tuple or (
            0 < len(headers) <= 2 and headers[-1][0] != "grpc-message"):
        key = tuple(headers)
        hit = _ENCODED_LISTS.get(key)
        if hit is not None:
            return hit
        made = _enc_fields(headers)
        if len(_ENCODED_LISTS) < 256:
            _ENCODED_LISTS[key] = made
        return made
    return _enc_fields(headers)


def _enc_fields(headers: Sequence[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    cache = _ENCODED
    out = []
    for kv in headers:
        b = cache.get(kv)
        if b is None:
            b = (kv[0].encode(), kv[1].encode())
            if len(cache) < 4096:
                cache[kv] = b
        out.append(b)
    return out
