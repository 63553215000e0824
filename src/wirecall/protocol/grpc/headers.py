"""gRPC's header grammar, sans-IO: content types, ``grpc-timeout``, ``grpc-message``
percent-encoding, and custom metadata (``-bin`` values base64) to and from header pairs."""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

from ...status import Status

__all__ = [
    "ACCEPT_ENCODING",
    "CALL_STREAM_HEADER",
    "CALL_UNARY_HEADER",
    "COMPRESSIONS",
    "CONTENT_TYPE",
    "RESERVED_HEADERS",
    "USER_AGENT",
    "decode_metadata",
    "encode_metadata",
    "format_timeout",
    "parse_request",
    "parse_status",
    "parse_timeout",
    "percent_decode",
    "percent_encode",
]

CONTENT_TYPE = "application/grpc"
ACCEPT_ENCODING = "identity,gzip"  # what this side can inflate (sent as grpc-accept-encoding)
COMPRESSIONS = ("identity", "gzip")
USER_AGENT = "wirecall-grpc/0.1"
#: the header a wirecall client adds to say how its caller made the call, a unary call or a
#: stream (the server then answers a method called in a mode it does not have with the error
#: naming its mode; gRPC itself carries no call mode, other peers ignore the header)
CALL_UNARY_HEADER = ("wirecall-call", "unary")
CALL_STREAM_HEADER = ("wirecall-call", "stream")
_MAX_TIMEOUT_DIGITS = 8

# Headers the gRPC layer owns; they never show up as (or can be set through) custom metadata.
_RESERVED = frozenset(
    {
        "content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding",
        "grpc-status", "grpc-message", "grpc-status-details-bin", "user-agent",
        "content-length", "grpc-previous-rpc-attempts", "grpc-retry-pushback-ms",
        "connection", "host", "accept-encoding", "content-encoding",
    }
)
_RESERVED_B = frozenset(k.encode() for k in _RESERVED)
#: the reserved header names as bytes (never custom metadata)
RESERVED_HEADERS = _RESERVED_B


# -- small codecs of the gRPC header grammar ----------------------------------------------

_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def parse_timeout(value: str) -> float:
    """``grpc-timeout`` to seconds: 1-8 ASCII digits then one of ``HMSmun``."""
    if not 2 <= len(value) <= _MAX_TIMEOUT_DIGITS + 1:
        raise ValueError(f"bad grpc-timeout {value!r}: 1-8 digits and a unit")
    digits, unit = value[:-1], value[-1]
    if not digits.isdigit() or not digits.isascii() or unit not in _TIMEOUT_UNITS:
        raise ValueError(f"bad grpc-timeout {value!r}: want digits and one of H M S m u n")
    return int(digits) * _TIMEOUT_UNITS[unit]


def format_timeout(seconds: float) -> str:
    """Seconds to the most precise ``grpc-timeout`` that fits in 8 digits."""
    seconds = max(0.0, seconds)
    for unit, scale in (("n", 1e-9), ("u", 1e-6), ("m", 1e-3), ("S", 1.0), ("M", 60.0)):
        n = int(seconds / scale)
        if n < 10**_MAX_TIMEOUT_DIGITS:
            return f"{n}{unit}"
    return f"{min(int(seconds / 3600.0), 10**_MAX_TIMEOUT_DIGITS - 1)}H"


_PCT_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if c != 0x25)


def percent_encode(message: str) -> str:
    """``grpc-message`` encoding: printable ASCII except ``%`` as is, the rest ``%XX`` of UTF-8."""
    return urllib.parse.quote(message, safe=_PCT_SAFE)


def percent_decode(value: str) -> str:
    """Decode ``grpc-message``; malformed escapes are kept literally (as the spec asks)."""
    return urllib.parse.unquote(value, errors="replace")


def encode_metadata(metadata: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Custom metadata to header pairs: keys lower-cased, ``-bin`` values base64 (no padding)."""
    out: list[tuple[str, str]] = []
    if not metadata:
        return out
    for key, value in metadata.items():
        k = key.lower()
        if k.startswith(":") or k in _RESERVED:
            raise ValueError(f"metadata key {key!r} is reserved by gRPC")
        if k.endswith("-bin"):
            raw = value if isinstance(value, (bytes, bytearray)) else str(value).encode()
            out.append((k, base64.b64encode(raw).decode("ascii").rstrip("=")))
        else:
            if isinstance(value, (bytes, bytearray)):
                value = value.decode("ascii")
            out.append((k, str(value)))
    return out


def decode_metadata(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, Any]:
    """Header pairs to custom metadata (``-bin`` values as bytes); reserved headers dropped.
    Repeated keys are joined with ``,`` (the HTTP rule; ``-bin`` values concatenated)."""
    out: dict[str, Any] = {}
    skip = _RESERVED_B
    for rk, rv in headers:
        if rk in skip or rk[:1] == b":":  # (most headers of a call: decided on the bytes)
            continue
        k = rk.decode("ascii", "replace")
        if k in _RESERVED:
            continue
        if k.endswith("-bin"):
            try:
                val: Any = b"".join(
                    base64.b64decode(part.strip() + b"=" * (-len(part.strip()) % 4))
                    for part in rv.split(b",")
                )
            except (binascii.Error, ValueError):
                continue  # undecodable binary header: ignored, as gRPC implementations do
            out[k] = out[k] + val if k in out else val
        else:
            sv = rv.decode("latin-1")
            out[k] = f"{out[k]},{sv}" if k in out else sv
    return out


_STATUS_BY_BYTES = {str(int(c)).encode(): c for c in Status}


def parse_status(value: bytes) -> Status:
    """A ``grpc-status`` value (``UNKNOWN`` for one that is not a status code)."""
    code = _STATUS_BY_BYTES.get(value)  # (b"0" ... b"16": no enum call)
    if code is not None:
        return code
    try:
        return Status(int(value))
    except ValueError:
        return Status.UNKNOWN


#: request header lists seen before, without grpc-timeout (the same call made again):
#: their fields, parsed once; emptied when full (a peer sending ever-new lists only empties it)
_REQUESTS: dict[tuple[Any, ...], tuple[str, str, str, str, str, bool, dict[str, Any]]] = {}
RequestFields = tuple[str, str, str, str, "float | None", str, bool, dict[str, Any]]


def parse_request(headers: list[tuple[bytes, bytes]]) -> RequestFields:
    """A request's header block: ``(path, method, content-type, authority, timeout,
    grpc-encoding, accepts gzip, custom metadata)`` (a fresh metadata dict each time).
    A bad ``grpc-timeout`` raises ``ValueError``."""
    key = tuple(headers)
    hit = _REQUESTS.get(key)
    if hit is not None:
        path, method, ctype, authority, encoding, accept_gzip, md = hit
        return path, method, ctype, authority, None, encoding, accept_gzip, dict(md)
    path = method = ctype = authority = ""
    timeout: float | None = None
    encoding = "identity"
    accept_gzip = False
    rest = []  # custom metadata (decoded below); the reserved headers are dropped
    reserved = RESERVED_HEADERS
    for kv in headers:
        k, v = kv
        if k[:1] == b":":
            if k == b":path":
                path = v.decode("latin-1")
            elif k == b":method":
                method = v.decode("latin-1")
            elif k == b":authority":
                authority = v.decode("latin-1")
        elif k == b"content-type":
            ctype = v.decode("latin-1")
        elif k == b"grpc-timeout":
            timeout = parse_timeout(v.decode("latin-1"))
        elif k == b"grpc-encoding":
            encoding = v.decode("latin-1")
        elif k == b"grpc-accept-encoding":
            accept_gzip = accept_gzip or b"gzip" in (p.strip() for p in v.split(b","))
        elif k not in reserved:
            rest.append(kv)
    md = decode_metadata(rest) if rest else {}
    if timeout is None:
        if len(_REQUESTS) >= 64:
            _REQUESTS.clear()
        _REQUESTS[key] = (path, method, ctype, authority, encoding, accept_gzip, dict(md))
    return path, method, ctype, authority, timeout, encoding, accept_gzip, md
