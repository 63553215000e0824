"""wirecall's own framed protocol, sans-IO (no asyncio, socket or ssl here).

Bytes in (:meth:`FrameConnection.receive_data`) give events out; ``send_*`` methods only
queue bytes, which :meth:`FrameConnection.data_to_send` hands to whatever does the I/O.
The byte layout is specified in ``docs/protocol.md``; this module is its reference.

Preface (12 bytes, each side, client first)::

    "WRPC" | version u8 | codec id u8 | flags u16 | max frame size u32

Frame (12-byte header, big endian, then ``length`` payload bytes)::

    length u32 | type u8 | flags u8 | reserved u16 (= 0) | call id u32
"""

from __future__ import annotations

import contextlib
import struct
import zlib
from collections.abc import Callable, Mapping
from typing import Final

from ..errors import FrameTooLarge, ProtocolError
from ..status import Status
from .frame_events import (
    CancelReceived,
    ErrorReceived,
    Event,
    FrameRefused,
    GoAwayReceived,
    MessageReceived,
    PingReceived,
    PongReceived,
    PrefaceReceived,
    RequestReceived,
    ResponseReceived,
    WindowUpdated,
)

__all__ = [
    "DEFAULT_MAX_FRAME",
    "MAGIC",
    "PREFACE",
    "VERSION",
    "CancelReceived",
    "ErrorReceived",
    "Event",
    "FrameConnection",
    "FrameRefused",
    "GoAwayReceived",
    "MessageReceived",
    "PingReceived",
    "PongReceived",
    "PrefaceReceived",
    "RequestReceived",
    "ResponseReceived",
    "WindowUpdated",
]

MAGIC: Final = b"WRPC"
VERSION: Final = 1
PREFACE: Final = struct.Struct("!4sBBHI")  # magic, version, codec, flags, max frame
HEADER: Final = struct.Struct("!IBBHI")  # length, type, flags, reserved, call id
DEFAULT_MAX_FRAME: Final = 4 * 1024 * 1024
#: Timeouts at or above this many seconds (about 317 years) travel as "no deadline".
MAX_TIMEOUT: Final = 1e10
#: Bodies up to this size are copied out of the read buffer; larger ones are memoryviews.
SMALL: Final = 8192
#: An oversized frame up to this many times the limit is skipped (and that call refused);
#: anything larger is treated as garbage and closes the connection.
SKIP_FACTOR: Final = 64

# frame types
REQUEST: Final = 0x01
RESPONSE: Final = 0x02
ERROR: Final = 0x03
CANCEL: Final = 0x04
PING: Final = 0x05
GOAWAY: Final = 0x06
SETTINGS: Final = 0x07  # reserved (future settings exchange after the preface)
MESSAGE: Final = 0x08  # stream message (streaming calls)
WINDOW_UPDATE: Final = 0x09  # stream flow-control credit
KNOWN_TYPES: Final = frozenset(range(0x01, 0x0A))

# flags
F_ACK: Final = 0x01  # PING: this is the answer
F_END_STREAM: Final = 0x01  # MESSAGE/REQUEST(stream): the sender will send no more messages
F_COMPRESSED: Final = 0x02  # body is zlib-compressed
F_METADATA: Final = 0x04  # a metadata block precedes the body
F_TIMEOUT: Final = 0x08  # REQUEST: a u64 timeout in microseconds follows the method
F_STREAM: Final = 0x10  # REQUEST: opens a streaming call

# preface flags
P_ZLIB: Final = 0x0001  # this side accepts zlib-compressed bodies

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_ERR = struct.Struct("!HI")
_GOAWAY = struct.Struct("!IH")
_EMPTY: Final = b""


def encode_metadata(md: Mapping[str, str]) -> bytes:
    items = md.items()
    parts = [_U16.pack(len(items))]
    for k, v in items:
        kb = str(k).encode()
        vb = str(v).encode()
        if len(kb) > 0xFFFF:
            raise ValueError(f"metadata key too long: {k[:40]!r}...")
        parts.append(_U16.pack(len(kb)))
        parts.append(kb)
        parts.append(_U32.pack(len(vb)))
        parts.append(vb)
    return b"".join(parts)


def _decode_metadata(mv: memoryview, off: int, end: int) -> tuple[dict[str, str], int]:
    if off + 2 > end:
        raise ProtocolError("truncated metadata block")
    (count,) = _U16.unpack_from(mv, off)
    off += 2
    md: dict[str, str] = {}
    for _ in range(count):
        if off + 2 > end:
            raise ProtocolError("truncated metadata key length")
        (kl,) = _U16.unpack_from(mv, off)
        off += 2
        if off + kl + 4 > end:
            raise ProtocolError("truncated metadata key")
        try:
            key = str(mv[off : off + kl], "utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("metadata key is not UTF-8") from None
        off += kl
        (vl,) = _U32.unpack_from(mv, off)
        off += 4
        if off + vl > end:
            raise ProtocolError("truncated metadata value")
        try:
            md[key] = str(mv[off : off + vl], "utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(f"metadata value of {key!r} is not UTF-8") from None
        off += vl
    return md, off


def decompress(body: bytes | memoryview, limit: int) -> bytes:
    """Inflate a zlib body, refusing (before allocating it) anything over ``limit`` bytes."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ProtocolError(f"corrupt compressed body: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise FrameTooLarge(f"decompressed body exceeds the limit of {limit} bytes")
    return out


class FrameConnection:
    """One end of a wirecall connection: the state machine and its buffers.

    ``client=True`` sends the preface first (:meth:`initiate`); the server answers the
    client's preface with its own (:meth:`accept`). Errors that break framing raise
    :class:`ProtocolError` from :meth:`receive_data`; the caller closes the connection.
    """

    def __init__(
        self,
        *,
        client: bool,
        codec_id: int = 1,
        max_frame_size: int = DEFAULT_MAX_FRAME,
        accept_compression: bool = True,
        codecs: frozenset[int] | None = None,
        max_method_names: int = 1024,
        max_method_name_bytes: int = 64 * 1024,
    ) -> None:
        self.client = client
        #: server: codec ids it accepts (None: any); the preface is answered on receipt
        self.codecs = codecs
        self.codec_id = codec_id
        self.max_frame_size = max_frame_size
        self.accept_compression = accept_compression
        self.peer_max_frame_size = DEFAULT_MAX_FRAME
        self.peer_accepts_compression = False
        self.preface_received = False
        self.closed = False
        self._buf = bytearray()
        self._skip = 0  # bytes of an oversized frame still to discard
        #: the frame parts queued for the next write (read-only outside this class: a
        #: transport counts them with ``len()`` to decide when to write a batch)
        self.queued_parts: list[bytes | memoryview] = []
        self._method_prefix: dict[str, bytes] = {}
        self._need = 0
        #: payload bytes queued since the last :meth:`data_to_send` (headers not counted)
        self.queued_bytes = 0
        self._methods: dict[bytes, str] = {}
        #: remembered method names: at most this many, of at most this many bytes in all
        self.max_method_names = max_method_names
        self.max_method_name_bytes = max_method_name_bytes
        self._method_bytes = 0
        #: PING (not ACK) and SETTINGS frames received: the transport meters them per second
        self.control_frames = 0
        #: times a read ended inside a frame: an unfinished frame that outlives a timer set
        #: when this was ``n`` (and is still unfinished) is the same frame
        self.partials = 0
        #: optional hot-path callbacks (see :meth:`set_fast_callbacks`)
        self._on_request: Callable[[int, str, bytes | memoryview], None] | None = None
        self._on_response: Callable[[int, bytes | memoryview], None] | None = None
        self._plain = False  # callbacks set, preface received, not closed: the hot path

    def set_fast_callbacks(
        self,
        on_request: Callable[[int, str, bytes | memoryview], None] | None = None,
        on_response: Callable[[int, bytes | memoryview], None] | None = None,
    ) -> None:
        """Deliver the two hot frame kinds by callback instead of as event objects.

        With ``on_request`` set, a REQUEST frame with no flags (no deadline, metadata,
        compression or stream) is passed as ``on_request(call_id, method, body)`` while
        :meth:`receive_data` parses; with ``on_response``, a RESPONSE frame with no flags as
        ``on_response(call_id, body)``. Wire order is kept: callbacks are used only until the
        first frame of a read that becomes an event; that frame and every later one of the
        same read come back as events (so a stream's final RESPONSE is never seen before its
        MESSAGE frames). Not used in the read that carries the peer's preface. Callbacks must
        not raise.
        This is the hot path of the native transport: no event object, no dispatch on type.
        """
        self._on_request = on_request
        self._on_response = on_response
        self._plain = self.preface_received and not self.closed and (
            on_request is not None or on_response is not None
        )

    # -- outgoing ---------------------------------------------------------------------

    def _preface(self) -> None:
        flags = P_ZLIB if self.accept_compression else 0
        self.queued_parts.append(
            PREFACE.pack(MAGIC, VERSION, self.codec_id, flags, self.max_frame_size)
        )

    def initiate(self) -> None:
        """Client: queue the preface."""
        self._preface()


    def _frame(self, ftype: int, flags: int, call_id: int, payload: bytes | memoryview) -> None:
        n = len(payload)
        if n > self.peer_max_frame_size:
            raise FrameTooLarge(
                f"frame of {n} bytes exceeds the peer's limit of {self.peer_max_frame_size}"
            )
        self.queued_parts.append(HEADER.pack(n, ftype, flags, 0, call_id))
        self.queued_bytes += n
        if n:
            self.queued_parts.append(payload)

    def send_request(
        self,
        call_id: int,
        method: str,
        body: bytes,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        *,
        compressed: bool = False,
        stream: bool = False,
        end_stream: bool = False,
    ) -> None:
        prefix = self._method_prefix.get(method)
        if prefix is None:
            mb = method.encode()
            if not mb or len(mb) > 0xFFFF:
                raise ValueError(f"method name must be 1 to 65535 bytes: {method[:40]!r}")
            prefix = _U16.pack(len(mb)) + mb
            if len(self._method_prefix) < 4096:
                self._method_prefix[method] = prefix
        flags = 0
        if timeout is None and not metadata and not (compressed or stream or end_stream):
            # the hot path: header, method, body appended as they are (joined at flush)
            n = len(prefix) + len(body)
            if n > self.peer_max_frame_size:
                raise FrameTooLarge(
                    f"frame of {n} bytes exceeds the peer's limit of {self.peer_max_frame_size}"
                )
            out = self.queued_parts
            out.append(HEADER.pack(n, REQUEST, 0, 0, call_id))
            self.queued_bytes += n
            out.append(prefix)
            if body:
                out.append(body)
            return
        parts = [prefix]
        if timeout is not None and timeout < MAX_TIMEOUT:
            flags |= F_TIMEOUT
            parts.append(_U64.pack(max(0, int(timeout * 1_000_000))))
        if metadata:
            flags |= F_METADATA
            parts.append(encode_metadata(metadata))
        if compressed:
            flags |= F_COMPRESSED
        if stream:
            flags |= F_STREAM
        if end_stream:
            flags |= F_END_STREAM
        parts.append(body)
        self._frame(REQUEST, flags, call_id, b"".join(parts))

    def send_response(
        self,
        call_id: int,
        body: bytes,
        metadata: Mapping[str, str] | None = None,
        *,
        compressed: bool = False,
    ) -> None:
        if not metadata and len(body) <= self.peer_max_frame_size:
            out = self.queued_parts
            out.append(HEADER.pack(len(body), RESPONSE, F_COMPRESSED if compressed else 0, 0,
                                   call_id))
            self.queued_bytes += len(body)
            out.append(body)
            return
        flags = F_COMPRESSED if compressed else 0
        if metadata:
            flags |= F_METADATA
            body = encode_metadata(metadata) + body
        self._frame(RESPONSE, flags, call_id, body)

    def send_error(self, call_id: int, status: int, message: str, details: bytes = b"") -> None:
        mb = message.encode()
        # An error must always fit: cut the message rather than fail to report the failure.
        room = self.peer_max_frame_size - _ERR.size - len(details)
        if room < 0:
            details = b""
            room = self.peer_max_frame_size - _ERR.size
        mb = mb[:room]
        self._frame(ERROR, 0, call_id, _ERR.pack(status, len(mb)) + mb + details)

    def send_cancel(self, call_id: int) -> None:
        self._frame(CANCEL, 0, call_id, _EMPTY)

    def send_ping(self, opaque: bytes = b"\0" * 8) -> None:
        self._frame(PING, 0, 0, opaque[:8].ljust(8, b"\0"))

    def send_goaway(self, last_call_id: int, status: int = 0, message: str = "") -> None:
        self._frame(GOAWAY, 0, 0, _GOAWAY.pack(last_call_id, status) + message.encode()[:1024])

    def send_message(
        self, call_id: int, body: bytes, *, end_stream: bool = False, compressed: bool = False
    ) -> None:
        flags = (F_END_STREAM if end_stream else 0) | (F_COMPRESSED if compressed else 0)
        self._frame(MESSAGE, flags, call_id, body)

    def send_window_update(self, call_id: int, increment: int) -> None:
        self._frame(WINDOW_UPDATE, 0, call_id, _U32.pack(increment))

    def data_to_send(self) -> bytes:
        """Everything queued since the last call, as one bytes object (one write)."""
        out = self.queued_parts
        if not out:
            return _EMPTY
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self.queued_bytes = 0
        return bytes(data) if isinstance(data, memoryview) else data

    def has_data_to_send(self) -> bool:
        return bool(self.queued_parts)

    @property
    def unfinished(self) -> bool:
        """A frame (or the preface) has started arriving and is not complete yet."""
        return bool(self._buf) or self._skip > 0

    def release(self) -> None:
        """The connection is gone: drop the buffers and the callbacks (which refer to the
        transport's protocol object: no reference cycle outlives the connection)."""
        self.closed = True
        self._plain = False
        self._on_request = self._on_response = None
        self._buf = bytearray()
        self._skip = 0
        self.queued_parts.clear()
        self.queued_bytes = 0
        self._methods = {}
        self._method_bytes = 0

    # -- incoming ---------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes read from the peer; return the events they complete."""
        if not self._plain or self._buf or self._skip:
            return self._receive(data, 0)
        # The hot path (callbacks set): deliver the leading run of complete, plain REQUEST /
        # RESPONSE frames here; the full parser takes over at the first frame that is anything
        # else, incomplete or invalid (it validates and reports it). One function, no event
        # objects: each Python call boundary costs about a microsecond on a cold CPU.
        n = len(data)
        off = 0
        unpack = HEADER.unpack_from
        on_request = self._on_request
        on_response = self._on_response
        methods = self._methods
        maxf = self.max_frame_size
        while n - off >= 12:
            length, ftype, flags, reserved, cid = unpack(data, off)
            end = off + 12 + length
            if flags or reserved or end > n or length > maxf or not cid:
                break
            if ftype == REQUEST and on_request is not None and length >= 2:
                start = off + 12
                p = start + 2 + ((data[start] << 8) | data[start + 1])
                if p > end or p == start + 2:
                    break
                method = methods.get(data[start + 2 : p])
                if method is None:  # not seen on this connection yet: the full parser names it
                    break
                on_request(
                    cid, method, data[p:end] if end - p <= SMALL else memoryview(data)[p:end]
                )
            elif ftype == RESPONSE and on_response is not None:
                start = off + 12
                on_response(
                    cid, data[start:end] if length <= SMALL else memoryview(data)[start:end]
                )
            else:
                break
            off = end
        if off == n:
            return []
        return self._receive(data, off)

    def _receive(self, data: bytes, off: int) -> list[Event]:
        """The full parser, from ``off`` (non-zero only after the hot path's frames)."""
        events: list[Event] = []
        n = len(data)
        use_callbacks = True
        if off:
            return self._frames(data, off, n, events, use_callbacks)
        if self.closed:
            return []
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return []
            data = data[self._skip :]
            self._skip = 0
        if self._buf:
            self._buf += data
            if len(self._buf) < self._need:
                return []  # the frame in progress is still incomplete: no copy, no parse
            data = bytes(self._buf)
            self._buf.clear()
        self._need = 0
        n = len(data)
        if not self.preface_received:
            if n < PREFACE.size:
                if data[: min(n, 4)] != MAGIC[: min(n, 4)]:
                    self._fail(f"bad preface: expected {MAGIC!r}, got {bytes(data[:4])!r}")
                self._buf += data
                self.partials += 1
                return events
            magic, version, codec_id, flags, maxf = PREFACE.unpack_from(data, 0)
            if magic != MAGIC:
                self._fail(f"bad preface: expected {MAGIC!r}, got {magic!r}")
            if version != VERSION:
                if not self.client:  # tell the peer which version this side speaks
                    self._preface()
                    self.send_goaway(
                        0, Status.UNIMPLEMENTED, f"unsupported protocol version {version}"
                    )
                self._fail(f"unsupported protocol version {version} (this side speaks {VERSION})")
            self.preface_received = True
            self.peer_max_frame_size = maxf or DEFAULT_MAX_FRAME
            self.peer_accepts_compression = bool(flags & P_ZLIB)
            if not self.client:
                # The server answers at once, so nothing it queues can precede its preface.
                self.codec_id = codec_id
                self._preface()
                if self.codecs is not None and codec_id not in self.codecs:
                    self.send_goaway(0, Status.INVALID_ARGUMENT, f"unsupported codec id {codec_id}")
                    self._fail(f"client asked for unsupported codec id {codec_id}")
            events.append(PrefaceReceived(version, codec_id, flags, maxf))
            off = PREFACE.size
            use_callbacks = False  # this read carried the preface: its event comes first
            self._plain = self._on_request is not None or self._on_response is not None
        return self._frames(data, off, n, events, use_callbacks)

    def _frames(
        self, data: bytes, off: int, n: int, events: list[Event], use_callbacks: bool
    ) -> list[Event]:
        self._need = 0
        mv = memoryview(data)
        hsize = 12
        maxf = self.max_frame_size
        unpack = HEADER.unpack_from
        if use_callbacks:
            on_request = self._on_request
            on_response = self._on_response
        else:
            on_request = on_response = None
        while n - off >= hsize:
            length, ftype, flags, reserved, cid = unpack(data, off)
            if not 0 < ftype < 0x0A:
                self._fail(f"unknown frame type 0x{ftype:02x}")
            if reserved:
                self._fail(f"reserved header bits set (0x{reserved:04x})")
            if length > maxf:
                if length > maxf * SKIP_FACTOR:
                    self._fail(f"frame length {length} is far beyond the limit of {maxf}")
                events.append(FrameRefused(cid, ftype, length))
                avail = n - off - hsize
                if avail >= length:
                    off += hsize + length
                    continue
                self._skip = length - avail
                self.partials += 1
                return events
            end = off + hsize + length
            if end > n:
                self._need = end - off  # bytes the partial frame needs before parsing again
                break
            start = off + hsize
            off = end
            if ftype == REQUEST:
                if not cid:
                    self._fail("REQUEST with call id 0 (call ids are non-zero)")
                if flags & (F_TIMEOUT | F_METADATA) or length < 2:
                    events.append(self._request(mv, start, end, flags, cid))
                    continue
                # the hot path: method and body only
                p = start + 2 + ((data[start] << 8) | data[start + 1])
                if p > end or p == start + 2:
                    self._fail("REQUEST method name missing or overruns the frame")
                mb = data[start + 2 : p]
                method = self._methods.get(mb)
                if method is None:
                    method = self._method_name(mb)
                if not flags and on_request is not None and not events:
                    on_request(cid, method, data[p:end] if end - p <= SMALL else mv[p:end])
                    continue
                events.append(
                    RequestReceived(
                        cid,
                        method,
                        data[p:end] if end - p <= SMALL else mv[p:end],
                        None,
                        None,
                        flags & F_COMPRESSED != 0,
                        flags & F_STREAM != 0,
                        flags & F_END_STREAM != 0,
                    )
                )
            elif ftype == RESPONSE and not flags & F_METADATA:
                if not flags and on_response is not None and not events:
                    on_response(cid, data[start:end] if length <= SMALL else mv[start:end])
                    continue
                events.append(
                    ResponseReceived(
                        cid, data[start:end] if length <= SMALL else mv[start:end], None,
                        flags & F_COMPRESSED != 0,
                    )
                )
            elif ftype == RESPONSE:
                md = None
                if flags & F_METADATA:
                    md, start = self._metadata(mv, start, end)
                events.append(
                    ResponseReceived(cid, mv[start:end], md, bool(flags & F_COMPRESSED))
                )
            elif ftype == ERROR:
                if length < _ERR.size:
                    self._fail("truncated ERROR frame")
                status, ml = _ERR.unpack_from(mv, start)
                p = start + _ERR.size
                if p + ml > end:
                    self._fail("ERROR frame message overruns the frame")
                try:
                    msg = str(mv[p : p + ml], "utf-8")
                except UnicodeDecodeError:
                    self._fail("ERROR frame message is not UTF-8")
                events.append(ErrorReceived(cid, status, msg, bytes(mv[p + ml : end])))
            elif ftype == MESSAGE:
                events.append(
                    MessageReceived(
                        cid, mv[start:end], bool(flags & F_COMPRESSED), bool(flags & F_END_STREAM)
                    )
                )
            elif ftype == CANCEL:
                events.append(CancelReceived(cid))
            elif ftype == PING:
                if length != 8:
                    self._fail("PING payload must be 8 bytes")
                opaque = bytes(mv[start:end])
                if flags & F_ACK:
                    events.append(PongReceived(opaque))
                else:
                    self.control_frames += 1
                    self._frame(PING, F_ACK, 0, opaque)
                    events.append(PingReceived(opaque))
            elif ftype == GOAWAY:
                if length < _GOAWAY.size:
                    self._fail("truncated GOAWAY frame")
                last, status = _GOAWAY.unpack_from(mv, start)
                text = str(mv[start + _GOAWAY.size : end], "utf-8", "replace")
                events.append(GoAwayReceived(last, status, text))
            elif ftype == WINDOW_UPDATE:
                if length != 4:
                    self._fail("WINDOW_UPDATE payload must be 4 bytes")
                (inc,) = _U32.unpack_from(mv, start)
                events.append(WindowUpdated(cid, inc))
            else:  # SETTINGS (reserved): ignored, so a later version may send it to this one
                self.control_frames += 1
        if off < n:
            self._buf += mv[off:]
            self.partials += 1
        return events

    def _metadata(self, mv: memoryview, off: int, end: int) -> tuple[dict[str, str], int]:
        try:
            return _decode_metadata(mv, off, end)
        except ProtocolError as exc:
            self._fail(exc.message)
            raise  # unreachable: _fail raises

    def _method_name(self, mb: bytes) -> str:
        try:
            name = mb.decode()
        except UnicodeDecodeError:
            self._fail("REQUEST method name is not UTF-8")
        size = len(mb)
        if (len(self._methods) < self.max_method_names
                and self._method_bytes + size <= self.max_method_name_bytes):
            self._methods[mb] = name
            self._method_bytes += size
        return name

    def _request(self, mv: memoryview, start: int, end: int, flags: int, cid: int) -> Event:
        if end - start < 2:
            self._fail("truncated REQUEST frame")
        (ml,) = _U16.unpack_from(mv, start)
        p = start + 2 + ml
        if p > end or ml == 0:
            self._fail("REQUEST method name missing or overruns the frame")
        try:
            method = str(mv[start + 2 : p], "utf-8")
        except UnicodeDecodeError:
            self._fail("REQUEST method name is not UTF-8")
        timeout = None
        if flags & F_TIMEOUT:
            if p + 8 > end:
                self._fail("truncated REQUEST timeout")
            (us,) = _U64.unpack_from(mv, p)
            timeout = us / 1_000_000
            p += 8
        md = None
        if flags & F_METADATA:
            md, p = self._metadata(mv, p, end)
        return RequestReceived(
            cid,
            method,
            mv[p:end],
            timeout,
            md,
            bool(flags & F_COMPRESSED),
            bool(flags & F_STREAM),
            bool(flags & F_END_STREAM),
        )

    def fail(self, message: str, status: int = Status.INTERNAL) -> None:
        """Queue a GOAWAY telling the peer why the connection is being closed."""
        if self.preface_received or self.client:
            with contextlib.suppress(FrameTooLarge):
                self.send_goaway(0, status, message)
        self.closed = True
        self._plain = False

    def _fail(self, message: str) -> None:
        self.closed = True
        self._plain = False
        self._buf.clear()
        raise ProtocolError(message, Status.INTERNAL)
