"""What :class:`~wirecall.protocol.grpc.GrpcConnection.receive` returns: one class per
gRPC-level event, for the client side, the server side, or both."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...status import Status

__all__ = [
    "CallStarted",
    "ConnectionClosed",
    "HalfClosed",
    "MessageReceived",
    "PingAcked",
    "ResponseStarted",
    "StreamFailed",
    "StreamReset",
    "TrailersReceived",
]


@dataclass(slots=True)
class CallStarted:
    """Server side: a request's headers arrived."""

    stream_id: int
    path: str
    metadata: dict[str, Any]
    timeout: float | None
    content_type: str
    authority: str
    ended: bool  # END_STREAM on the headers (no message will follow)


@dataclass(slots=True)
class ResponseStarted:
    """Client side: the response headers (initial metadata) arrived."""

    stream_id: int
    metadata: dict[str, Any]


@dataclass(slots=True)
class MessageReceived:
    """One complete message. Call ``consumed(stream_id, flow)`` once the app has taken it."""

    stream_id: int
    payload: bytes
    flow: int


@dataclass(slots=True)
class HalfClosed:
    """The peer finished sending on this stream (END_STREAM)."""

    stream_id: int


@dataclass(slots=True)
class TrailersReceived:
    """Client side: the call ended with this status (trailers or trailers-only response)."""

    stream_id: int
    status: Status
    message: str
    metadata: dict[str, Any]
    initial: dict[str, Any] | None = None  # set for a trailers-only response


@dataclass(slots=True)
class StreamReset:
    """The peer reset the stream (RST_STREAM)."""

    stream_id: int
    error_code: int


@dataclass(slots=True)
class StreamFailed:
    """This side refused the stream (bad message, size limit...); the call ends with status.
    The protocol already answered the peer (trailers and/or RST_STREAM)."""

    stream_id: int
    status: Status
    message: str


@dataclass(slots=True)
class ConnectionClosed:
    """GOAWAY received, or this side terminated the connection for a protocol violation."""

    error_code: int
    last_stream_id: int
    reason: str
    local: bool = False


@dataclass(slots=True)
class PingAcked:
    data: bytes
