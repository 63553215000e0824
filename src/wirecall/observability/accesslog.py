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

from ..context import CURRENT, Context
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
    whole stamp once a millisecond (lines of the same millisecond share it)."""

    __slots__ = ("_last", "_ms", "_sec", "_text")

    def __init__(self) -> None:
        self._sec = -1
        self._ms = -1
        self._text = ""
        self._last = ""

    def stamp(self, wall: float) -> str:
        return self.stamp_ms(int(wall * 1000))

    def stamp_ms(self, ms: int) -> str:
        """The stamp of ``ms`` milliseconds since the epoch."""
        if ms == self._ms:
            return self._last
        sec, frac = divmod(ms, 1000)
        if sec != self._sec:
            self._sec = sec
            self._text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        self._ms = ms
        self._last = f"{self._text}.{frac:03d}Z"
        return self._last


def _millis(us: int) -> str:
    """``us`` microseconds as milliseconds with three decimals (``81`` -> ``"0.081"``)."""
    return f"{us // 1000}.{us % 1000:03d}"


class AccessLog:
    """A server observer writing one line per finished call or stream."""

    def __init__(self, server: Server | None = None, *, fmt: str = "text",
                 stream: IO[str] | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"access log format must be one of {FORMATS}, not {fmt!r}")
        self.fmt = fmt
        self.stream: IO[str] = stream if stream is not None else sys.stderr
        self._clock = _Clock()
        #: finished calls not yet written: (method, ctx, kind, status or None for OK,
        #: seconds, perf_counter() at the end). One list for the log's life (the fast-lane
        #: wrappers hold it): a flush empties it.
        self._pending: list[tuple[str, Context, str, str | None, float, float]] = []
        self._timer: asyncio.TimerHandle | None = None
        #: (method, peer, wire, kind) -> the part of the line naming them (:meth:`_mid`)
        self._mids: dict[tuple[str, str, str, str], str] = {}
        #: (microseconds, request bytes, response bytes) -> the end of a line (bounded)
        self._suffixes: dict[tuple[int, int, int], str] = {}
        self._null = "null" if fmt == "json" else "-"
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
        """The native fast lane's inline handler, logged (keeps the lane open). A call costs
        two clock reads and a tuple on the queue; the line is made when the queue is
        written."""
        write, pending, queued, get_ctx, perf = (
            self.write, self._pending, self._queued, CURRENT.get, _perf)

        def logged(*args: Any) -> Any:
            t0 = perf()
            try:
                result = handler(*args)
            except BaseException as exc:
                ctx = get_ctx()
                if ctx is not None:
                    write(method, ctx, "call", exc, perf() - t0)
                raise
            t1 = perf()
            ctx = get_ctx()
            if ctx is not None:
                pending.append((method, ctx, "call", None, t1 - t0, t1))
                n = len(pending)
                if n == 1 or n == FLUSH_LINES:
                    queued(n)
            return result

        return logged

    def _quote(self, text: str) -> str:
        """``text`` as a JSON string literal."""
        return _encode(text).decode()

    def _middle(self, method: str, ctx: Context, kind: str) -> str:
        """The part of a line between the time and the status (wire, peer, method, kind)."""
        wire = wire_of(ctx)
        peer = ctx.peer or "-"
        if self.fmt == "json":
            return (f'"wire":"{wire}","peer":{self._quote(peer)},'
                    f'"method":{self._quote(method)},"kind":"{kind}"')
        # a name that is not plain printable text is quoted: a line stays one line
        if not (method.isprintable() and " " not in method):
            method = self._quote(method)
        if not (peer.isprintable() and " " not in peer):
            peer = self._quote(peer)
        return f"{wire} {peer} {method} {kind}"

    def _mid(self, method: str, ctx: Context, kind: str) -> str:
        """:meth:`_middle`, cached: it repeats for every call of a method from one peer (the
        cache is bounded: names come from the network)."""
        key = (method, ctx.peer, ctx.transport, kind)
        mid = self._mids.get(key)
        if mid is None:
            if len(self._mids) >= 4096:
                self._mids.clear()
            mid = self._mids[key] = self._middle(method, ctx, kind)
        return mid

    def _prefix(self, method: str, ctx: Context, kind: str, status: str | None,
                ms: int) -> str:
        """A line up to its duration: time, wire, peer, method, kind, status."""
        ts = self._clock.stamp_ms(ms)
        mid = self._mid(method, ctx, kind)
        if self.fmt == "json":
            return f'{{"ts":"{ts}",{mid},"status":"{status or "OK"}","duration_ms":'
        return f"{ts} {mid} {status or 'OK'} "

    def _suffix(self, key: tuple[int, int, int]) -> str:
        """A line from its duration on (``key``: microseconds, request and response bytes),
        cached (bounded): durations and sizes repeat."""
        us, req, resp = key
        null = self._null
        if self.fmt == "json":
            text = (f'{_millis(us)},"request_bytes":{req if req >= 0 else null},'
                    f'"response_bytes":{resp if resp >= 0 else null}}}')
        else:
            text = f"{_millis(us)}ms {req if req >= 0 else null} {resp if resp >= 0 else null}"
        if len(self._suffixes) >= 8192:
            self._suffixes.clear()
        self._suffixes[key] = text
        return text

    def _lines(self, records: list[tuple[str, Context, str, str | None, float, float]],
               offset: float) -> list[str]:
        """The lines of ``records`` (``offset``: wall clock minus ``perf_counter()``): each
        line is a prefix (time to status), shared by consecutive records of one millisecond,
        method, peer, kind and status, and a suffix (duration and sizes) looked up by value.
        No call per line in the common case."""
        suffixes, suffix_of, prefix_of = self._suffixes, self._suffix, self._prefix
        out = []
        last_method = last_peer = last_kind = last_wire = last_status = None
        prefix = ""
        lo = hi = -1.0  # the perf_counter() bounds of the prefix's millisecond
        for method, ctx, kind, status, seconds, end in records:
            if (end >= hi or end < lo or method is not last_method or ctx.peer is not last_peer
                    or status is not last_status or kind is not last_kind
                    or ctx.transport is not last_wire):
                ms = int((end + offset) * 1000)
                lo = ms / 1000 - offset
                hi = lo + 0.001
                prefix = prefix_of(method, ctx, kind, status, ms)
                last_method, last_peer, last_kind, last_wire, last_status = (
                    method, ctx.peer, kind, ctx.transport, status)
            key = (int(seconds * 1e6 + 0.5), ctx.request_size, ctx.response_size)
            suffix = suffixes.get(key)
            out.append(prefix + (suffix if suffix is not None else suffix_of(key)))
        return out

    def line(self, method: str, ctx: Context, kind: str, err: BaseException | str | None,
             seconds: float, wall: float | None = None) -> str:
        """The line for one call (without the newline). A method name or peer that is not
        plain printable text is written as a JSON string, so a line stays one line.
        ``err``: the call's error, or its status name."""
        status = None if err is None else err if isinstance(err, str) else status_of(err)
        end = _perf()
        offset = (_time() if wall is None else wall) - end
        return self._lines([(method, ctx, kind, status, seconds, end)], offset)[0]

    def write(self, method: str, ctx: Context, kind: str, err: BaseException | None,
              seconds: float, end: float | None = None) -> None:
        """Queue the call (``end``: ``perf_counter()`` when the call ended, to date it
        without another clock read); the queue is formatted and goes to the stream every
        :data:`FLUSH_AFTER` seconds or :data:`FLUSH_LINES` lines, whichever comes first (at
        once outside a running loop), and at :meth:`close`. The line is formatted then, not
        now: by then the transport has set ``ctx.response_size``."""
        pending = self._pending
        pending.append((method, ctx, kind, None if err is None else status_of(err), seconds,
                        _perf() if end is None else end))
        n = len(pending)
        if n == 1 or n == FLUSH_LINES:
            self._queued(n)

    def _queued(self, n: int) -> None:
        """The queue has ``n`` lines (1: a flush after :data:`FLUSH_AFTER`; :data:`FLUSH_LINES`:
        a flush at the next loop turn, once the transport has answered this call)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if n == 1:
            if self._timer is None:
                self._timer = loop.call_later(FLUSH_AFTER, self.flush)
        else:
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Format the queued calls and write them to the stream (one write), then flush it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending = self._pending
        records = pending[:]
        pending.clear()
        with contextlib.suppress(OSError, ValueError):  # a closed stream: nothing to write
            if records:
                lines = self._lines(records, _time() - _perf())
                lines.append("")
                self.stream.write("\n".join(lines))
            self.stream.flush()

    def close(self) -> None:
        self.flush()
