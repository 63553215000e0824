"""JSON-RPC 2.0 (https://www.jsonrpc.org/specification), sans-IO: bytes in, calls out, bytes back.

One endpoint answers two dialects:

* **JSON-RPC 2.0**: an object with ``"jsonrpc": "2.0"``, or a batch (an array of them).
  Notifications (no ``id`` member) get no response; a batch of only notifications gets no
  body at all; an empty array is an invalid request; ids are strings, numbers or null.
* **Go's JSON-RPC 1.0** (``net/rpc/jsonrpc``): a single object *without* a ``jsonrpc``
  member is answered as Go's server answers it, ``{"id": <id>, "result": <r>, "error": null}``
  or ``{"id": <id>, "result": null, "error": "<message>"}``, and every such request is answered
  (Go has no notifications). A ``jsonrpc`` member other than ``"2.0"`` is an invalid request.

Errors: the reserved codes (-32700 parse error, -32600 invalid request, -32601 method not found,
-32602 invalid params, -32603 internal error) and wirecall's :class:`~wirecall.status.Status`
mapped into the server range ``-32000 - status`` (CANCELLED -32001 ... UNAUTHENTICATED -32016).
``UNIMPLEMENTED`` is -32601, ``INVALID_ARGUMENT`` -32602, ``INTERNAL`` -32603. Every error
object carries ``data: {"status": "<STATUS_NAME>"}`` (plus ``"details"`` when the error has
some), so a wirecall client recovers the exact :class:`~wirecall.errors.RpcError`.

wirecall's one extension: a request object may carry ``"metadata"``, an object of strings
(the call's ``Context.metadata``; the WebSocket has no per-call headers). Anything else there
is an invalid request.

This module imports no I/O: the HTTP and WebSocket transports feed it bodies and write what
it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import msgspec

from ..codec.msgpack import JSON_CODEC
from ..errors import RpcError
from ..status import Status

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "Call",
    "ErrorReply",
    "Reply",
    "code_for_status",
    "decode_any",
    "decode_response",
    "encode",
    "encode_replies",
    "error_from_object",
    "error_reply",
    "go_error_message",
    "json_kind",
    "parse",
    "parse_document",
    "request_object",
    "result_reply",
    "status_for_code",
]

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
SERVER_ERROR_BASE: Final = -32000

_RESERVED_BY_STATUS: Final = {
    Status.UNIMPLEMENTED: METHOD_NOT_FOUND,
    Status.INVALID_ARGUMENT: INVALID_PARAMS,
    Status.INTERNAL: INTERNAL_ERROR,
}
_STATUS_BY_CODE: Final = {
    PARSE_ERROR: Status.INVALID_ARGUMENT,
    INVALID_REQUEST: Status.INVALID_ARGUMENT,
    METHOD_NOT_FOUND: Status.UNIMPLEMENTED,
    INVALID_PARAMS: Status.INVALID_ARGUMENT,
    INTERNAL_ERROR: Status.INTERNAL,
}

#: decode any JSON document (no schema)
decode_any: Callable[[bytes | bytearray | memoryview], Any] = msgspec.json.Decoder().decode
#: encode any JSON-able value (msgspec Structs, dataclasses, enums... as the JSON codec does)
encode: Callable[[Any], bytes] = JSON_CODEC.encode


def code_for_status(status: Status) -> int:
    """The JSON-RPC error code for a wirecall status."""
    code = _RESERVED_BY_STATUS.get(status)
    return code if code is not None else SERVER_ERROR_BASE - int(status)


def status_for_code(code: int) -> Status:
    """The wirecall status for a JSON-RPC error code (inverse of :func:`code_for_status`)."""
    st = _STATUS_BY_CODE.get(code)
    if st is not None:
        return st
    n = SERVER_ERROR_BASE - code
    if 0 < n <= max(Status):
        return Status(n)
    return Status.UNKNOWN


class Call:
    """One request to run: ``notify`` means no response is sent; ``go`` means Go 1.0 dialect
    (``raw`` then holds the decoded request object, for Go's exact argument semantics).
    ``metadata`` is wirecall's ``"metadata"`` member (string keys and values), if any."""

    __slots__ = ("go", "id", "metadata", "method", "notify", "params", "raw")

    def __init__(
        self,
        method: str,
        params: Any,
        id: Any,
        notify: bool = False,
        go: bool = False,
        raw: Any = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.method = method
        self.params = params
        self.id = id
        self.notify = notify
        self.go = go
        self.raw = raw
        self.metadata = metadata

    def __repr__(self) -> str:
        kind = "go" if self.go else ("notification" if self.notify else "request")
        return f"Call({kind} {self.method!r} id={self.id!r} params={self.params!r})"


#: A response object, ready to encode (a dict in the dialect of its request).
Reply = dict[str, Any]


class ErrorReply:
    """A request that failed validation: the response is already decided.

    ``raw`` is the decoded object of a Go 1.0 request; ``stream`` is true when the body held
    one valid JSON value followed by more (Go's ``ServeConn`` reads such a stream).
    """

    __slots__ = ("raw", "reply", "stream")

    def __init__(self, reply: Reply, raw: Any = None, stream: bool = False) -> None:
        self.reply = reply
        self.raw = raw
        self.stream = stream

    def __repr__(self) -> str:
        return f"ErrorReply({self.reply!r})"


def _error_object(code: int, message: str, status: Status, details: Any = None) -> dict[str, Any]:
    data: dict[str, Any] = {"status": status.name}
    if details is not None:
        data["details"] = details
    return {"code": code, "message": message, "data": data}


def _invalid(message: str, id: Any = None) -> ErrorReply:
    return ErrorReply(
        {
            "jsonrpc": "2.0",
            "error": _error_object(
                INVALID_REQUEST, f"Invalid Request: {message}", Status.INVALID_ARGUMENT
            ),
            "id": id,
        }
    )


def _valid_id(value: Any) -> bool:
    return value is None or (type(value) in (str, int, float))


def _check(obj: Any, in_batch: bool) -> Call | ErrorReply:
    """Validate one request object (2.0, or Go 1.0 when alone and without ``jsonrpc``)."""
    if type(obj) is not dict:
        return _invalid(f"expected a request object, got {_json_type(obj)}")
    version = obj.get("jsonrpc", _MISSING)
    if version is _MISSING and not in_batch:
        return _check_go(obj)
    id = obj.get("id", _MISSING)
    notify = id is _MISSING
    if notify:
        id = None
    elif not _valid_id(id):
        return _invalid(f"'id' must be a string, a number or null, got {_json_type(id)}")
    if version != "2.0":
        if version is _MISSING:
            return _invalid("missing member 'jsonrpc' (must be \"2.0\")", id)
        return _invalid(f"'jsonrpc' must be exactly \"2.0\", got {version!r}", id)
    method = obj.get("method", _MISSING)
    if method is _MISSING:
        return _invalid("missing member 'method'", id)
    if type(method) is not str:
        return _invalid(f"'method' must be a string, got {_json_type(method)}", id)
    params = obj.get("params")
    if params is not None and type(params) not in (list, dict):
        return _invalid(f"'params' must be an array or an object, got {_json_type(params)}", id)
    if "params" in obj and params is None:
        return _invalid("'params' must be an array or an object, got null", id)
    md = obj.get("metadata")
    if md is not None and (
        type(md) is not dict or not all(type(v) is str for v in md.values())
    ):
        return _invalid("'metadata' must be an object of strings", id)
    return Call(method, params, id, notify, metadata=md)


def _check_go(obj: dict[str, Any]) -> Call | ErrorReply:
    """Go's ``jsonrpc.ServerCodec`` semantics: always answered; errors are strings."""
    id = obj.get("id")
    method = obj.get("method")
    if type(method) is not str:
        method = ""
    if "params" not in obj or obj["params"] is None:
        return ErrorReply(go_reply_error(id, "jsonrpc: request body missing params"), obj)
    params = obj["params"]
    if type(params) not in (list, dict):
        kind = _json_type(params).split()[-1]
        msg = f"json: cannot unmarshal {kind} into Go value of type [1]interface {{}}"
        return ErrorReply(go_reply_error(id, msg), obj)
    # Go's server only knows Service.Method; wirecall also registers flat functions, so the
    # dispatcher decides (an unknown flat name gets Go's "ill-formed" message).
    return Call(method, params, id, False, True, obj)


class _Missing:
    __slots__ = ()


_MISSING: Any = _Missing()


def json_kind(value: Any) -> str | None:
    """The JSON kind of a decoded value: ``"null"``, ``"boolean"``, ``"number"``,
    ``"string"``, ``"array"`` or ``"object"``; None for anything JSON does not decode to."""
    if value is None:
        return "null"
    for types, kind in _KINDS:
        if isinstance(value, types):
            return kind
    return None


_KINDS: Final = ((bool, "boolean"), ((int, float), "number"), (str, "string"),
                 (list, "array"), (dict, "object"))


def _json_type(value: Any) -> str:
    kind = json_kind(value)
    if kind is None:
        return type(value).__name__
    if kind == "null":
        return kind
    return ("an " if kind[0] in "ao" else "a ") + kind


def parse(body: bytes | bytearray | memoryview) -> tuple[list[Call | ErrorReply], bool]:
    """Parse a request body: the calls to run (and replies already decided), and whether the
    body was a batch (answer with an array) or a single request (answer with one object).

    Invalid JSON (or nesting too deep to decode) is one -32700 reply; ``[]`` is one -32600
    reply (not an array); each bad element of a batch is its own -32600 reply.
    """
    try:
        doc = decode_any(body)
    except msgspec.DecodeError as exc:
        stream = "trailing characters" in str(exc)
        return [ErrorReply(_parse_error(f"Parse error: {exc}"), None, stream)], False
    except RecursionError:
        return [ErrorReply(_parse_error("Parse error: nesting too deep"))], False
    except UnicodeDecodeError as exc:  # pragma: no cover - msgspec reports it as DecodeError
        return [ErrorReply(_parse_error(f"Parse error: {exc}"))], False
    return parse_document(doc)


def parse_document(doc: Any) -> tuple[list[Call | ErrorReply], bool]:
    """:func:`parse` for a body already decoded from JSON."""
    if type(doc) is list:
        if not doc:
            return [_invalid("empty batch")], False
        return [_check(item, True) for item in doc], True
    return [_check(doc, False)], False


def _parse_error(message: str) -> Reply:
    return {
        "jsonrpc": "2.0",
        "error": _error_object(PARSE_ERROR, message, Status.INVALID_ARGUMENT),
        "id": None,
    }


# -- replies ---------------------------------------------------------------------------


def result_reply(call: Call, result: Any) -> Reply:
    if call.go:
        return {"id": call.id, "result": result, "error": None}
    return {"jsonrpc": "2.0", "result": result, "id": call.id}


def error_reply(call: Call, exc: RpcError) -> Reply:
    if call.go:
        return go_reply_error(call.id, go_error_message(call.method, exc))
    return {
        "jsonrpc": "2.0",
        "error": _error_object(code_for_status(exc.status), exc.message, exc.status, exc.details),
        "id": call.id,
    }


def go_reply_error(id: Any, message: str) -> Reply:
    return {"id": id, "result": None, "error": message}


def go_error_message(method: str, exc: RpcError) -> str:
    """The error string Go's ``net/rpc`` server would send for ``exc``.

    Go writes ``rpc: can't find service X.Y`` / ``rpc: can't find method X.Y`` /
    ``rpc: service/method request ill-formed: X`` for unknown methods; any other error is
    its message.
    """
    if exc.status is Status.UNIMPLEMENTED:
        if "." not in method:
            return f"rpc: service/method request ill-formed: {method}"
        if exc.message.startswith("unknown service"):
            return f"rpc: can't find service {method}"
        return f"rpc: can't find method {method}"
    return exc.message


def encode_replies(replies: list[Reply], batch: bool) -> bytes | None:
    """The response body: an array for a batch, one object otherwise, ``None`` for nothing.

    Go 1.0 replies end with a newline, as Go's ``json.Encoder`` writes them.
    """
    if not replies:
        return None
    if batch:
        return encode(replies)
    reply = replies[0]
    data = encode(reply)
    if "jsonrpc" not in reply:
        data += b"\n"
    return data


# -- the client side ---------------------------------------------------------------------


def request_object(
    method: str, params: Any, id: Any = _MISSING, metadata: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A 2.0 request (a notification when ``id`` is not given); ``metadata`` becomes
    wirecall's ``"metadata"`` member (the call's ``Context.metadata`` on a wirecall server)."""
    obj: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        obj["params"] = params
    if id is not _MISSING:
        obj["id"] = id
    if metadata:
        obj["metadata"] = dict(metadata)
    return obj


def error_from_object(err: Any) -> RpcError:
    """Turn a response's ``error`` member (2.0 object or Go string) into an RpcError."""
    if isinstance(err, str):
        status = Status.UNKNOWN
        if err.startswith(("rpc: can't find ", "rpc: service/method request ill-formed")):
            status = Status.UNIMPLEMENTED
        return RpcError(status, err)
    if not isinstance(err, dict):
        return RpcError(Status.INTERNAL, f"malformed JSON-RPC error member: {err!r}")
    code = err.get("code")
    message = err.get("message")
    if not isinstance(message, str):
        message = str(message)
    data = err.get("data")
    found: Status | None = None
    details = None
    if isinstance(data, dict):
        name = data.get("status")
        if isinstance(name, str) and name in Status.__members__:
            found = Status[name]
        details = data.get("details")
    elif data is not None:
        details = data
    if found is None:
        found = status_for_code(code) if isinstance(code, int) else Status.UNKNOWN
    if found is Status.OK:
        found = Status.UNKNOWN
    return RpcError(found, message, details)


def decode_response(obj: Any) -> tuple[Any, Any, RpcError | None]:
    """``(id, result, error)`` from one response object, 2.0 or Go 1.0 style.

    Raises ``ValueError`` naming what is wrong when ``obj`` is not a response.
    """
    if type(obj) is not dict:
        raise ValueError(f"JSON-RPC response must be an object, got {_json_type(obj)}")
    if "id" not in obj:
        raise ValueError("JSON-RPC response has no 'id' member")
    id = obj["id"]
    err = obj.get("error")
    if err is not None:
        return id, None, error_from_object(err)
    if "result" not in obj:
        raise ValueError("JSON-RPC response has neither 'result' nor 'error'")
    return id, obj["result"], None
