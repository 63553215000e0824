"""The gRPC-over-HTTP/2 protocol, sans-IO: bytes in, events out, bytes to send
(see ``docs/grpc.md`` and gRPC's PROTOCOL-HTTP2.md).

* :mod:`.headers`: the header grammar: ``grpc-timeout`` (``1S``, ``250m``...),
  ``grpc-status``/``grpc-message`` (percent-encoded), custom metadata with ``-bin`` (base64)
  values;
* :mod:`.messages`: length-prefixed messages (1-byte compressed flag, 4-byte big-endian length,
  payload; the size limit is checked on the prefix), gzip;
* :mod:`.events`: what the connection reports;
* :mod:`.connection`: :class:`GrpcConnection`, the HTTP/2 connection core (the only module
  that uses ``h2``).

No asyncio, socket or ssl here: :class:`GrpcConnection` is driven by
``wirecall.transport.grpc`` and by tests that play a raw HTTP/2 peer.
"""

from .connection import REFUSED_STREAM, RESET_STATUS, GrpcConnection
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
    COMPRESSIONS,
    CONTENT_TYPE,
    USER_AGENT,
    decode_metadata,
    encode_metadata,
    format_timeout,
    parse_timeout,
    percent_decode,
    percent_encode,
)
from .messages import (
    PREFIX,
    MessageError,
    MessageReader,
    frame_message,
    gzip_compress,
    gzip_decompress,
)

__all__ = [
    "ACCEPT_ENCODING",
    "COMPRESSIONS",
    "CONTENT_TYPE",
    "PREFIX",
    "REFUSED_STREAM",
    "RESET_STATUS",
    "USER_AGENT",
    "CallStarted",
    "ConnectionClosed",
    "GrpcConnection",
    "HalfClosed",
    "MessageError",
    "MessageReader",
    "MessageReceived",
    "PingAcked",
    "ResponseStarted",
    "StreamFailed",
    "StreamReset",
    "TrailersReceived",
    "decode_metadata",
    "encode_metadata",
    "format_timeout",
    "frame_message",
    "gzip_compress",
    "gzip_decompress",
    "parse_timeout",
    "percent_decode",
    "percent_encode",
]
