"""Go's ``net/rpc/jsonrpc`` (JSON-RPC 1.0 as Go speaks it), sans-IO.

Wire: a stream of JSON values (Go's ``json.Encoder`` ends each with ``\\n``; its decoder
accepts any whitespace between values). Request ``{"method": "Calculator.Add", "params":
[arg], "id": <any JSON>}``; response ``{"id": <the request's id>, "result": <reply or
null>, "error": <null or the error string>}``, in completion order.

Go's server semantics, which the pure functions below reproduce (the HTTP listener uses
them for the tutorial's ``POST /jsonrpc`` too):

* ``params`` missing or ``null``: error ``jsonrpc: request body missing params``;
* ``params`` must be an array; its first element is the argument (extra ones are ignored,
  an empty array gives the zero value);
* unknown names: ``rpc: can't find service X.Y`` / ``rpc: can't find method X.Y``;
* the argument is decoded like ``encoding/json`` does: field names match case-insensitively,
  ``null`` leaves a field at its zero value;
* floats are written like Go (``2`` not ``2.0``; ``1e-7``), ``<``, ``>``, ``&`` escaped.
"""

from __future__ import annotations

import dataclasses
import decimal
import math
import re
import typing
from collections.abc import Mapping
from typing import Any, get_args, get_origin

import msgspec

from ..codec.gob.types import is_struct_class, py_fields, strip_type, zero_factory
from ..errors import FrameTooLarge, ProtocolError
from .jsonrpc2 import json_kind

__all__ = [
    "MISSING_PARAMS",
    "GoJsonCall",
    "JsonValueSplitter",
    "encode_request",
    "encode_response",
    "go_float",
    "go_json_convert",
    "parse_request",
    "response_object",
]

MISSING_PARAMS = "jsonrpc: request body missing params"

_json_decode = msgspec.json.decode
_json_encode = msgspec.json.encode


class GoJsonCall:
    """One parsed request: ``id`` (raw JSON value, None when absent), ``method`` and the
    single argument, or ``error`` (Go's text) when the request cannot be served as is."""

    __slots__ = ("arg", "error", "id", "method")

    def __init__(self, method: str, arg: Any, id: Any, error: str | None = None) -> None:
        self.method = method
        self.arg = arg
        self.id = id
        self.error = error


def parse_request(obj: Any) -> GoJsonCall:
    """Go's ``serverCodec.ReadRequestHeader`` + ``ReadRequestBody`` on one decoded value.

    Raises :class:`ProtocolError` when Go would drop the connection (not an object, or a
    non-string method): Go cannot even read a header from it.
    """
    if not isinstance(obj, dict):
        raise ProtocolError(
            f"rpc: server cannot decode request: json: cannot unmarshal "
            f"{_json_kind(obj)} into Go value of type jsonrpc.serverRequest"
        )
    method = obj.get("method", "")
    if method is None:
        method = ""
    if not isinstance(method, str):
        raise ProtocolError(
            "rpc: server cannot decode request: json: cannot unmarshal "
            f"{_json_kind(method)} into Go struct field serverRequest.method of type string"
        )
    rid = obj.get("id")
    params = obj.get("params")
    if params is None:
        return GoJsonCall(method, None, rid, MISSING_PARAMS)
    if not isinstance(params, list):
        return GoJsonCall(
            method,
            None,
            rid,
            f"json: cannot unmarshal {_json_kind(params)} into Go value of type [1]interface {{}}",
        )
    return GoJsonCall(method, params[0] if params else None, rid)


def _json_kind(v: Any) -> str:
    """The kind of a JSON value in Go's ``encoding/json`` words."""
    kind = json_kind(v)
    return "bool" if kind == "boolean" else kind or "null"


def response_object(id: Any, result: Any = None, error: str | None = None) -> dict[str, Any]:
    """``{"id", "result", "error"}`` as Go's serverResponse: result null when error is set."""
    if error is not None:
        return {"id": id, "result": None, "error": error or "error"}
    return {"id": id, "result": result, "error": None}


def encode_response(id: Any, result: Any = None, error: str | None = None) -> bytes:
    """One response line, byte-compatible with Go's ``json.Encoder`` output."""
    if error is None:
        result = go_json_value(result)
    return go_json_bytes(response_object(id, result, error))


def encode_request(seq: int, method: str, arg: Any) -> bytes:
    """What Go's jsonrpc client writes: ``{"method":..,"params":[arg],"id":seq}\\n``."""
    return go_json_bytes({"method": method, "params": [go_json_value(arg)], "id": seq})


_HTML = re.compile(rb"[<>&]|\xe2\x80[\xa8\xa9]")
_HTML_ESC = {
    b"<": b"\\u003c",
    b">": b"\\u003e",
    b"&": b"\\u0026",
    b"\xe2\x80\xa8": b"\\u2028",
    b"\xe2\x80\xa9": b"\\u2029",
}


def go_json_bytes(obj: Any) -> bytes:
    data = _json_encode(obj)
    if _HTML.search(data):  # these bytes only occur inside strings: escape them like Go
        data = _HTML.sub(lambda m: _HTML_ESC[m.group()], data)
    return data + b"\n"


def go_float(f: float) -> bytes:
    """Go's ``encoding/json`` spelling of a float64 (``ValueError`` for NaN and infinities)."""
    if math.isnan(f) or math.isinf(f):
        raise ValueError(f"json: unsupported value: {f!r}")
    a = abs(f)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        s = repr(f)
        if "e" not in s:
            s = f"{f:e}"
        mant, _, exp = s.partition("e")
        if "." in mant:
            mant = mant.rstrip("0").rstrip(".")
        sign = "-" if exp.startswith("-") else "+"
        digits = exp.lstrip("+-").lstrip("0") or "0"
        if sign == "+":  # strconv writes two exponent digits; json trims only "e-0X"
            digits = digits.zfill(2)
        return f"{mant}e{sign}{digits}".encode()
    s = format(decimal.Decimal(repr(f)), "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s.encode()


def go_json_value(v: Any) -> Any:
    """``v`` ready for msgspec's JSON encoder, written as Go's ``encoding/json`` would:
    floats spelt like Go, and inside structs an empty list, dict or bytes is ``null`` (the
    zero value of a Go slice or map field is nil, which Go writes as ``null``)."""
    t = type(v)
    if t is int or t is str or t is bool or v is None:
        return v
    if t is float:
        return msgspec.Raw(go_float(v))
    if t is list or t is tuple:
        return [go_json_value(x) for x in v]
    if t is dict:
        return {k: go_json_value(x) for k, x in v.items()}
    if t is bytes:
        return v
    if isinstance(v, msgspec.Struct):
        return {
            f.encode_name: _go_field(getattr(v, f.name)) for f in msgspec.structs.fields(v)
        }
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _go_field(getattr(v, f.name)) for f in dataclasses.fields(v)}
    return go_json_value(msgspec.to_builtins(v))


def _go_field(x: Any) -> Any:
    if not x and type(x) in (list, dict, bytes, tuple, bytearray):
        return None
    return go_json_value(x)


# -- decoding values like encoding/json ------------------------------------------------------


def go_json_convert(value: Any, tp: Any) -> Any:
    """Convert a decoded JSON value into ``tp`` the way Go's ``json.Unmarshal`` would:
    struct fields match case-insensitively, ``null`` leaves a field at its zero value."""
    norm = _normalize(value, tp)
    if norm is None:
        base, optional, _ = strip_type(tp)
        if not optional and base is not Any:
            return zero_factory(tp)()
    return msgspec.convert(norm, tp, strict=False)


def _normalize(value: Any, tp: Any) -> Any:
    base, _optional, _meta = strip_type(tp)
    if value is None:
        return None
    origin = get_origin(base) or base
    if is_struct_class(origin) and isinstance(value, dict):
        fields = _json_fields(origin)
        out: dict[str, Any] = {}
        for k, v in value.items():
            hit = fields.get(k)
            if hit is None and isinstance(k, str):
                hit = fields.get(k.casefold())
            if hit is None:
                continue
            name, ftype = hit
            if v is None:
                if name not in out:
                    _b, opt, _ = strip_type(ftype)
                    if opt:
                        out[name] = None
                continue
            out[name] = _normalize(v, ftype)
        for name, zero in _required_zeros(origin):
            if name not in out:
                out[name] = zero()
        return out
    args = get_args(base)
    if origin in (list, tuple, set, frozenset) and isinstance(value, list) and args:
        return [_normalize(x, args[0]) for x in value]
    if (origin is dict or (isinstance(origin, type) and issubclass(origin, Mapping))) and (
        isinstance(value, dict) and len(args) == 2
    ):
        return {k: _normalize(x, args[1]) for k, x in value.items()}
    return value


_field_cache: dict[Any, dict[str, tuple[str, Any]]] = {}
_zero_cache: dict[Any, list[tuple[str, Any]]] = {}


def _required_zeros(cls: Any) -> list[tuple[str, Any]]:
    """(JSON key, zero-value factory) for the fields without a default: Go leaves a field
    the JSON does not mention at its zero value."""
    hit = _zero_cache.get(cls)
    if hit is None:
        hit = _zero_cache[cls] = [
            (name, zero_factory(ftype))
            for name, (_attr, ftype, has_default) in py_fields(cls).items()
            if not has_default
        ]
    return hit


def _json_fields(cls: Any) -> dict[str, tuple[str, Any]]:
    """JSON key (exact, and casefolded) -> (key msgspec expects, annotation)."""
    hit = _field_cache.get(cls)
    if hit is not None:
        return hit
    hints = typing.get_type_hints(cls, include_extras=True)
    pairs: list[tuple[str, Any]] = []
    if issubclass(cls, msgspec.Struct):
        for f in msgspec.structs.fields(cls):
            pairs.append((f.encode_name, hints.get(f.name, f.type)))
    else:
        for df in dataclasses.fields(cls):
            pairs.append((df.name, hints.get(df.name, df.type)))
    out: dict[str, tuple[str, Any]] = {}
    for name, ftype in pairs:
        out.setdefault(name.casefold(), (name, ftype))
    for name, ftype in pairs:
        out[name] = (name, ftype)
    _field_cache[cls] = out
    return out


# -- splitting a byte stream into JSON values ------------------------------------------------

_TOKEN = re.compile(rb'["{}\[\]]')
_STRING_STOP = re.compile(rb'["\\]')
_SPACE = re.compile(rb"[ \t\r\n]*")


class JsonValueSplitter:
    """Cut a byte stream into its top-level JSON objects/arrays, decoded.

    Values must be objects or arrays (Go's decoder reads requests into a struct); anything
    else is a :class:`ProtocolError`. A value growing past ``max_size`` bytes is refused
    with :class:`FrameTooLarge` before it is buffered further.

    Incremental: the scan state (depth, inside a string, after a backslash) survives between
    reads, so each byte is scanned once however the value is cut into packets.
    """

    def __init__(self, max_size: int = 4 * 1024 * 1024) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._start = -1  # start of the value being scanned, -1: between values
        self._i = 0  # scan position
        self._depth = 0
        self._in_str = False  # the scan position is inside a string
        self._esc = False  # ... right after a backslash (the next byte is escaped)
        #: the size in bytes of each value the last :meth:`feed` returned, in order
        self.sizes: list[int] = []

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished value held (0 between values)."""
        return len(self._buf) if self._start >= 0 else 0

    def feed(self, data: bytes) -> list[Any]:
        buf = self._buf
        fresh = self._start < 0 and not buf
        buf += data
        if fresh and buf.endswith(b"\n") and len(buf) <= self.max_size:
            # Fast path: Go's encoder writes one value per line (tried on new bytes only).
            try:
                lines = [line for line in bytes(buf).splitlines() if line.strip()]
                vals = [_json_decode(line) for line in lines]
            except msgspec.DecodeError:
                pass
            else:
                for v in vals:
                    if not isinstance(v, (dict, list)):
                        raise ProtocolError(f"expected a JSON object, got {_json_kind(v)}")
                buf.clear()
                self._i = 0
                self.sizes = [len(line) + 1 for line in lines]
                return vals
        out: list[Any] = []
        self.sizes = []
        i = self._scan(buf, self._i, out)
        # drop consumed bytes
        cut = self._start if self._start >= 0 else i
        if cut:
            del buf[:cut]
            i -= cut
            if self._start >= 0:
                self._start = 0
        self._i = i
        if self._start >= 0 and len(buf) > self.max_size:
            raise FrameTooLarge(
                f"JSON value of more than {self.max_size} bytes (the limit) refused"
            )
        return out

    def _scan(self, buf: bytearray, i: int, out: list[Any]) -> int:
        """Scan from ``i``; complete values go to ``out``; returns where the scan stopped."""
        n = len(buf)
        while True:
            if self._in_str:
                if self._esc:
                    if i >= n:
                        return i
                    i += 1
                    self._esc = False
                m = _STRING_STOP.search(buf, i)
                if m is None:
                    return n
                i = m.end()
                if buf[m.start()] == 0x5C:  # a backslash: the next byte is escaped
                    self._esc = True
                    continue
                self._in_str = False
                continue
            if self._start < 0:
                i = _SPACE.match(buf, i).end()  # type: ignore[union-attr]
                if i >= n:
                    return i
                c = buf[i]
                if c not in (0x7B, 0x5B):  # { [
                    raise ProtocolError(
                        f"expected a JSON object, got {bytes(buf[i : i + 20])!r}"
                    )
                self._start = i
                self._depth = 0
            m = _TOKEN.search(buf, i)
            if m is None:
                return n
            ch = buf[m.start()]
            i = m.end()
            if ch == 0x22:  # "
                self._in_str = True
            elif ch in (0x7B, 0x5B):
                self._depth += 1
            else:
                self._depth -= 1
                if self._depth == 0:
                    self._complete(buf, i, out)

    def _complete(self, buf: bytearray, end: int, out: list[Any]) -> None:
        if end - self._start > self.max_size:
            raise FrameTooLarge(
                f"JSON value of {end - self._start} bytes is over the limit of {self.max_size}"
            )
        raw = bytes(buf[self._start : end])
        try:
            out.append(_json_decode(raw))
            self.sizes.append(len(raw))
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"invalid JSON: {exc}") from None
        self._start = -1
