"""The gRPC connection core, sans-IO: :class:`GrpcConnection`, one HTTP/2 connection (client
or server side) turning bytes into gRPC events and calls into bytes to send.

HTTP/2 itself (framing, HPACK, flow-control accounting, stream states) is an
:class:`~.http2.Http2Backend`: libnghttp2 through ``ngh2`` (the default when installed) or the
pure-Python ``h2`` (the fallback); ``backend=`` or ``$WIRECALL_GRPC_HTTP2`` chooses. On top
of it:

* request/response headers and trailers (``headers``), trailers-only responses, messages split
  and framed per stream (``messages``), ``grpc-encoding: gzip`` both ways (outbound messages
  are compressed per message, see :meth:`GrpcConnection.send_message`);
* outbound data waits for the peer's flow-control window (nothing is dropped, nothing is sent
  early); inbound data is acknowledged (WINDOW_UPDATE) when the application consumed it;
* RST_STREAM cancellation, GOAWAY, PING acks (h2 answers pings itself), a rapid-reset guard.

No asyncio, socket or ssl here: :class:`GrpcConnection` is driven by ``wirecall.transport.grpc``
and by tests that play a raw HTTP/2 peer.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Mapping
from typing import Any, ClassVar

from ...status import Status
from ..flood import FloodGuard
from . import http2
from .events import (
    CallStarted,
    ConnectionClosed,
    HalfClosed,
    MessageReceived,
    PingAcked,
    ResponseStarted,
    StreamFailed,
    StreamReset,
    TrailersReceived,
)
from .headers import (
    ACCEPT_ENCODING,
    CALL_STREAM_HEADER,
    CALL_UNARY_HEADER,
    COMPRESSIONS,
    CONTENT_TYPE,
    RESERVED_HEADERS,
    USER_AGENT,
    decode_metadata,
    encode_metadata,
    format_timeout,
    parse_request,
    parse_status,
    percent_decode,
    percent_encode,
)
from .http2 import BackendError, ErrorCodes, Http2Backend, StreamGone, resolve_backend
from .messages import (
    PREFIX,
    MessageError,
    MessageReader,
    frame_message,
    gzip_compress,
    gzip_decompress,
)
from .streams import (
    H2_STATUS_TO_GRPC,
    OK_TRAILERS,
    REFUSED_STREAM,
    RESET_STATUS,
    RESPONSE_HEADERS,
    StreamState,
    unfinished_marks,
)

__all__ = ["REFUSED_STREAM", "RESET_STATUS", "GrpcConnection", "make_backend"]



def make_backend(name: str | None, *, client_side: bool, validate_headers: bool,
                 max_header_list: int) -> Http2Backend:
    """A fresh backend (see :func:`resolve_backend` for the choice)."""
    chosen = resolve_backend(name)
    if chosen == "ngh2":
        from .ngh2_backend import Ngh2Backend
        return Ngh2Backend(client_side=client_side, max_header_list=max_header_list)
    from .h2_backend import H2Backend
    return H2Backend(client_side=client_side, validate_headers=validate_headers)


_MAX_STREAM_ID = 2**31 - 1
_DRAIN_PING = b"wcdrain\x00"  # the PING between the two GOAWAYs of a graceful shutdown


class GrpcConnection:
    """One HTTP/2 connection speaking gRPC, client or server side.

    Feed bytes with :meth:`receive` (returns events), take bytes to write with
    :meth:`data_to_send`. ``max_message_size`` bounds inbound messages (after decompression);
    ``max_concurrent_streams`` is advertised and enforced; more than ``reset_limit`` streams
    reset by the peer within ``reset_window`` seconds (the rapid-reset attack) ends the
    connection with GOAWAY ENHANCE_YOUR_CALM, and so do more than ``control_limit``
    SETTINGS, PING, PRIORITY or unknown frames in a second (:class:`~..flood.FloodGuard`).
    ``validate_headers``: run h2's inbound header validation (default: server side only;
    nghttp2 always validates). ``backend``: ``"ngh2"`` or ``"h2"`` (see
    :func:`~.http2.resolve_backend`; None: ``$WIRECALL_GRPC_HTTP2``, else ngh2 if installed).

    ``compression`` (server side): ``"gzip"`` compresses response messages for clients whose
    ``grpc-accept-encoding`` lists gzip; None/``"identity"`` (the default, as gRPC's
    compression spec asks) never does. A client asks per call (``start_request(encoding=)``).
    Either way a message shorter than ``compress_threshold`` bytes, or one gzip does not make
    smaller, goes uncompressed (the per-message flag says which).
    """

    def __init__(
        self,
        *,
        client_side: bool,
        max_message_size: int = 4 * 1024 * 1024,
        max_concurrent_streams: int = 1000,
        stream_window: int = 1 << 20,
        connection_window: int = 16 << 20,
        reset_limit: int = 200,
        reset_window: float = 1.0,
        control_limit: int = 1000,
        validate_headers: bool | None = None,
        compression: str | None = None,
        compress_threshold: int = 1024,
        backend: str | None = None,
    ) -> None:
        if compression not in (None, *COMPRESSIONS):
            raise ValueError(
                f"unsupported compression {compression!r}: use one of {', '.join(COMPRESSIONS)}"
            )
        self.compression = compression or "identity"
        self.compress_threshold = compress_threshold
        # h2's inbound header validation costs ~15% of a unary call; it guards the server
        # (on by default there) and is off on the client unless asked for.
        validate = (not client_side) if validate_headers is None else validate_headers
        self.client_side = client_side
        self.backend = make_backend(backend, client_side=client_side,
                                    validate_headers=validate, max_header_list=16 * 1024)
        self.max_message_size = max_message_size
        self.streams: dict[int, StreamState] = {}
        self.reset_limit = reset_limit
        self.reset_window = reset_window
        self._resets: deque[float] = deque()
        #: server side: SETTINGS, PING, PRIORITY and unknown frames per second (a client
        #: reads its server's frames, however many, and stops reading when it cannot write)
        self.control_guard = None if client_side else FloodGuard(control_limit)
        self.backend.count_control = self.control_guard is not None
        self._conn_window = connection_window
        self._partial_ack = stream_window // 4
        # INITIAL_WINDOW_SIZE, MAX_CONCURRENT_STREAMS, MAX_HEADER_LIST_SIZE (, ENABLE_PUSH)
        self._settings = {4: stream_window, 3: max_concurrent_streams, 6: 16 * 1024}
        if client_side:
            self._settings[2] = 0
        self.closed = False
        self.goaway_received = False
        #: the peer's first SETTINGS frame (its stream limit) has arrived
        self.peer_settings_received = False
        # client: a stream limit lower than the peer's, learnt from REFUSED_STREAM (see
        # can_open_stream); None: the peer's SETTINGS_MAX_CONCURRENT_STREAMS
        self._stream_cap: int | None = None
        self.draining = False
        self.drain_pending = False
        self.goaway_last = 0
        #: DATA bytes handed to h2 since the last :meth:`data_to_send` (a cue to write early)
        self.unsent = 0
        #: client: request headers without timeout or metadata, per path and options
        self._request_headers: dict[tuple[Any, ...], tuple[tuple[str, str], ...]] = {}
        #: bytes of messages queued on streams, waiting for the peer's flow-control window
        #: (the server's ``limits.max_unsent_bytes`` counts them)
        self.queued = 0
        #: a message has been left unfinished by a read (cleared by :meth:`unfinished_marks`
        #: once none is): the transport then arms the unfinished-frame timer
        self.partial = False

    # -- lifecycle -------------------------------------------------------------------

    def initiate(self) -> None:
        """Queue the connection preface and our SETTINGS (call once, before anything else)."""
        self.backend.initiate(self._settings, self._conn_window)

    def data_to_send(self) -> bytes:
        self.unsent = 0
        return self.backend.data_to_send()

    def goaway(self, error_code: int = 0, reason: str = "") -> None:
        """Tell the peer no new streams will be accepted (graceful shutdown)."""
        if self.closed:
            return
        self.backend.goaway(error_code, reason.encode())
        self.closed = True

    def graceful_goaway(self) -> None:
        """Graceful shutdown in two steps (RFC 9113 section 6.8): GOAWAY(NO_ERROR) with the
        highest stream id, so requests the client sent before reading it are still served,
        and a PING; once the PING is acknowledged (every such request has arrived), the final
        GOAWAY naming the last stream processed. Streams already open carry on;
        ``drain_pending`` is True until the final GOAWAY."""
        if self.closed or self.draining:
            return
        self.draining = True
        self.drain_pending = True
        self.goaway_last = self.backend.graceful_goaway(_MAX_STREAM_ID)
        try:
            self.backend.ping(_DRAIN_PING)
        except BackendError:  # the connection is ending anyway: no second step
            self.drain_pending = False
            self.goaway_last = self.backend.graceful_goaway(None)

    def ping(self, data: bytes) -> None:
        self.backend.ping(data)

    # -- input -----------------------------------------------------------------------

    def receive(self, data: bytes, now: float = 0.0) -> list[Any]:
        """Process bytes from the peer; return gRPC-level events. A protocol violation
        queues GOAWAY and returns a local :class:`ConnectionClosed`."""
        if self.closed and not data:
            return []
        try:
            h2_events, control = self.backend.receive(data)
        except BackendError as exc:
            self.closed = True
            return [ConnectionClosed(exc.code, 0, str(exc), local=True)]
        out: list[Any] = []
        guard = self.control_guard
        if control and guard is not None and guard.hit(now, control) and not self.closed:
            self._calm(out)
            return out  # the flood is not acted on
        dispatch = self._dispatch
        for ev in h2_events:
            dispatch[type(ev)](self, ev, out, now)
        return out

    def _calm(self, out: list[Any]) -> None:
        """Too many control frames: GOAWAY ENHANCE_YOUR_CALM and a local close."""
        calm = ErrorCodes.ENHANCE_YOUR_CALM
        limit = self.control_guard.limit if self.control_guard is not None else 0
        reason = (f"more than {limit} control frames (SETTINGS, PING, "
                  "PRIORITY, unknown) per second")
        self.goaway(calm, reason)
        out.append(ConnectionClosed(calm, 0, reason, local=True))

    def _on_request(self, ev: Any, out: list[Any], now: float) -> None:
        sid = ev.stream_id
        if self.draining and sid > self.goaway_last:
            self.backend.reset_stream(sid, REFUSED_STREAM)
            return
        try:
            path, method, ctype, authority, timeout, encoding, accept_gzip, md = parse_request(
                ev.headers)
        except ValueError as exc:  # a bad grpc-timeout
            self._refuse(sid, Status.INTERNAL, str(exc), out)
            return
        if method != "POST":
            self._http_error(sid, 405, out)
            return
        if not ctype.startswith(CONTENT_TYPE):
            self._http_error(sid, 415, out)
            return
        if encoding not in ("identity", "gzip"):
            self.streams[sid] = StreamState(MessageReader(self.max_message_size, False))
            self.send_trailers(
                sid, Status.UNIMPLEMENTED, f"grpc-encoding {encoding!r} is not supported",
                extra=[("grpc-accept-encoding", ACCEPT_ENCODING)],
            )
            out.append(StreamFailed(sid, Status.UNIMPLEMENTED, "unsupported grpc-encoding"))
            return
        reader = MessageReader(self.max_message_size, encoding == "gzip")
        st = StreamState(reader, encoding=encoding)
        st.send_gzip = accept_gzip and self.compression == "gzip"
        self.streams[sid] = st
        ended = ev.ended
        out.append(
            CallStarted(sid, path, md, timeout, ctype, authority, ended)
        )
        if ended:
            out.append(HalfClosed(sid))

    def _http_error(self, sid: int, code: int, out: list[Any]) -> None:
        with contextlib.suppress(StreamGone):
            self.backend.send_headers(sid, [(":status", str(code))], end_stream=True)
        out.append(StreamFailed(sid, Status.INTERNAL, f"HTTP {code}"))

    def _on_response(self, ev: Any, out: list[Any], now: float) -> None:
        sid = ev.stream_id
        st = self.streams.get(sid)
        if st is None:
            return
        status = 0
        ctype = ""
        encoding = "identity"
        grpc_status: bytes | None = None
        rest: list[Any] = []  # custom metadata (decoded only when there is some)
        for kv in ev.headers:
            k, v = kv
            if k == b":status":
                status = int(v)
            elif k == b"content-type":
                ctype = v.decode("latin-1")
            elif k == b"grpc-encoding":
                encoding = v.decode("latin-1")
            elif k == b"grpc-status":
                grpc_status = v
            elif k not in RESERVED_HEADERS and k[:1] != b":":
                rest.append(kv)
        if status != 200:
            self._client_fail(
                sid, H2_STATUS_TO_GRPC.get(status, Status.UNKNOWN), f"HTTP status {status}", out
            )
            return
        if grpc_status is not None and ev.ended:  # trailers-only
            tr = self._trailers(sid, ev.headers)
            tr.initial = decode_metadata(rest) if rest else {}
            out.append(tr)
            return
        if not ctype.startswith(CONTENT_TYPE):
            self._client_fail(sid, Status.UNKNOWN, f"bad response content-type {ctype!r}", out)
            return
        st.reader.compressed_ok = encoding == "gzip"
        st.reader.encoding = encoding
        st.encoding = encoding
        st.initial = decode_metadata(rest) if rest else {}
        out.append(ResponseStarted(sid, st.initial))

    def _trailers(self, sid: int, headers: Any) -> TrailersReceived:
        code: Status | None = None
        message = ""
        rest: list[Any] = []  # custom metadata (decoded only when there is some)
        for k, v in headers:
            if k == b"grpc-status":
                code = parse_status(v)
            elif k == b"grpc-message":
                message = percent_decode(v.decode("latin-1"))
            elif k not in RESERVED_HEADERS and k[:1] != b":":
                rest.append((k, v))
        self._drop(sid)
        cap = self._stream_cap
        if cap is not None:  # a call completed: the peer retired one more stream
            self._stream_cap = None if cap + 1 >= self.backend.peer_max_streams() else cap + 1
        if code is None:
            return TrailersReceived(sid, Status.UNKNOWN, "trailers without grpc-status", {})
        return TrailersReceived(sid, code, message, decode_metadata(rest) if rest else {})

    def _on_trailers(self, ev: Any, out: list[Any], now: float) -> None:
        if self.client_side and ev.stream_id in self.streams:
            out.append(self._trailers(ev.stream_id, ev.headers))
        # A client sending trailers is unusual but legal; END_STREAM follows as StreamEnded.

    def _on_data(self, ev: Any, out: list[Any], now: float) -> None:
        sid = ev.stream_id
        data = ev.data
        st = self.streams.get(sid)
        if st is None:
            self.backend.acknowledge(sid, ev.flow)
            return
        n = len(data)
        r = st.reader
        if (n == ev.flow and n >= PREFIX and not r._buf and not st.unacked
                and not st.preacked and data[0] == 0
                and int.from_bytes(data[1:5], "big") == n - PREFIX
                and n - PREFIX <= self.max_message_size):
            # the common case: one whole uncompressed message in one DATA frame, nothing
            # partial before it (what the reader would do, without its buffer)
            r.count += 1
            out.append(MessageReceived(sid, data[PREFIX:], n))
            return
        pad = ev.flow - n
        try:
            msgs = r.feed(data)
            credits = []
            st.unacked += len(data)
            for _, payload in msgs:  # each message owes the bytes not acknowledged yet
                c = min(PREFIX + len(payload) - st.preacked, st.unacked)
                st.unacked -= c
                st.preacked = 0
                credits.append(c)
            if st.reader.buffered:
                self.partial = True
            if st.encoding == "gzip":
                msgs = [
                    (False, gzip_decompress(p, self.max_message_size) if c else p)
                    for c, p in msgs
                ]
        except MessageError as exc:
            self._safe_ack(ev.flow, sid)
            if self.client_side:
                self._client_fail(sid, exc.status, exc.message, out)
            else:
                self._refuse(sid, exc.status, exc.message, out)
            return
        now_ack = pad
        if st.unacked > self._partial_ack:
            # a message bigger than a fraction of the window: acknowledge as it arrives, or
            # the peer could never finish sending it
            now_ack += st.unacked
            st.preacked += st.unacked
            st.unacked = 0
        if now_ack:
            self._safe_ack(now_ack, sid)
        for (_, payload), c in zip(msgs, credits, strict=True):
            out.append(MessageReceived(sid, payload, c))

    def _safe_ack(self, n: int, sid: int) -> None:
        self.backend.acknowledge(sid, n)  # (stream gone: the connection window only)

    def _on_ended(self, ev: Any, out: list[Any], now: float) -> None:
        sid = ev.stream_id
        st = self.streams.get(sid)
        if st is None:
            return
        if self.client_side:
            # END_STREAM without trailers (they come as TrailersReceived before this).
            self._drop(sid)
            out.append(TrailersReceived(sid, Status.INTERNAL, "stream ended without trailers", {}))
            return
        if not st.reader.at_boundary():
            self._refuse(sid, Status.INTERNAL, "stream ended inside a message", out)
            return
        out.append(HalfClosed(sid))

    def _on_reset(self, ev: Any, out: list[Any], now: float) -> None:
        sid = ev.stream_id
        self._drop(sid)  # (may be gone already: a send raced with the reset)
        if self.client_side and ev.error_code == REFUSED_STREAM:
            self._stream_cap = max(1, self.backend.open_outbound())
        out.append(StreamReset(sid, int(ev.error_code)))
        if not self.client_side and self.reset_limit:
            rs = self._resets
            rs.append(now)
            while rs and rs[0] < now - self.reset_window:
                rs.popleft()
            if len(rs) > self.reset_limit:
                self.goaway(ErrorCodes.ENHANCE_YOUR_CALM, "too many stream resets")
                out.append(
                    ConnectionClosed(
                        ErrorCodes.ENHANCE_YOUR_CALM, 0,
                        "too many stream resets (rapid reset)", local=True,
                    )
                )

    def _on_window(self, ev: Any, out: list[Any], now: float) -> None:
        if ev.stream_id:
            if ev.stream_id in self.streams:
                self._flush(ev.stream_id)
        else:
            for sid in list(self.streams):
                self._flush(sid)

    def _on_settings(self, ev: Any, out: list[Any], now: float) -> None:
        self.peer_settings_received = True
        for sid in list(self.streams):
            self._flush(sid)

    def _on_goaway(self, ev: Any, out: list[Any], now: float) -> None:
        # (a graceful GOAWAY: streams up to last_stream_id still complete; the transport
        # starts no new stream on this connection)
        self.goaway_received = True
        reason = ev.debug.decode("utf-8", "replace")
        out.append(ConnectionClosed(ev.error_code, ev.last_stream_id, reason))

    def _on_ping_ack(self, ev: Any, out: list[Any], now: float) -> None:
        if ev.data == _DRAIN_PING and self.drain_pending:
            self.drain_pending = False
            if not self.closed:
                self.goaway_last = self.backend.graceful_goaway(None)
            return
        out.append(PingAcked(ev.data))

    def _on_closed(self, ev: Any, out: list[Any], now: float) -> None:
        """The backend reset a stream itself (a stream-level protocol error)."""
        if self._drop(ev.stream_id) is not None:
            out.append(StreamReset(ev.stream_id, ev.error_code))

    _dispatch: ClassVar[dict[type, Any]] = {
        http2.H2Request: _on_request,
        http2.H2Response: _on_response,
        http2.H2Trailers: _on_trailers,
        http2.H2Data: _on_data,
        http2.H2Ended: _on_ended,
        http2.H2Reset: _on_reset,
        http2.H2Closed: _on_closed,
        http2.H2Window: _on_window,
        http2.H2Settings: _on_settings,
        http2.H2GoAway: _on_goaway,
        http2.H2PingAck: _on_ping_ack,
    }

    # -- app input -------------------------------------------------------------------

    def consumed(self, stream_id: int, nbytes: int) -> None:
        """The app took ``nbytes`` of flow-controlled data: reopen the windows."""
        if nbytes <= 0 or self.closed:
            return
        self.backend.acknowledge(stream_id, nbytes)

    # -- output: server side ---------------------------------------------------------

    def send_response_headers(
        self, stream_id: int, metadata: Mapping[str, Any] | None = None,
        content_type: str = CONTENT_TYPE,
    ) -> None:
        """Response headers (initial metadata); ``grpc-encoding: gzip`` when this call's
        replies may be compressed (see ``compression``)."""
        st = self.streams.get(stream_id)
        if st is None or st.headers_sent:
            return
        hdrs = [(":status", "200"), ("content-type", content_type)]
        if st.send_gzip:
            hdrs.append(("grpc-encoding", "gzip"))
        hdrs.extend(encode_metadata(metadata))
        st.headers_sent = True
        self.backend.send_headers(stream_id, hdrs)

    def send_message(self, stream_id: int, payload: bytes, compress: bool | None = None,
                     end: bool = False) -> None:
        """Queue one message; it goes out as the peer's window allows. ``end`` (client side):
        the last message, END_STREAM with it (as :meth:`end_request` after it).

        On a stream whose messages may be compressed (``grpc-encoding: gzip`` sent), the
        message is gzip-compressed when it is at least ``compress_threshold`` bytes and gzip
        makes it smaller; ``compress=False`` sends this one plain (gRPC's per-message
        disabling), ``compress=True`` compresses it whatever its size. On other streams
        messages are always plain."""
        st = self.streams.get(stream_id)
        if st is None:
            return
        if not self.client_side and not st.headers_sent:
            self.send_response_headers(stream_id)
        framed = None
        if st.send_gzip and compress is not False and (
            compress or len(payload) >= self.compress_threshold
        ):
            z = gzip_compress(payload)
            if compress or len(z) < len(payload):
                framed = frame_message(z, True)
        if framed is None:
            framed = frame_message(payload)
        n = len(framed)
        if not st.out:  # nothing waiting: straight to the backend if the window allows
            h = self.backend
            try:
                if n <= h.max_frame and n <= h.window(stream_id):
                    h.send_data(stream_id, framed, end_stream=end)
                    self.unsent += n
                    return
            except StreamGone:
                self._drop(stream_id)
                return
        st.out.append(framed)
        st.out_bytes += n
        self.queued += n
        if end:
            st.end_stream_after = True
        self._flush(stream_id)

    def send_reply(self, stream_id: int, payload: bytes,
                   content_type: str = CONTENT_TYPE) -> None:
        """A unary call's whole answer without metadata: what :meth:`send_response_headers`,
        :meth:`send_message`, :meth:`send_trailers` (OK) send, in one step if it fits."""
        st = self.streams.get(stream_id)
        if st is None:
            return
        if not (st.headers_sent or st.send_gzip or st.out):
            framed = frame_message(payload)
            n = len(framed)
            h = self.backend
            try:
                if n <= h.max_frame and n <= h.window(stream_id):
                    st.headers_sent = True
                    hdrs = RESPONSE_HEADERS.get(content_type)
                    if hdrs is None:
                        hdrs = [(":status", "200"), ("content-type", content_type)]
                        if len(RESPONSE_HEADERS) < 64:
                            RESPONSE_HEADERS[content_type] = hdrs
                    h.send_headers(stream_id, hdrs)
                    h.send_data(stream_id, framed, end_stream=False)
                    h.send_trailers(stream_id, OK_TRAILERS)
                    self.unsent += n
                    self._drop(stream_id)
                    return
            except StreamGone:
                self._drop(stream_id)
                return
        self.send_response_headers(stream_id, None, content_type)
        self.send_message(stream_id, payload)
        self.send_trailers(stream_id, Status.OK)

    def pending(self, stream_id: int) -> int:
        """Bytes queued on this stream waiting for flow-control window."""
        st = self.streams.get(stream_id)
        return st.out_bytes if st is not None else 0

    def send_trailers(
        self, stream_id: int, status: Status, message: str = "",
        metadata: Mapping[str, Any] | None = None, extra: list[tuple[str, str]] | None = None,
        content_type: str = CONTENT_TYPE,
    ) -> None:
        """End the call with a status: trailers after the queued data, or a trailers-only
        response if no headers were sent yet."""
        st = self.streams.get(stream_id)
        if st is None:
            return
        hdrs: list[tuple[str, str]] = []
        if not st.headers_sent:
            hdrs = [(":status", "200"), ("content-type", content_type)]
            st.headers_sent = True
        hdrs.append(("grpc-status", str(int(status))))
        if message and status != Status.OK:
            hdrs.append(("grpc-message", percent_encode(message)))
        if extra:
            hdrs.extend(extra)
        hdrs.extend(encode_metadata(metadata))
        st.end_after = hdrs
        self._flush(stream_id)

    def _refuse(self, sid: int, status: Status, message: str, out: list[Any]) -> None:
        st = self.streams.get(sid)
        if st is None:
            st = self.streams[sid] = StreamState(MessageReader(self.max_message_size, False))
        st.out.clear()
        self.queued -= st.out_bytes
        st.out_bytes = 0
        self.send_trailers(sid, status, message)
        out.append(StreamFailed(sid, status, message))

    # -- output: client side ---------------------------------------------------------

    def start_request(
        self, path: str, *, authority: str, scheme: str = "http",
        metadata: Mapping[str, Any] | None = None, timeout: float | None = None,
        content_type: str = CONTENT_TYPE, encoding: str = "identity",
        user_agent: str = USER_AGENT, end_stream: bool = False, unary: bool | None = None,
    ) -> int:
        """Open a call's stream (client side). ``unary`` says how the caller made the call
        (``wirecall-call: unary`` or ``stream``; None: say nothing), so that a wirecall
        server can answer a method called in a mode it does not have with the error naming
        the method's mode; gRPC itself carries no call mode, and other peers ignore it."""
        if encoding not in COMPRESSIONS:
            raise ValueError(f"unsupported grpc-encoding {encoding!r}")
        key = None
        if timeout is None and not metadata:  # the same headers call after call: kept
            key = (path, authority, scheme, content_type, encoding, user_agent, unary)
            cached = self._request_headers.get(key)
            if cached is not None:
                return self._opened(self.backend.send_request(cached, end_stream), encoding)
        hdrs = [
            (":method", "POST"), (":scheme", scheme), (":path", path),
            (":authority", authority), ("te", "trailers"), ("content-type", content_type),
            ("user-agent", user_agent), ("grpc-accept-encoding", ACCEPT_ENCODING),
        ]
        if timeout is not None:
            hdrs.append(("grpc-timeout", format_timeout(timeout)))
        if encoding != "identity":
            hdrs.append(("grpc-encoding", encoding))
        if unary is not None:
            hdrs.append(CALL_UNARY_HEADER if unary else CALL_STREAM_HEADER)
        hdrs.extend(encode_metadata(metadata))
        if key is not None and len(self._request_headers) < 64:
            self._request_headers[key] = tuple(hdrs)
        return self._opened(self.backend.send_request(hdrs, end_stream), encoding)

    def _opened(self, sid: int, encoding: str) -> int:
        self.streams[sid] = StreamState(
            MessageReader(self.max_message_size, False), send_gzip=encoding == "gzip"
        )
        return sid

    def can_open_stream(self) -> bool:
        """Client side: may :meth:`start_request` open a stream now? Not before the peer's
        first SETTINGS frame (its limit is unknown until then), and only while fewer streams
        are open than its SETTINGS_MAX_CONCURRENT_STREAMS, as the backend counts them (a
        stream stays open until both sides ended it or it was reset). The transport keeps a
        call that may not waiting until a stream closes or new SETTINGS raise the limit, as
        grpc-go and grpcio do, instead of going over it (the backend would refuse the stream,
        a peer that got it would reset it or end the connection).

        A peer may lag in retiring streams that ended (grpcio's does): it then refuses new
        ones with REFUSED_STREAM though we are under its limit. Each refusal lowers the limit
        used here to the streams it had accepted (at least 1); each call that completes
        raises it by one, back to the peer's."""
        if not self.peer_settings_received:
            return False
        b = self.backend
        limit = b.peer_max_streams()
        cap = self._stream_cap
        if cap is not None and cap < limit:
            limit = cap
        return b.below(limit)

    def end_request(self, stream_id: int) -> None:
        """Half-close: no more messages from the client (END_STREAM after queued data)."""
        st = self.streams.get(stream_id)
        if st is None:
            return
        st.end_stream_after = True
        self._flush(stream_id)

    def reset(self, stream_id: int, error_code: int = ErrorCodes.CANCEL) -> None:
        """Cancel a stream (RST_STREAM)."""
        self._drop(stream_id)
        self.backend.reset_stream(stream_id, error_code)

    def _client_fail(self, sid: int, status: Status, message: str, out: list[Any]) -> None:
        self.reset(sid)
        out.append(TrailersReceived(sid, status, message, {}))

    # -- flushing --------------------------------------------------------------------

    def _flush(self, sid: int) -> None:
        st = self.streams.get(sid)
        if st is None:
            return
        h = self.backend
        try:
            if st.out:
                window = h.window(sid)
                maxf = h.max_frame
                out = st.out
                while out and window > 0:
                    chunk = out[0]
                    n = len(chunk)
                    if n <= window and n <= maxf:
                        out.popleft()
                    else:
                        n = min(window, maxf)
                        out[0] = chunk[n:]
                        chunk = chunk[:n]
                    end = not out and st.end_stream_after and st.end_after is None
                    h.send_data(sid, chunk, end_stream=end)
                    st.out_bytes -= n
                    self.queued -= n
                    self.unsent += n
                    window -= n
                    if end:
                        st.end_stream_after = False
                if out:
                    return
            end_after = st.end_after
            if end_after is not None:
                if end_after[0][0] == ":status":  # trailers-only
                    h.send_headers(sid, end_after, end_stream=True)
                else:
                    h.send_trailers(sid, end_after)
                self.streams.pop(sid, None)
            elif st.end_stream_after:
                st.end_stream_after = False
                h.end_stream(sid)
        except StreamGone:
            self._drop(sid)

    def _drop(self, sid: int) -> StreamState | None:
        """Forget a stream (and what it still had queued)."""
        st = self.streams.pop(sid, None)
        if st is not None and st.out_bytes:
            self.queued -= st.out_bytes
        return st

    def drop_queued(self) -> None:  # (the connection is being closed)
        for st in self.streams.values():
            st.out.clear()
            st.out_bytes = 0
        self.queued = 0

    # -- the unfinished-frame time limit ---------------------------------------------

    def unfinished_marks(self) -> tuple[set[tuple[Any, ...]], bool]:
        """What the peer started sending and has not finished (see
        :func:`~.streams.unfinished_marks`); also whether anything at all is unfinished."""
        marks, self.partial = unfinished_marks(self.backend, self.streams)
        return marks, self.partial or bool(marks)
