"""Go ``net/rpc`` over gob, sans-IO: both ends of one connection.

The wire (``net/rpc``'s gobServerCodec / gobClientCodec): each direction is one gob stream.
A request is two gob values, ``Request{ServiceMethod string; Seq uint64}`` then the argument;
a response is ``Response{ServiceMethod string; Seq uint64; Error string}`` then the reply
(an error response still carries a body: Go sends ``struct{}{}``). Responses may come in any
order; ``Seq`` pairs them with requests.

:class:`ServerConnection` turns bytes into :class:`IncomingCall` events and results into
bytes; :class:`ClientConnection` does the opposite. Bodies stay undecoded
(:class:`~wirecall.codec.gob.GobMessage`) until the caller knows which type to decode into.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from ..codec.gob import Decoder, Encoder, GobMessage, GoType, GoUint64, go_type, go_type_of_value
from ..codec.gob.types import anonymous_struct

__all__ = [
    "ClientConnection",
    "EmptyBody",
    "IncomingCall",
    "IncomingReply",
    "RequestHeader",
    "ResponseHeader",
    "ServerConnection",
    "body_type",
    "go_error_text",
]

DEFAULT_MAX_MESSAGE = 4 * 1024 * 1024


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
    def __init__(self, max_message_size: int) -> None:
        self.decoder = Decoder(max_message_size)
        self.encoder = Encoder()
        self._header: Any = None
        self._out = bytearray()

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

    def decode_body(self, body: GobMessage, pytype: Any = Any) -> Any:
        """Decode an argument or reply into ``pytype`` (``GobError`` if it does not fit)."""
        return self.decoder.decode(body, pytype)


class ServerConnection(_Side):
    """The server end: read requests, write responses."""

    def receive(self, data: bytes) -> list[IncomingCall]:
        """Feed bytes; return the complete requests (raises ``GobError`` on bad input)."""
        dec = self.decoder
        dec.feed(data)
        calls: list[IncomingCall] = []
        while True:
            msg = dec.next_value()
            if msg is None:
                return calls
            hdr = self._header
            if hdr is None:
                self._header = dec.decode(msg, RequestHeader)
            else:
                self._header = None
                calls.append(IncomingCall(hdr.Seq, hdr.ServiceMethod, msg))

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
        dec = self.decoder
        dec.feed(data)
        replies: list[IncomingReply] = []
        while True:
            msg = dec.next_value()
            if msg is None:
                return replies
            hdr = self._header
            if hdr is None:
                self._header = dec.decode(msg, ResponseHeader)
            else:
                self._header = None
                replies.append(IncomingReply(hdr.Seq, hdr.ServiceMethod, hdr.Error, msg))
