"""The access log: one line per call (off by default; ``wirecall serve --access-log json``).

::

    AccessLog(server, fmt="json")            # lines to stderr
    AccessLog(server, stream=open(path, "a")) # or any text stream

A line names the time, the wire, the peer, the method, the kind (``call`` or ``stream``), the
status, the duration and the request and response sizes in bytes as the wire carried them
(``Context.request_size``/``response_size``, set by each transport; ``-``/``null`` where not
known: streams, batch items). Text::

    2026-12-07T17:40:00.123Z tcp 127.0.0.1:53122 Calculator.Add call OK 0.081ms 9 1

JSON lines (one object per line)::

    {"ts":"2026-12-07T17:40:00.123Z","wire":"tcp","peer":"127.0.0.1:53122",
     "method":"Calculator.Add","kind":"call","status":"OK","duration_ms":0.081,
     "request_bytes":9,"response_bytes":1}

A finished call is queued as a record and formatted when the queue is written: every 50 ms
or 512 lines (many calls cost one write), and at :meth:`close` (``wirecall serve`` closes it
after the drain). Formatting late is what lets the line carry the response size: the
transport encodes the reply after the observer saw the call end.
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
_time = time.time
#: the queue of lines goes to the stream this often (seconds), or at this many lines
FLUSH_AFTER = 0.05
FLUSH_LINES = 512
_encode = msgspec.json.Encoder().encode


class _Clock:
    """ISO 8601 UTC timestamps with milliseconds: the seconds formatted once a second, the
    whole stamp once a millisecond (calls finishing in the same millisecond share it)."""

    __slots__ = ("_anchor_perf", "_anchor_wall", "_last", "_ms", "_sec", "_text")

    def __init__(self) -> None:
        self._anchor_perf = -10.0
        self._anchor_wall = 0.0
        self._sec = -1
        self._ms = -1
        self._text = ""
        self._last = ""

    def wall(self, perf: float) -> float:
        """The wall-clock time of a ``perf_counter()`` reading (anchored once a second, so
        a line costs no extra clock read)."""
        if perf - self._anchor_perf > 1.0 or perf < self._anchor_perf:
            self._anchor_perf = _perf()
            self._anchor_wall = _time()
        return self._anchor_wall + (perf - self._anchor_perf)

    def stamp(self, wall: float) -> str:
        ms = int(wall * 1000)
        if ms == self._ms:
            return self._last
        sec, frac = divmod(ms, 1000)
        if sec != self._sec:
            self._sec = sec
            self._text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        self._ms = ms
        self._last = f"{self._text}.{frac:03d}Z"
        return self._last


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
        #: finished calls not yet written: (method, ctx, kind, status, seconds, wall time)
        self._pending: list[tuple[str, Context, str, str | None, float, float]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._mids: dict[tuple[str, str, str, str], str] = {}
        if server is not None:
            server.add_observer(self)

    def call_started(self, method: str, ctx: Context, on_done: OnDone) -> OnDone:
        return self._watch(method, ctx, on_done, "call")

    def stream_started(self, method: str, ctx: Context, on_done: OnDone) -> OnDone:
        return self._watch(method, ctx, on_done, "stream")

    def _watch(self, method: str, ctx: Context, on_done: OnDone, kind: str) -> OnDone:
        t0 = _perf()

        def done(result: Any, err: BaseException | None) -> None:
            t1 = _perf()
            try:
                on_done(result, err)  # the transport answers (and sets the response size)
            finally:
                self.write(method, ctx, kind, err, t1 - t0, t1)

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
            t1 = _perf()
            ctx = current_context()
            if ctx is not None:
                write(method, ctx, "call", None, t1 - t0, t1)
            return result

        return logged

    def _quote(self, text: str) -> str:
        """``text`` as a JSON string literal."""
        return _encode(text).decode()

    def _middle(self, method: str, ctx: Context, kind: str) -> str:
        """The part of a line between the time and the status (wire, peer, method, kind),
        cached: it repeats for every call of a method from one peer. The cache is bounded
        (method names come from the network)."""
        key = (method, ctx.peer, ctx.transport, kind)
        mid = self._mids.get(key)
        if mid is not None:
            return mid
        if len(self._mids) >= 4096:
            self._mids.clear()
        wire = wire_of(ctx)
        peer = ctx.peer or "-"
        if self.fmt == "json":
            mid = (f'"wire":"{wire}","peer":{self._quote(peer)},'
                   f'"method":{self._quote(method)},"kind":"{kind}"')
        else:
            # a name that is not plain printable text is quoted: a line stays one line
            if not (method.isprintable() and " " not in method):
                method = self._quote(method)
            if not (peer.isprintable() and " " not in peer):
                peer = self._quote(peer)
            mid = f"{wire} {peer} {method} {kind}"
        self._mids[key] = mid
        return mid

    def line(self, method: str, ctx: Context, kind: str, err: BaseException | str | None,
             seconds: float, wall: float | None = None) -> str:
        """The line for one call (without the newline). A method name or peer that is not
        plain printable text is written as a JSON string, so a line stays one line.
        ``err``: the call's error, or its status name."""
        status = "OK" if err is None else err if isinstance(err, str) else status_of(err)
        ts = self._clock.stamp(_time() if wall is None else wall)
        mid = self._middle(method, ctx, kind)
        req = ctx.request_size
        resp = ctx.response_size
        if self.fmt == "json":
            return (f'{{"ts":"{ts}",{mid},"status":"{status}","duration_ms":{seconds * 1e3:.3f},'
                    f'"request_bytes":{req if req >= 0 else "null"},'
                    f'"response_bytes":{resp if resp >= 0 else "null"}}}')
        return (f"{ts} {mid} {status} {seconds * 1e3:.3f}ms {req if req >= 0 else '-'} "
                f"{resp if resp >= 0 else '-'}")

    def write(self, method: str, ctx: Context, kind: str, err: BaseException | None,
              seconds: float, end: float | None = None) -> None:
        """Queue the call (``end``: ``perf_counter()`` when the call ended, to date it
        without another clock read); the queue is formatted and goes to the stream every
        :data:`FLUSH_AFTER` seconds or :data:`FLUSH_LINES` lines, whichever comes first (at
        once outside a running loop), and at :meth:`close`. The line is formatted then, not
        now: by then the transport has set ``ctx.response_size``."""
        wall = self._clock.wall(_perf() if end is None else end)
        pending = self._pending
        pending.append((method, ctx, kind, None if err is None else status_of(err), seconds,
                        wall))
        if len(pending) == FLUSH_LINES:
            # not now: the transport has not yet answered this call (its size)
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:
                self.flush()
        elif not self._flush_scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._flush_scheduled = True
            self._timer = loop.call_later(FLUSH_AFTER, self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        records, self._pending = self._pending, []
        with contextlib.suppress(OSError, ValueError):  # a closed stream: nothing to write
            if records:
                line = self.line
                lines = [line(*rec) for rec in records]
                lines.append("")
                self.stream.write("\n".join(lines))
            self.stream.flush()

    def close(self) -> None:
        self.flush()
