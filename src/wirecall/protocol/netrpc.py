"""Go ``net/rpc`` over gob, sans-IO: both ends of one connection.

The wire (``net/rpc``'s gobServerCodec / gobClientCodec): each direction is one gob stream.
A request is two gob values, ``Request{ServiceMethod string; Seq uint64}`` then the argument;
a response is ``Response{ServiceMethod string; Seq uint64; Error string}`` then the reply
(an error response still carries a body: Go sends ``struct{}{}``). Responses may come in any
order; ``Seq`` pairs them with requests.

:class:`ServerConnection` turns bytes into :class:`IncomingCall` events and results into
bytes; :class:`ClientConnection` does the opposite. Bodies stay undecoded
(:class:`~wirecall.codec.gob.GobMessage`) until the caller knows which type to decode into.

Go's ``rpc.DialHTTP`` opens the same stream with an HTTP/1.0 preamble: ``CONNECT /_goRPC_
HTTP/1.0`` and a blank line (a bare ``\\n\\n``), answered by :data:`CONNECTED_LINE`.
:func:`starts_connect` and :func:`split_http_head` read it (both sides, and the HTTP listener
that hands such a connection over).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from ..codec.gob import Decoder, Encoder, GobMessage, GoType, GoUint64, go_type, go_type_of_value
from ..codec.gob.types import anonymous_struct

__all__ = [
    "CONNECTED_LINE",
    "GO_RPC_PATH",
    "ClientConnection",
    "EmptyBody",
    "IncomingCall",
    "IncomingReply",
    "RequestHeader",
    "ResponseHeader",
    "ServerConnection",
    "body_type",
    "go_error_text",
    "split_http_head",
    "starts_connect",
]

DEFAULT_MAX_MESSAGE = 4 * 1024 * 1024

#: where Go's ``rpc.HandleHTTP`` serves (``rpc.DefaultRPCPath``)
GO_RPC_PATH = "/_goRPC_"
#: What Go's rpc.Server.ServeHTTP writes after hijacking a CONNECT request.
CONNECTED_LINE = b"HTTP/1.0 200 Connected to Go RPC\n\n"
_CONNECT = b"CONNECT "


def starts_connect(data: bytes | bytearray) -> bool | None:
    """Do the first bytes of a connection start an HTTP ``CONNECT``? None: too few to say."""
    n = min(len(data), len(_CONNECT))
    if bytes(data[:n]) != _CONNECT[:n]:
        return False
    return None if n < len(_CONNECT) else True


def split_http_head(data: bytes | bytearray) -> tuple[bytes, bytes] | None:
    """``(first line, bytes after the head)`` of an HTTP/1.x head ended by a blank line (Go
    writes a bare ``\\n\\n``, others ``\\r\\n\\r\\n``); None while the head is incomplete."""
    end, end2 = data.find(b"\n\n"), data.find(b"\r\n\r\n")
    if end < 0 and end2 < 0:
        return None
    if end2 >= 0 and (end < 0 or end2 < end):
        head, rest = data[:end2], data[end2 + 4 :]
    else:
        head, rest = data[:end], data[end + 2 :]
    return bytes(head.split(b"\n", 1)[0].rstrip(b"\r")), bytes(rest)


class RequestHeader(msgspec.Struct):
    """net/rpc's ``Request``."""

    __go_name__ = "Request"
    ServiceMethod: str = ""
    Seq: Annotated[int, GoUint64] = 0


class ResponseHeader(msgspec.Struct):
    """net/rpc's ``Response``."""

    __go_name__ = "Response"
    ServiceMethod: str = ""
    Seq: Annotated[int, GoUint64] = 0
    Error: str = ""


class EmptyBody(msgspec.Struct):
    """``struct{}{}``: the body Go's server sends with an error response."""

    __go_name__ = ""


_REQ_T = go_type(RequestHeader)
_RESP_T = go_type(ResponseHeader)
_EMPTY_T = go_type(EmptyBody)


class IncomingCall:
    """A request read by the server: ``seq``, ``method`` and the undecoded argument."""

    __slots__ = ("body", "method", "seq")

    def __init__(self, seq: int, method: str, body: GobMessage) -> None:
        self.seq = seq
        self.method = method
        self.body = body


class IncomingReply:
    """A response read by the client; ``error`` is Go's error string ("" on success)."""

    __slots__ = ("body", "error", "method", "seq")

    def __init__(self, seq: int, method: str, error: str, body: GobMessage) -> None:
        self.seq = seq
        self.method = method
        self.error = error
        self.body = body


def body_type(pytype: Any, value: Any) -> GoType:
    """The Go type to send ``value`` as: from the annotation when it maps, else inferred.

    A ``dict`` sent where nothing says otherwise becomes an anonymous Go struct (what a Go
    ``Args`` decodes from: gob matches struct fields by name, not by type name).
    """
    if pytype is not None and pytype is not Any and pytype is not object:
        try:
            return go_type(pytype)
        except TypeError:
            pass
    if value is None:
        return _EMPTY_T
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return anonymous_struct([(k, go_type_of_value(v)) for k, v in value.items()])
    return go_type_of_value(value)


def go_error_text(message: str) -> str:
    """A Go error string must be non-empty (empty means success in net/rpc)."""
    return message or "error"


class _Side:
    def __init__(
        self, max_message_size: int, *, max_types: int = 1024,
        max_type_bytes: int = 1024 * 1024,
    ) -> None:
        self.decoder = Decoder(max_message_size, max_types=max_types,
                               max_type_bytes=max_type_bytes)
        self.encoder = Encoder()
        self._header: Any = None
        self._out = bytearray()

    @property
    def queued(self) -> int:
        """Bytes queued to send."""
        return len(self._out)

    @property
    def unfinished(self) -> bool:
        """A message (or the request's second half) has started arriving, not complete."""
        return self.decoder.buffered > 0 or self._header is not None

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        data = bytes(out)
        out.clear()
        return data

    def _send_pair(self, header: Any, htype: GoType, value: Any, gtype: GoType) -> None:
        enc = self.encoder
        out = self._out
        n = len(out)
        mark = enc.mark()
        try:
            enc.append_value(out, header, htype)
            enc.append_value(out, value, gtype)
        except BaseException:
            del out[n:]
            enc.rollback(mark)
            raise

    def _receive_pairs(self, data: bytes, header_type: Any) -> list[tuple[Any, GobMessage]]:
        """Feed bytes; return the complete (header, undecoded body) pairs."""
        dec = self.decoder
        dec.feed(data)
        pairs: list[tuple[Any, GobMessage]] = []
        while True:
            msg = dec.next_value()
            if msg is None:
                return pairs
            hdr = self._header
            if hdr is None:
                self._header = dec.decode(msg, header_type)
            else:
                self._header = None
                pairs.append((hdr, msg))

    def decode_body(self, body: GobMessage, pytype: Any = Any) -> Any:
        """Decode an argument or reply into ``pytype`` (``GobError`` if it does not fit)."""
        return self.decoder.decode(body, pytype)


class ServerConnection(_Side):
    """The server end: read requests, write responses."""

    def receive(self, data: bytes) -> list[IncomingCall]:
        """Feed bytes; return the complete requests (raises ``GobError`` on bad input)."""
        return [IncomingCall(h.Seq, h.ServiceMethod, body)
                for h, body in self._receive_pairs(data, RequestHeader)]

    def send_reply(self, seq: int, method: str, value: Any, gtype: GoType) -> None:
        """Queue a successful response. If the value cannot be encoded (``GobError``),
        nothing is queued and the stream stays consistent."""
        self._send_pair(ResponseHeader(method, seq), _RESP_T, value, gtype)

    def send_error(self, seq: int, method: str, message: str) -> None:
        enc = self.encoder
        enc.append_value(self._out, ResponseHeader(method, seq, go_error_text(message)), _RESP_T)
        enc.append_value(self._out, EmptyBody(), _EMPTY_T)


class ClientConnection(_Side):
    """The client end: write requests, read responses."""

    def send_request(self, seq: int, method: str, value: Any, gtype: GoType) -> None:
        """Queue a request (``GobError`` if the argument cannot be encoded: nothing queued)."""
        self._send_pair(RequestHeader(method, seq), _REQ_T, value, gtype)

    def receive(self, data: bytes) -> list[IncomingReply]:
        """Feed bytes; return the complete responses (raises ``GobError`` on bad input)."""
        return [IncomingReply(h.Seq, h.ServiceMethod, h.Error, body)
                for h, body in self._receive_pairs(data, ResponseHeader)]
