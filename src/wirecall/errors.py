"""The one exception tree of wirecall.

::

    RpcError (status, message, details)          every failure a call can end with
    ├── Cancelled            CANCELLED           (also asyncio.CancelledError is re-raised as-is)
    ├── Unknown              UNKNOWN
    ├── InvalidArgument      INVALID_ARGUMENT
    ├── DeadlineExceeded     DEADLINE_EXCEEDED   (also a TimeoutError)
    ├── NotFound             NOT_FOUND
    ├── AlreadyExists        ALREADY_EXISTS
    ├── PermissionDenied     PERMISSION_DENIED
    ├── ResourceExhausted    RESOURCE_EXHAUSTED
    ├── FailedPrecondition   FAILED_PRECONDITION
    ├── Aborted              ABORTED
    ├── OutOfRange           OUT_OF_RANGE
    ├── Unimplemented        UNIMPLEMENTED
    ├── Internal             INTERNAL
    ├── Unavailable          UNAVAILABLE         (also a ConnectionError)
    │   └── ConnectError     dialling failed or timed out
    ├── DataLoss             DATA_LOSS
    ├── Unauthenticated      UNAUTHENTICATED
    └── ProtocolError        the peer broke the wire protocol (INTERNAL by default)
        └── FrameTooLarge    a message over the size limit (also a ResourceExhausted)

``RpcError(Status.X, "msg")`` is the same as constructing the matching subclass:
``RpcError.from_status`` (and the constructor via ``__new__``) picks the subclass, so
``except DeadlineExceeded`` catches a deadline error however it was raised.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .status import Status

__all__ = [
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "ConnectError",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FrameTooLarge",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ProtocolError",
    "ResourceExhausted",
    "RpcError",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "wrong_mode",
]


class RpcError(Exception):
    """A call failed with ``status``; ``message`` is for humans, ``details`` for programs."""

    default_status: ClassVar[Status] = Status.UNKNOWN
    _by_status: ClassVar[dict[Status, type[RpcError]]] = {}

    status: Status
    message: str
    details: Any

    def __new__(
        cls, status: Status | int | None = None, message: str = "", details: Any = None
    ) -> RpcError:
        if cls is RpcError and status is not None:
            cls = RpcError._by_status.get(Status(status), RpcError)
        # No arguments: OSError-based subclasses would read (status, message) as errno.
        return super().__new__(cls)

    def __init__(
        self, status: Status | int | None = None, message: str = "", details: Any = None
    ) -> None:
        st = self.default_status if status is None else Status(status)
        super().__init__(message or st.name)
        self.status = st
        self.message = message or st.name
        self.details = details

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The first (most general) class registered for a status wins.
        RpcError._by_status.setdefault(cls.default_status, cls)

    @classmethod
    def from_status(cls, status: Status | int, message: str = "", details: Any = None) -> RpcError:
        """Build the most specific error class for ``status``."""
        return RpcError(status, message, details)

    def __str__(self) -> str:
        return f"{self.status.name}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status.name}, {self.message!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (RpcError.from_status, (int(self.status), self.message, self.details))


class Cancelled(RpcError):
    default_status = Status.CANCELLED


class Unknown(RpcError):
    default_status = Status.UNKNOWN


class InvalidArgument(RpcError):
    default_status = Status.INVALID_ARGUMENT


class DeadlineExceeded(RpcError, TimeoutError):
    default_status = Status.DEADLINE_EXCEEDED


class NotFound(RpcError):
    default_status = Status.NOT_FOUND


class AlreadyExists(RpcError):
    default_status = Status.ALREADY_EXISTS


class PermissionDenied(RpcError):
    default_status = Status.PERMISSION_DENIED


class ResourceExhausted(RpcError):
    default_status = Status.RESOURCE_EXHAUSTED


class FailedPrecondition(RpcError):
    default_status = Status.FAILED_PRECONDITION


class Aborted(RpcError):
    default_status = Status.ABORTED


class OutOfRange(RpcError):
    default_status = Status.OUT_OF_RANGE


class Unimplemented(RpcError):
    default_status = Status.UNIMPLEMENTED


class Internal(RpcError):
    default_status = Status.INTERNAL


class Unavailable(RpcError, ConnectionError):
    default_status = Status.UNAVAILABLE


class ConnectError(Unavailable):
    """Dialling the server failed or timed out (net.DialTimeout's error)."""


class DataLoss(RpcError):
    default_status = Status.DATA_LOSS


class Unauthenticated(RpcError):
    default_status = Status.UNAUTHENTICATED


class ProtocolError(RpcError):
    """The peer sent bytes that break the wire protocol; the connection is closed."""

    default_status = Status.INTERNAL

    def __new__(
        cls, message: str = "", status: Status | int | None = None, details: Any = None
    ) -> ProtocolError:
        return Exception.__new__(cls)

    def __init__(
        self, message: str = "", status: Status | int | None = None, details: Any = None
    ) -> None:
        super().__init__(status, message, details)


class FrameTooLarge(ProtocolError, ResourceExhausted):
    """A frame or message is over the configured limit; refused before it is buffered."""

    default_status = Status.RESOURCE_EXHAUSTED


_MODE_NAMES = {
    "unary": "unary: call it with client.call()",
    "server_stream": "a server stream: call it with client.stream()",
    "client_stream": "a client stream: call it with client.stream()",
    "bidi_stream": "a bidi stream: call it with client.stream()",
}


def wrong_mode(method: str, mode: str) -> Unimplemented:
    """The error every wire answers when a method is called in a mode it does not have (a
    stream called as a unary call, or the other way round): UNIMPLEMENTED, as an unknown
    method is, since that form of the method does not exist; the message names its mode."""
    return Unimplemented(message=f"method {method} is {_MODE_NAMES.get(mode, mode)}")


# ProtocolError must not shadow Internal for INTERNAL, nor FrameTooLarge ResourceExhausted.
RpcError._by_status[Status.INTERNAL] = Internal
RpcError._by_status[Status.RESOURCE_EXHAUSTED] = ResourceExhausted
RpcError._by_status[Status.UNAVAILABLE] = Unavailable
