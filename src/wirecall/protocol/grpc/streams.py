"""What :class:`~.connection.GrpcConnection` keeps per stream, and the tables mapping HTTP/2
outcomes to gRPC statuses."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ...status import Status
from .http2 import ErrorCodes, Http2Backend
from .messages import MessageReader

__all__ = ["H2_STATUS_TO_GRPC", "OK_TRAILERS", "REFUSED_STREAM", "RESET_STATUS",
           "RESPONSE_HEADERS", "StreamState", "unfinished_marks"]


@dataclass(slots=True)
class StreamState:
    """One stream: its inbound message reader, outbound messages waiting for window."""

    reader: MessageReader
    out: deque[bytes] = field(default_factory=deque)
    out_bytes: int = 0
    end_after: list[tuple[str, str]] | None = None  # trailers to send once data is flushed
    end_stream_after: bool = False  # client half-close once data is flushed
    headers_sent: bool = False
    response_headers: list[tuple[str, str]] | None = None
    encoding: str = "identity"  # the peer's grpc-encoding (inbound messages)
    send_gzip: bool = False  # outbound messages may be gzip-compressed (grpc-encoding: gzip)
    initial: dict[str, Any] | None = None
    unacked: int = 0  # received bytes not acknowledged yet (partial message)
    preacked: int = 0  # bytes of the partial message acknowledged early


H2_STATUS_TO_GRPC = {
    400: Status.INTERNAL, 401: Status.UNAUTHENTICATED, 403: Status.PERMISSION_DENIED,
    404: Status.UNIMPLEMENTED, 429: Status.UNAVAILABLE, 502: Status.UNAVAILABLE,
    503: Status.UNAVAILABLE, 504: Status.UNAVAILABLE,
}


#: response headers without metadata, per content-type (send_reply), and OK trailers
RESPONSE_HEADERS: dict[str, list[tuple[str, str]]] = {}
OK_TRAILERS = [("grpc-status", "0")]

#: RST_STREAM code of a stream the peer did not process (safe to send again)
REFUSED_STREAM = ErrorCodes.REFUSED_STREAM

# RST_STREAM error code -> status of the call on the side that received it
RESET_STATUS = {
    ErrorCodes.NO_ERROR: Status.INTERNAL,
    ErrorCodes.PROTOCOL_ERROR: Status.INTERNAL,
    ErrorCodes.INTERNAL_ERROR: Status.INTERNAL,
    ErrorCodes.FLOW_CONTROL_ERROR: Status.INTERNAL,
    ErrorCodes.REFUSED_STREAM: Status.UNAVAILABLE,
    ErrorCodes.CANCEL: Status.CANCELLED,
    ErrorCodes.ENHANCE_YOUR_CALM: Status.RESOURCE_EXHAUSTED,
    ErrorCodes.INADEQUATE_SECURITY: Status.PERMISSION_DENIED,
}


def unfinished_marks(
    backend: Http2Backend, streams: dict[int, StreamState]
) -> tuple[set[tuple[Any, ...]], bool]:
    """What the peer started sending and has not finished, each as a mark that stays the
    same while the same thing stays unfinished: an HTTP/2 frame or header block (the
    backend's), and a stream's gRPC message whose rest the receive windows let the peer
    send (one held back by our own flow control, because the application has not consumed
    earlier messages, is not the peer's doing and is not marked). Also whether some stream
    holds part of a message, marked or not (the timer keeps watching)."""
    marks: set[tuple[Any, ...]] = set(backend.unfinished_marks())
    partial = False
    for sid, st in streams.items():
        r = st.reader
        left = r.remaining
        if left:
            partial = True
            if backend.recv_window(sid) >= left:
                marks.add(("message", sid, r.count))
    return marks, partial
