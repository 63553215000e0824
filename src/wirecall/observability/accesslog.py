"""The access log: one line per call (off by default; ``wirecall serve --access-log json``).

::

    AccessLog(server, fmt="json")            # lines to stderr
    AccessLog(server, stream=open(path, "a")) # or any text stream

A line names the time, the wire, the peer, the method, the kind (``call`` or ``stream``), the
status and the duration. Text::

    2026-12-07T17:40:00.123Z tcp 127.0.0.1:53122 Calculator.Add call OK 0.081ms

JSON lines (one object per line)::

    {"ts":"2026-12-07T17:40:00.123Z","wire":"tcp","peer":"127.0.0.1:53122",
     "method":"Calculator.Add","kind":"call","status":"OK","duration_ms":0.081}

Lines are written to the stream as calls end and flushed once per event-loop iteration (many
calls finishing together cost one flush), and at :meth:`close`. Request and response sizes
are not in the line: the observer sees calls after decoding (see docs/observability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

import msgspec

from ..context import Context, current_context
from ..interceptors import OnDone
from .stats import status_of, wire_of

if TYPE_CHECKING:
    from ..server import Server

__all__ = ["FORMATS", "AccessLog"]

FORMATS = ("text", "json")
_perf = time.perf_counter
_encode = msgspec.json.Encoder().encode


class _Clock:
    """ISO 8601 UTC timestamps with milliseconds; the seconds part formatted once a second."""

    __slots__ = ("_sec", "_text")

    def __init__(self) -> None:
        self._sec = -1
        self._text = ""

    def stamp(self, wall: float) -> str:
        sec = int(wall)
        if sec != self._sec:
            self._sec = sec
            self._text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{self._text}.{int((wall - sec) * 1000):03d}Z"


class AccessLog:
    """A server observer writing one line per finished call or stream."""

    def __init__(self, server: Server | None = None, *, fmt: str = "text",
                 stream: IO[str] | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"access log format must be one of {FORMATS}, not {fmt!r}")
        self.fmt = fmt
        self.stream: IO[str] = stream if stream is not None else sys.stderr
        self._flush_scheduled = False
        self._clock = _Clock()
        if server is not None:
            server.add_observer(self)

    def call_started(self, method: str, ctx: Context, on_done: OnDone) -> OnDone:
        return self._watch(method, ctx, on_done, "call")

    def stream_started(self, method: str, ctx: Context, on_done: OnDone) -> OnDone:
        return self._watch(method, ctx, on_done, "stream")

    def _watch(self, method: str, ctx: Context, on_done: OnDone, kind: str) -> OnDone:
        t0 = _perf()

        def done(result: Any, err: BaseException | None) -> None:
            try:
                self.write(method, ctx, kind, err, _perf() - t0)
            finally:
                on_done(result, err)

        return done

    def fast_handler(self, method: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        """The native fast lane's inline handler, logged (keeps the lane open)."""
        write = self.write

        def logged(*args: Any) -> Any:
            t0 = _perf()
            try:
                result = handler(*args)
            except BaseException as exc:
                ctx = current_context()
                if ctx is not None:
                    write(method, ctx, "call", exc, _perf() - t0)
                raise
            ctx = current_context()
            if ctx is not None:
                write(method, ctx, "call", None, _perf() - t0)
            return result

        return logged

    def line(self, method: str, ctx: Context, kind: str, err: BaseException | None,
             seconds: float, wall: float | None = None) -> str:
        """The line for one call (without the newline)."""
        status = "OK" if err is None else status_of(err)
        ts = self._clock.stamp(time.time() if wall is None else wall)
        wire = wire_of(ctx)
        peer = ctx.peer or "-"
        ms = round(seconds * 1e3, 3)
        if self.fmt == "json":
            return _encode({"ts": ts, "wire": wire, "peer": peer, "method": method,
                            "kind": kind, "status": status, "duration_ms": ms}).decode()
        return f"{ts} {wire} {peer} {method} {kind} {status} {ms:.3f}ms"

    def write(self, method: str, ctx: Context, kind: str, err: BaseException | None,
              seconds: float) -> None:
        self.stream.write(self.line(method, ctx, kind, err, seconds) + "\n")
        if not self._flush_scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._flush_scheduled = True
            loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        with contextlib.suppress(OSError, ValueError):  # a closed stream: nothing to write
            self.stream.flush()

    def close(self) -> None:
        self.flush()
