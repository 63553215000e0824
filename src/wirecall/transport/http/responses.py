"""The bytes of the HTTP/1.1 server's answers: status line, ``Date`` (cached per second),
``Content-Type``/``Content-Length``, ``Connection: close``."""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import Any

__all__ = ["date", "response", "text"]

_REASONS = {
    200: b"OK",
    204: b"No Content",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    415: b"Unsupported Media Type",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}
_date_cache: list[Any] = [0, b""]


def date() -> bytes:
    """The ``Date`` header's value (formatted once per second)."""
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True).encode()
    d: bytes = _date_cache[1]
    return d


def response(
    status: int,
    body: bytes = b"",
    content_type: bytes = b"application/json",
    close: bool = False,
    extra: bytes = b"",
) -> bytes:
    """A whole response: head and body (none for 204)."""
    head = b"HTTP/1.1 %d %s\r\nDate: %s\r\nServer: wirecall\r\n" % (
        status,
        _REASONS.get(status, b"Unknown"),
        date(),
    )
    if status != 204:
        head += b"Content-Type: %s\r\nContent-Length: %d\r\n" % (content_type, len(body))
    if close:
        head += b"Connection: close\r\n"
    return head + extra + b"\r\n" + body


def text(status: int, message: str, close: bool = False, extra: bytes = b"") -> bytes:
    """A plain-text response (a refusal, a probe's answer)."""
    return response(status, message.encode() + b"\n", b"text/plain; charset=utf-8", close, extra)
