"""Counting what costs a peer nothing: control frames per second (sans-IO, no clock of its
own; the caller passes ``now``).

HTTP/2 SETTINGS, PING, PRIORITY and unknown frame types, or the native protocol's PING, make
the receiver work (and answer) without the sender paying for it. nghttp2 and grpc-go bound
them; a :class:`FloodGuard` per connection does it here: the connection asks it on each such
frame and closes (HTTP/2: GOAWAY ``ENHANCE_YOUR_CALM``) once the budget of a one-second window
is spent. Kept apart from the HTTP/2 backend so any backend (h2, nghttp2) can consult it.
"""

from __future__ import annotations

__all__ = ["FloodGuard"]


class FloodGuard:
    """At most ``limit`` frames per ``window`` seconds (a fixed window: a burst at a window's
    edge may reach twice the limit, never more)."""

    __slots__ = ("_count", "_start", "limit", "total", "window")

    def __init__(self, limit: int, window: float = 1.0) -> None:
        if limit <= 0 or window <= 0:
            raise ValueError("FloodGuard needs a positive limit and window")
        self.limit = limit
        self.window = window
        self._start = float("-inf")
        self._count = 0
        #: frames counted over the guard's life
        self.total = 0

    def hit(self, now: float, n: int = 1) -> bool:
        """Count ``n`` frames seen at ``now``; True once the window's budget is exceeded."""
        if now - self._start >= self.window:
            self._start = now
            self._count = 0
        self._count += n
        self.total += n
        return self._count > self.limit
