"""The ``h2`` HTTP/2 backend (pure Python; the fallback when ``ngh2`` is not installed).
The only module of wirecall importing ``h2``."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame

from .http2 import (
    BackendError,
    ErrorCodes,
    H2Data,
    H2Ended,
    H2GoAway,
    H2PingAck,
    H2Request,
    H2Reset,
    H2Response,
    H2Settings,
    H2Trailers,
    H2Window,
    Http2Backend,
    StreamGone,
)

__all__ = ["H2Backend"]

_PREFACE = 24  # b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

#: events of frames that cost their sender nothing (counted for the flood guard)
_CONTROL = frozenset({
    h2.events.RemoteSettingsChanged, h2.events.PingReceived, h2.events.PriorityUpdated,
    h2.events.UnknownFrameReceived,
})


class H2Backend(Http2Backend):
    name = "h2"

    def __init__(self, *, client_side: bool, validate_headers: bool) -> None:
        cfg = h2.config.H2Configuration(
            client_side=client_side,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=validate_headers,
            normalize_inbound_headers=validate_headers,
        )
        self.client_side = client_side
        self.h2 = h2.connection.H2Connection(cfg)
        self._extra = b""
        self._offset = 0  # bytes received so far
        self._block_start = 0  # stream offset at which a pending header block was first seen

    def initiate(self, settings: dict[int, int], connection_window: int) -> None:
        self.h2.local_settings = h2.settings.Settings(
            client=self.client_side,
            initial_values={h2.settings.SettingCodes(k): v for k, v in settings.items()},
        )
        self.h2.initiate_connection()
        extra = connection_window - 65535
        if extra > 0:
            self.h2.increment_flow_control_window(extra)

    def receive(self, data: bytes) -> tuple[list[object], int]:
        self._offset += len(data)
        try:
            evs = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            code = int(getattr(exc, "error_code", ErrorCodes.PROTOCOL_ERROR))
            raise BackendError(code, f"HTTP/2 protocol error: {exc}") from None
        out: list[object] = []
        control = 0
        for ev in evs:
            t = type(ev)
            if t in _CONTROL:
                control += 1
            conv = _CONVERT.get(t)
            if conv is not None:
                r = conv(self, ev)
                if r is not None:
                    out.append(r)
        if self.count_control:
            buf = self.h2.incoming_buffer
            block = bool(getattr(buf, "_headers_buffer", None))
            if block and not self.unfinished_block:
                self._block_start = self._offset
            self.unfinished_block = block
            self.unfinished = (block or bool(getattr(buf, "_data", None))
                               or 0 < getattr(buf, "_preamble_len", 0) < _PREFACE)
        return out, control

    #: a header block awaits CONTINUATION (h2's frame buffer holds it)
    unfinished_block = False

    def unfinished_marks(self) -> list[tuple[str, int]]:
        # (h2 keeps the frame being received in its frame buffer: the private attributes
        # read here are h2 4.x's; a release without them just has no marks)
        buf = self.h2.incoming_buffer
        marks = []
        pending = len(getattr(buf, "_data", b""))
        if pending or 0 < getattr(buf, "_preamble_len", 0) < _PREFACE:
            marks.append(("frame", self._offset - pending))
        if getattr(buf, "_headers_buffer", None):
            marks.append(("header block", self._block_start))
        return marks

    def recv_window(self, stream_id: int) -> int:
        try:
            w: int = self.h2.streams[stream_id].inbound_flow_control_window
            cw: int = self.h2.inbound_flow_control_window
        except (h2.exceptions.H2Error, KeyError, AttributeError):
            return 0
        return w if w < cw else cw

    def _goaway(self, ev: Any) -> H2GoAway:
        if int(ev.error_code) == 0:
            # A graceful GOAWAY: streams up to last_stream_id still complete. h2 treats any
            # GOAWAY as the end of the connection and would reject their frames, so its state
            # machine is put back to open; no new stream is started after this.
            self.h2.state_machine.state = h2.connection.ConnectionState(
                h2.connection.ConnectionState.CLIENT_OPEN if self.client_side
                else h2.connection.ConnectionState.SERVER_OPEN
            )
        return H2GoAway(int(ev.error_code), int(ev.last_stream_id or 0),
                        bytes(ev.additional_data or b""))

    def data_to_send(self) -> bytes:
        out = self.h2.data_to_send()
        if self._extra:
            out, self._extra = out + self._extra, b""
        return out

    def send_request(self, headers: Sequence[tuple[str, str]], end_stream: bool) -> int:
        sid: int = self.h2.get_next_available_stream_id()
        self.h2.send_headers(sid, headers, end_stream=end_stream)
        return sid

    def send_headers(self, stream_id: int, headers: list[tuple[str, str]],
                     end_stream: bool = False) -> None:
        try:
            self.h2.send_headers(stream_id, headers, end_stream=end_stream)
        except h2.exceptions.StreamClosedError:
            raise StreamGone(stream_id) from None

    def send_trailers(self, stream_id: int, headers: list[tuple[str, str]]) -> None:
        self.send_headers(stream_id, headers, True)

    def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        try:
            self.h2.send_data(stream_id, data, end_stream=end_stream)
        except h2.exceptions.StreamClosedError:
            raise StreamGone(stream_id) from None

    def end_stream(self, stream_id: int) -> None:
        try:
            self.h2.end_stream(stream_id)
        except h2.exceptions.StreamClosedError:
            raise StreamGone(stream_id) from None

    def window(self, stream_id: int) -> int:
        self.max_frame = self.h2.max_outbound_frame_size
        w: int = self.h2.local_flow_control_window(stream_id)
        return w

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        with contextlib.suppress(h2.exceptions.H2Error):
            self.h2.reset_stream(stream_id, error_code)

    def acknowledge(self, stream_id: int, nbytes: int) -> None:
        try:
            self.h2.acknowledge_received_data(nbytes, stream_id)
        except (h2.exceptions.H2Error, KeyError):
            with contextlib.suppress(h2.exceptions.H2Error):
                self.h2.increment_flow_control_window(nbytes)

    def goaway(self, error_code: int, debug: bytes) -> None:
        self.h2.close_connection(error_code=error_code, additional_data=debug or None)

    def graceful_goaway(self, last: int | None) -> int:
        # h2's close_connection would stop the open streams, so the frame is built here
        if last is None:
            last = int(self.h2.highest_inbound_stream_id)
        f = hyperframe.frame.GoAwayFrame(0)
        f.last_stream_id = last
        f.error_code = 0
        self._extra += f.serialize()
        return last

    def ping(self, data: bytes) -> None:
        try:
            self.h2.ping(data)
        except h2.exceptions.H2Error as exc:
            raise BackendError(ErrorCodes.INTERNAL_ERROR, str(exc)) from None

    def peer_max_streams(self) -> int:
        n: int = self.h2.remote_settings.max_concurrent_streams
        return n

    def open_outbound(self) -> int:
        n: int = self.h2.open_outbound_streams
        return n

    def below(self, limit: int) -> bool:
        # h2.streams also holds closed streams not purged yet: when it is under the limit the
        # open ones are too, without counting them (counting is O(streams))
        return len(self.h2.streams) < limit or self.open_outbound() < limit

def _ended(ev: Any) -> bool:
    return ev.stream_ended is not None


_CONVERT: dict[type, Any] = {
    h2.events.RequestReceived: lambda b, ev: H2Request(ev.stream_id, ev.headers, _ended(ev)),
    h2.events.ResponseReceived: lambda b, ev: H2Response(ev.stream_id, ev.headers, _ended(ev)),
    h2.events.TrailersReceived: lambda b, ev: H2Trailers(ev.stream_id, ev.headers),
    h2.events.DataReceived: lambda b, ev: H2Data(ev.stream_id, ev.data,
                                                 ev.flow_controlled_length),
    h2.events.StreamEnded: lambda b, ev: H2Ended(ev.stream_id),
    h2.events.StreamReset: lambda b, ev: H2Reset(ev.stream_id, int(ev.error_code)),
    h2.events.WindowUpdated: lambda b, ev: H2Window(ev.stream_id or 0),
    h2.events.RemoteSettingsChanged: lambda b, ev: H2Settings(),
    h2.events.ConnectionTerminated: lambda b, ev: b._goaway(ev),
    h2.events.PingAckReceived: lambda b, ev: H2PingAck(bytes(ev.ping_data)),
}
