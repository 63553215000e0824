"""The HTTP/2 backend interface under the gRPC connection core.

:class:`~.connection.GrpcConnection` speaks gRPC; framing, HPACK, stream states and
flow-control accounting are an :class:`Http2Backend`'s. Two implement it:

* ``"ngh2"`` (:mod:`.ngh2_backend`): libnghttp2 through the ``ngh2`` package, ~20x less CPU
  per call than h2; the default when ``ngh2`` is installed (``pip install 'wirecall[grpc]'``);
* ``"h2"`` (:mod:`.h2_backend`): the pure-Python ``h2`` library, the fallback.

:func:`resolve_backend` chooses: the name passed (``GrpcConnection(backend=)``, the
``http2_backend`` server/connect option), else the ``WIRECALL_GRPC_HTTP2`` environment
variable, else ngh2 when importable, else h2. A backend reports what arrived as the neutral
events below (each library's own events never leave its backend module), in h2's order: a
frame that ends a stream is followed by :class:`H2Ended`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "BackendError",
    "ErrorCodes",
    "H2Closed",
    "H2Data",
    "H2Ended",
    "H2GoAway",
    "H2PingAck",
    "H2Request",
    "H2Reset",
    "H2Response",
    "H2Settings",
    "H2Trailers",
    "H2Window",
    "Http2Backend",
    "StreamGone",
    "resolve_backend",
]

#: the environment variable naming the HTTP/2 backend when no option does
ENV_VAR = "WIRECALL_GRPC_HTTP2"
BACKENDS = ("ngh2", "h2")

Headers = list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...]


class ErrorCodes:
    """HTTP/2 error codes (RFC 9113 section 7), as ints."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC


class StreamGone(Exception):
    """Sending on a stream that is closed already (the peer reset it, say)."""


class BackendError(Exception):
    """The peer broke HTTP/2 (or flooded it): the connection is over. ``code`` is the GOAWAY
    error code the backend queued."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class H2Request:
    stream_id: int
    headers: Headers
    ended: bool


@dataclass(slots=True)
class H2Response:
    stream_id: int
    headers: Headers
    ended: bool


@dataclass(slots=True)
class H2Trailers:
    stream_id: int
    headers: Headers


@dataclass(slots=True)
class H2Data:
    stream_id: int
    data: bytes
    flow: int  # flow-controlled length (data + padding)


@dataclass(slots=True)
class H2Ended:
    stream_id: int


@dataclass(slots=True)
class H2Reset:
    """The peer sent RST_STREAM."""

    stream_id: int
    error_code: int


@dataclass(slots=True)
class H2Closed:
    """The backend closed a stream itself with an error (its own RST_STREAM)."""

    stream_id: int
    error_code: int


@dataclass(slots=True)
class H2Window:
    stream_id: int  # 0: the connection window


@dataclass(slots=True)
class H2Settings:
    pass


@dataclass(slots=True)
class H2GoAway:
    error_code: int
    last_stream_id: int
    debug: bytes


@dataclass(slots=True)
class H2PingAck:
    data: bytes


class Http2Backend:
    """One HTTP/2 connection, sans-IO (what :class:`~.connection.GrpcConnection` needs).

    Headers go in as ``(str, str)`` pairs and come out as ``(bytes, bytes)``. Received data is
    never acknowledged by the backend on its own: :meth:`acknowledge` when consumed."""

    name = ""
    #: the largest DATA chunk worth handing over at once
    max_frame: int = 16384
    #: count control frames in :meth:`receive` (off: nobody reads the count); the server
    #: side, which counts them, also keeps :attr:`unfinished` up to date
    count_control: bool = True
    #: after :meth:`receive` (server side): an HTTP/2 frame (or the preface, or a header
    #: block awaiting CONTINUATION) has started arriving and is not complete
    unfinished: bool = False

    def unfinished_marks(self) -> list[tuple[str, int]]:
        """What is unfinished (see :attr:`unfinished`), each as a mark that stays the same
        while the same frame or header block stays unfinished (the stream offset where it
        started)."""
        return []

    def recv_window(self, stream_id: int) -> int:
        """Bytes the peer may still send on this stream now (the smaller of the stream's and
        the connection's receive windows)."""
        raise NotImplementedError

    def initiate(self, settings: dict[int, int], connection_window: int) -> None:
        raise NotImplementedError

    def receive(self, data: bytes) -> tuple[list[object], int]:
        """Events, and how many control frames (SETTINGS, PING, PRIORITY, PRIORITY_UPDATE,
        unknown types) arrived; raises :class:`BackendError` on a connection error."""
        raise NotImplementedError

    def data_to_send(self) -> bytes:
        raise NotImplementedError

    # send_headers, send_trailers, send_data and end_stream raise StreamGone on a closed
    # stream

    def send_request(self, headers: Sequence[tuple[str, str]], end_stream: bool) -> int:
        raise NotImplementedError

    def send_headers(self, stream_id: int, headers: list[tuple[str, str]],
                     end_stream: bool = False) -> None:
        """Response headers (or a trailers-only response with ``end_stream``)."""
        raise NotImplementedError

    def send_trailers(self, stream_id: int, headers: list[tuple[str, str]]) -> None:
        raise NotImplementedError

    def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        raise NotImplementedError

    def end_stream(self, stream_id: int) -> None:
        raise NotImplementedError

    def window(self, stream_id: int) -> int:
        """Bytes the peer lets us send on this stream now (stream and connection windows,
        less what is queued already)."""
        raise NotImplementedError

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        """RST_STREAM; a stream already gone is ignored."""
        raise NotImplementedError

    def acknowledge(self, stream_id: int, nbytes: int) -> None:
        """``nbytes`` received on the stream were consumed (WINDOW_UPDATE as due); a stream
        already gone credits the connection window only."""
        raise NotImplementedError

    def goaway(self, error_code: int, debug: bytes) -> None:
        """GOAWAY and close: no stream is processed any more."""
        raise NotImplementedError

    def graceful_goaway(self, last: int | None) -> int:
        """GOAWAY(NO_ERROR) naming ``last`` (2^31-1: the shutdown notice), or with None the
        highest stream received; open streams carry on. Returns the stream id named."""
        raise NotImplementedError

    def ping(self, data: bytes) -> None:
        """PING; raises :class:`BackendError` on a connection that is closing."""
        raise NotImplementedError

    def peer_max_streams(self) -> int:
        raise NotImplementedError

    def open_outbound(self) -> int:
        """Streams this side opened that are not closed yet."""
        raise NotImplementedError

    def below(self, limit: int) -> bool:
        """Fewer than ``limit`` streams opened by this side are open."""
        return self.open_outbound() < limit


def resolve_backend(name: str | None = None) -> str:
    """The backend to use: ``name``, else ``$WIRECALL_GRPC_HTTP2``, else ngh2 if installed,
    else h2. An unknown name is a ValueError; a named backend not installed is an ImportError
    naming the extra to install."""
    if not name:
        name = os.environ.get(ENV_VAR, "").strip() or None
    if name is None:
        return "ngh2" if _installed("ngh2") else "h2"
    if name not in BACKENDS:
        raise ValueError(f"unknown HTTP/2 backend {name!r} (http2_backend / {ENV_VAR}): "
                         f"use one of {', '.join(BACKENDS)}")
    if not _installed(name):
        raise ImportError(f"the {name} HTTP/2 backend needs {name}: "
                          "pip install 'wirecall[grpc]'")
    return name


def _installed(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
