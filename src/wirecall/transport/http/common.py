"""What the HTTP and WebSocket sides share: the ``Wirecall-*`` headers, wirecall's streaming
convention on JSON-RPC 2.0 (``rpc.stream.*`` notifications and their credit window), value
conversion, and the elements of a JSON-RPC batch."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import msgspec

from ...errors import Internal, InvalidArgument
from ...protocol import gojsonrpc as gj

__all__ = [
    "GRANT_AT",
    "META_PREFIX",
    "STREAM_CANCEL",
    "STREAM_END",
    "STREAM_ITEM",
    "STREAM_OPEN",
    "STREAM_WINDOW",
    "STREAM_WINDOW_INITIAL",
    "TIMEOUT_HEADER",
    "TIMEOUT_KEY",
    "BatchCall",
    "BatchItem",
    "batch_calls",
    "convert_item",
    "convert_result",
    "go_dialect",
    "origin_form",
    "window_increment",
]

#: the call's timeout in seconds (an HTTP request header)
TIMEOUT_HEADER = "Wirecall-Timeout"
#: a WebSocket call's timeout in seconds: this key of the request's ``"metadata"`` member
#: (taken out of it by the server, which sets the call's deadline from it)
TIMEOUT_KEY = "wirecall-timeout"
#: ``Wirecall-Meta-<key>: <value>`` carries one metadata pair (HTTP request, WebSocket upgrade)
META_PREFIX = "Wirecall-Meta-"

STREAM_ITEM = "rpc.stream.item"  # {"id": <call id>, "item": <one message>}, either way
STREAM_END = "rpc.stream.end"  # {"id": <call id>}: the client sends no more items
STREAM_CANCEL = "rpc.stream.cancel"  # {"id": <call id>}: the client gives the call up
STREAM_WINDOW = "rpc.stream.window"  # {"id": <call id>, "n": k}: k more items may come
#: {"id": <call id>, "method": M, "mode": "server_stream"|...}: the server started a stream
#: (sent before any item; a call answered without it was unary)
STREAM_OPEN = "rpc.stream.open"
STREAM_WINDOW_INITIAL = 16  # items each side may send before the first rpc.stream.window
GRANT_AT = STREAM_WINDOW_INITIAL // 2  # grant credit back in batches of half a window


def window_increment(p: Any) -> int:
    """The credit an ``rpc.stream.window`` grants (0 for a malformed one)."""
    n = p.get("n") if isinstance(p, dict) else None
    return n if type(n) is int and 0 < n <= 1 << 20 else 0


def convert_item(value: Any, tp: Any) -> Any:
    """A stream item the client sent, as the handler's item type (INVALID_ARGUMENT if not)."""
    if tp is Any or tp is None or tp is inspect.Parameter.empty:
        return value
    try:
        return msgspec.convert(value, tp, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidArgument(message=f"invalid stream item: {exc}") from None


def convert_result(result: Any, result_type: Any) -> Any:
    """A result (or stream item) the server sent, as the caller's type (INTERNAL if not)."""
    if result_type is Any or result_type is None:
        return result
    try:
        return msgspec.convert(result, result_type, strict=False)
    except msgspec.ValidationError as exc:
        try:  # a Go server (net/rpc/jsonrpc over HTTP) writes an empty slice or map as null
            return gj.go_json_convert(result, result_type)
        except (msgspec.ValidationError, TypeError, ValueError):
            pass
        raise Internal(message=f"cannot decode the result as {result_type!r}: {exc}") from None


class BatchCall(msgspec.Struct, frozen=True):
    """One element of :meth:`HttpConnection.batch`: a call, or a notification (no answer)."""

    method: str
    params: Any = None
    notify: bool = False
    result_type: Any = Any


BatchItem = BatchCall | tuple[str, Any] | tuple[str, Any, Any]


def batch_calls(calls: Iterable[BatchItem]) -> list[BatchCall]:
    """The elements of a batch as :class:`BatchCall` (``(method, params[, result_type])``)."""
    out = []
    for c in calls:
        if isinstance(c, BatchCall):
            out.append(c)
        elif isinstance(c, tuple) and len(c) in (2, 3):
            out.append(BatchCall(c[0], c[1], result_type=c[2] if len(c) == 3 else Any))
        else:
            raise TypeError(f"a batch element is a BatchCall or (method, params), got {c!r}")
    return out


def origin_form(target: bytes) -> bytes:
    """``http://host/path?q`` -> ``/path?q`` (absolute-form, RFC 9112 §3.2.2: servers must
    accept it); any other target is returned unchanged."""
    scheme, sep, rest = target.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https"):
        return target
    end = len(rest)
    for c in (b"/", b"?", b"#"):
        i = rest.find(c)
        if 0 <= i < end:
            end = i
    origin = rest[end:]
    if not origin.startswith(b"/"):
        origin = b"/" + origin
    return origin


def go_dialect(body: bytes) -> bytes:
    """A body for a Go path: a single request's ``"jsonrpc"`` member is dropped, so it is
    answered as Go's server answers every request (``{"id", "result", "error"}``); batches
    and anything else go on as they are."""
    if b'"jsonrpc"' not in body or body.lstrip()[:1] != b"{":
        return body
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body
    if type(doc) is dict and doc.pop("jsonrpc", None) is not None:
        return msgspec.json.encode(doc)
    return body
