"""The events of the native protocol's sans-IO core (:mod:`wirecall.protocol.frames`, which
re-exports them): what :meth:`FrameConnection.receive_data` returns."""

from __future__ import annotations

__all__ = [
    "CancelReceived",
    "ErrorReceived",
    "Event",
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


class Event:
    __slots__: tuple[str, ...] = ()

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__
        )

    __hash__ = None  # type: ignore[assignment]


class PrefaceReceived(Event):
    __slots__ = ("codec_id", "flags", "max_frame_size", "version")

    def __init__(self, version: int, codec_id: int, flags: int, max_frame_size: int) -> None:
        self.version = version
        self.codec_id = codec_id
        self.flags = flags
        self.max_frame_size = max_frame_size


class RequestReceived(Event):
    """A call (``stream`` true: a streaming call opened; messages follow)."""

    __slots__ = ("body", "call_id", "compressed", "end_stream", "metadata", "method", "stream",
                 "timeout")

    def __init__(
        self,
        call_id: int,
        method: str,
        body: bytes | memoryview,
        timeout: float | None,
        metadata: dict[str, str] | None,
        compressed: bool,
        stream: bool,
        end_stream: bool,
    ) -> None:
        self.call_id = call_id
        self.method = method
        self.body = body
        self.timeout = timeout
        self.metadata = metadata
        self.compressed = compressed
        self.stream = stream
        self.end_stream = end_stream


class ResponseReceived(Event):
    __slots__ = ("body", "call_id", "compressed", "metadata")

    def __init__(
        self,
        call_id: int,
        body: bytes | memoryview,
        metadata: dict[str, str] | None,
        compressed: bool,
    ) -> None:
        self.call_id = call_id
        self.body = body
        self.metadata = metadata
        self.compressed = compressed


class ErrorReceived(Event):
    __slots__ = ("call_id", "details", "message", "status")

    def __init__(self, call_id: int, status: int, message: str, details: bytes) -> None:
        self.call_id = call_id
        self.status = status
        self.message = message
        self.details = details


class CancelReceived(Event):
    __slots__ = ("call_id",)

    def __init__(self, call_id: int) -> None:
        self.call_id = call_id


class PingReceived(Event):
    __slots__ = ("opaque",)

    def __init__(self, opaque: bytes) -> None:
        self.opaque = opaque


class PongReceived(Event):
    __slots__ = ("opaque",)

    def __init__(self, opaque: bytes) -> None:
        self.opaque = opaque


class GoAwayReceived(Event):
    __slots__ = ("last_call_id", "message", "status")

    def __init__(self, last_call_id: int, status: int, message: str) -> None:
        self.last_call_id = last_call_id
        self.status = status
        self.message = message


class MessageReceived(Event):
    __slots__ = ("body", "call_id", "compressed", "end_stream")

    def __init__(
        self, call_id: int, body: bytes | memoryview, compressed: bool, end_stream: bool
    ) -> None:
        self.call_id = call_id
        self.body = body
        self.compressed = compressed
        self.end_stream = end_stream


class WindowUpdated(Event):
    __slots__ = ("call_id", "increment")

    def __init__(self, call_id: int, increment: int) -> None:
        self.call_id = call_id
        self.increment = increment


class FrameRefused(Event):
    """A frame over the size limit was skipped without being buffered."""

    __slots__ = ("call_id", "frame_type", "size")

    def __init__(self, call_id: int, frame_type: int, size: int) -> None:
        self.call_id = call_id
        self.frame_type = frame_type
        self.size = size
