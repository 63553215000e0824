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
from typing import IO, TYPE_CHECKING, Any

import msgspec

from ..context import Context
from ..errors import RpcError
from ..interceptors import OnDone
from .stats import wire_of

if TYPE_CHECKING:
    from ..server import Server

__all__ = ["FORMATS", "AccessLog"]

FORMATS = ("text", "json")
_perf = time.perf_counter
_encode = msgspec.json.Encoder().encode


def _timestamp(wall: float) -> str:
    t = time.gmtime(wall)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(wall % 1 * 1000):03d}Z"


class AccessLog:
    """A server observer writing one line per finished call or stream."""

    def __init__(self, server: Server | None = None, *, fmt: str = "text",
                 stream: IO[str] | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"access log format must be one of {FORMATS}, not {fmt!r}")
        self.fmt = fmt
        self.stream: IO[str] = stream if stream is not None else sys.stderr
        self._flush_scheduled = False
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

    def line(self, method: str, ctx: Context, kind: str, err: BaseException | None,
             seconds: float, wall: float | None = None) -> str:
        """The line for one call (without the newline)."""
        status = "OK" if err is None else (
            err.status.name if isinstance(err, RpcError) else "UNKNOWN")
        ts = _timestamp(time.time() if wall is None else wall)
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
