"""asyncio adapter for wirecall's native protocol over TCP and Unix sockets.

The only place the native protocol meets sockets. Server: one :class:`ServerProtocol` per
connection feeding :class:`~wirecall.server.Server.start_call`; every complete frame read is
dispatched, and all answers ready at the end of the read go out in one write. Client:
:class:`TcpClientConnection` multiplexes calls by id over one socket, coalescing the frames
queued in one loop iteration into one write.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
import typing
import zlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from .. import codec as codecs
from ..context import EMPTY_METADATA, Context, _current
from ..errors import (
    DeadlineExceeded,
    FrameTooLarge,
    Internal,
    InvalidArgument,
    ProtocolError,
    RpcError,
    Unavailable,
)
from ..protocol import frames as fr
from ..status import Status
from . import streams, tcp_stream
from .base import URL, ClientConnection
from .streams import (
    WRITE_BATCH,
    CoalescedWriter,
    ConnectionListener,
    listen,
    peer_name,
    set_nodelay,
)

if TYPE_CHECKING:
    from ..server import Server

__all__ = ["ServerProtocol", "TcpClientConnection", "connect", "error_from_frame", "serve"]

log = logging.getLogger("wirecall.tcp")

COMPRESS_THRESHOLD_DEFAULT: int | None = None  # bytes; None: never compress
#: streams.WRITE_BATCH messages, counted in queued frame parts (a reply is 2, a request 3)
SERVER_WRITE_PARTS = 2 * WRITE_BATCH
CLIENT_WRITE_PARTS = 3 * WRITE_BATCH


def error_from_frame(codec: codecs.Codec, ev: fr.ErrorReceived) -> RpcError:
    """The :class:`RpcError` an ERROR frame carries (both native clients use this)."""
    details = None
    if ev.details:
        try:
            details = codec.decode(ev.details)
        except msgspec.DecodeError:
            details = ev.details
    try:
        status = Status(ev.status)
    except ValueError:
        status = Status.UNKNOWN
    return RpcError(status, ev.message, details)


def _encode_error_details(codec: codecs.Codec, details: Any) -> bytes:
    if details is None:
        return b""
    try:
        return codec.encode(details)
    except Exception:
        return codec.encode(str(details))


class ServerProtocol(CoalescedWriter, asyncio.Protocol):
    """One accepted connection speaking the native protocol."""

    conn: fr.FrameConnection

    def __init__(
        self, server: Server, listener: ConnectionListener | None = None, **opts: Any
    ) -> None:
        self.server = server
        self.listener = listener
        self.conn = fr.FrameConnection(
            client=False,
            max_frame_size=server.max_message_size,
            codecs=frozenset(_codec_ids()),
        )
        self.codec: codecs.Codec = codecs.MSGPACK_CODEC
        self._decode = self.codec.decode
        self._encode = self.codec.encode
        self._module: Any = getattr(self.codec, "msgspec_module", None)
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.calls: dict[int, Context] = {}
        self.last_call_id = 0
        self.going_away = False  # the client sent GOAWAY
        self.going_away_sent = False  # this server sent GOAWAY: new calls are refused
        self._flush_scheduled = False
        self._in_read = False
        self._loop = asyncio.get_event_loop()
        self._compress_threshold: int | None = opts.get("compress_threshold")
        self._last_activity = time.monotonic()
        self._keepalive: asyncio.TimerHandle | None = None
        self._ping_outstanding = False
        self._idle_mark = (0, time.monotonic())  # (last call id seen, since when)
        self._writable = True  # false while the transport's write buffer is over its mark
        self._backlog: collections.deque[fr.Event] = collections.deque()
        self._max_calls: int = server.max_concurrent_calls
        #: the fast lane, per method: (handler, params decoder), or None where it does not apply
        #: (shared per codec module by the registry, which empties it when methods change)
        self._lane: dict[str, tuple[Callable[..., Any], Any] | None] = (
            server.registry.lanes.setdefault(self._module, {})
        )
        self.conn.set_fast_callbacks(on_request=self._on_plain_request)

    # -- connection lifecycle ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)  # uvloop's is no subclass
        set_nodelay(transport)
        self.peer = peer_name(transport)
        if self.listener is not None:
            self.listener.connections.add(self)
        self._arm_keepalive()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.listener is not None:
            self.listener.connections.discard(self)
        if self._keepalive is not None:
            self._keepalive.cancel()
        calls, self.calls = self.calls, {}
        for ctx in calls.values():
            ctx.cancel()
        self.transport = None

    def _arm_keepalive(self) -> None:
        ka = self.server.keepalive
        idle = self.server.idle_timeout
        period = min(x for x in (ka, idle, 3600.0) if x)
        self._keepalive = self._loop.call_later(period, self._on_keepalive)

    def _on_keepalive(self) -> None:
        if self.transport is None:
            return
        now = time.monotonic()
        quiet = now - self._last_activity
        idle = self.server.idle_timeout
        if idle:
            # idle means no call, whatever else arrives (a client's keepalive PINGs included)
            if self.last_call_id != self._idle_mark[0] or self.calls:
                self._idle_mark = (self.last_call_id, now)
            elif now - self._idle_mark[1] >= idle:
                self.close_with(Status.UNAVAILABLE, f"no call for {now - self._idle_mark[1]:.1f}s")
                return
        ka = self.server.keepalive
        if ka and quiet >= ka:
            if self._ping_outstanding:
                log.info("%s: keepalive ping unanswered, closing", self.peer)
                self.transport.abort()
                return
            self._ping_outstanding = True
            self.conn.send_ping(b"wirecall")
            self._flush()
        self._arm_keepalive()

    def close_with(self, status: int, message: str) -> None:
        if self.transport is None:
            return
        self.conn.fail(message, status)
        self._flush()
        self.transport.close()

    # -- reading -----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._last_activity = time.monotonic()
        self._in_read = True  # plain requests are handled while the parser runs
        try:
            events = self.conn.receive_data(data)
        except ProtocolError as exc:
            self._in_read = False
            log.warning("closing connection from %s: %s", self.peer, exc.message)
            self.close_with(exc.status, exc.message)
            return
        if not events:  # the hot path: every frame was a plain request, already handled
            self._in_read = False
            out = self.conn.data_to_send()
            if out and self.transport is not None:
                self.transport.write(out)
            return
        if self._backlog:  # stalled on a slow reader: keep the order
            self._backlog.extend(events)
            self._in_read = False
            self._flush()
            return
        self._process(events)

    # Backpressure: replies are queued as requests are handled; once a read's replies pass
    # FLUSH_AT bytes they are written, and if the transport then reports its buffer full
    # (pause_writing), the rest of the read waits in the backlog and reading stops until the
    # peer drains it (resume_writing). A client that never reads holds at most one read's
    # worth of requests and the transport's high-water mark of replies.
    FLUSH_AT = 256 * 1024

    def pause_writing(self) -> None:
        self._writable = False
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._writable = True
        if self._backlog:
            events = list(self._backlog)
            self._backlog.clear()
            self._process(events)
        if self._writable and not self._backlog and self.transport is not None:
            self.transport.resume_reading()

    def _process(self, events: list[fr.Event]) -> None:
        self._in_read = True
        try:
            for i, ev in enumerate(events):
                if not self._writable:
                    self._backlog.extend(events[i:])
                    break
                self._process_one(ev)
        finally:
            self._in_read = False
        self._flush()

    def _process_one(self, ev: fr.Event) -> None:
        t = type(ev)
        conn = self.conn
        if t is fr.RequestReceived:
            if len(self.calls) >= self._max_calls:
                conn.send_error(
                    ev.call_id,  # type: ignore[attr-defined]
                    Status.RESOURCE_EXHAUSTED,
                    f"too many calls in flight on this connection (limit {self._max_calls})",
                )
            else:
                self._on_request(ev)  # type: ignore[arg-type]
            if conn.queued_bytes >= self.FLUSH_AT or len(conn._out) >= SERVER_WRITE_PARTS:
                self._flush()  # may call pause_writing()
        elif t is fr.CancelReceived:
            ctx = self.calls.pop(ev.call_id, None)  # type: ignore[attr-defined]
            if ctx is not None:
                ctx.cancel()
        elif t is fr.PrefaceReceived:
            c = codecs.codec_by_id(ev.codec_id)  # type: ignore[attr-defined]
            if c is not None:
                self.codec = c
                self._decode = c.decode
                self._encode = c.encode
                self._module = getattr(c, "msgspec_module", None)
                self._lane = self.server.registry.lanes.setdefault(self._module, {})
        elif t is fr.FrameRefused:
            self._on_refused(ev)  # type: ignore[arg-type]
        elif t is fr.PongReceived:
            self._ping_outstanding = False
        elif t is fr.GoAwayReceived:
            self.going_away = True
        elif t is fr.MessageReceived or t is fr.WindowUpdated:
            self._on_stream_frame(ev)

    def _on_stream_frame(self, ev: fr.Event) -> None:
        tcp_stream.on_stream_frame(self, ev)

    def _on_refused(self, ev: fr.FrameRefused) -> None:
        msg = (
            f"message of {ev.size} bytes exceeds the server limit of "
            f"{self.conn.max_frame_size} bytes"
        )
        if ev.frame_type == fr.REQUEST:
            self.conn.send_error(ev.call_id, Status.RESOURCE_EXHAUSTED, msg)
        else:
            log.warning("%s: refused oversized frame: %s", self.peer, msg)

    def _fast_lane(self, method: str) -> tuple[Callable[..., Any], Any] | None:
        spec = self.server.registry.methods.get(method)
        lane = None
        if spec is not None and spec.fast and self._module is not None:
            dec = spec.array_decoder(self._module)
            if dec is not None:
                lane = (spec.func, dec)
        self._lane[method] = lane
        return lane

    def _run_fast(
        self, cid: int, lane: tuple[Callable[..., Any], Any], body: bytes | memoryview,
        ctx: Context,
    ) -> bool:
        """The fast lane: params decoded straight into the handler's annotated types, the
        inline handler run now, its reply queued. False when the params do not decode that
        way (the general path then reports them with its own messages)."""
        try:
            args = lane[1].decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return False
        token = _current.set(ctx)
        try:
            result = lane[0](*args)
        except BaseException as exc:  # every failure goes to the caller
            self._reply_error(cid, ctx, exc)
            return True
        finally:
            _current.reset(token)
        if self._compress_threshold is None:
            try:
                self.conn.send_response(cid, self._encode(result))
                return True
            except Exception:  # not encodable, too large: reported by _reply
                pass
        self._reply(cid, ctx, result)
        return True

    def _on_plain_request(self, cid: int, method: str, body: bytes | memoryview) -> None:
        """A REQUEST with no flags, straight from the parser (see ``set_fast_callbacks``).

        The fast lane: an inline handler taking no Context, params decoded straight into its
        annotated types, run here, the reply queued; anything else becomes a
        :class:`~wirecall.protocol.frames.RequestReceived` for the general path.
        """
        if cid > self.last_call_id:
            self.last_call_id = cid
        if self._writable and not self._backlog:
            lane = self._lane.get(method)
            if lane is None and method not in self._lane:
                lane = self._fast_lane(method)
            if (
                lane is not None
                and not self.server.interceptors
                and not self.going_away_sent
                and self._run_fast(
                    cid, lane, body, Context(method, EMPTY_METADATA, None, self.peer, "tcp")
                )
            ):
                conn = self.conn
                if len(conn._out) >= SERVER_WRITE_PARTS or conn._out_size >= self.FLUSH_AT:
                    self._flush()  # may call pause_writing()
                return
        ev = fr.RequestReceived(cid, method, body, None, None, False, False, False)
        if self._backlog or not self._writable:
            self._backlog.append(ev)
        else:
            self._process_one(ev)

    def _on_request(self, ev: fr.RequestReceived) -> None:
        cid = ev.call_id
        if cid > self.last_call_id:
            self.last_call_id = cid
        if ev.stream:
            self._on_stream_request(ev)
            return
        timeout = ev.timeout
        ctx = Context(
            ev.method,
            ev.metadata or EMPTY_METADATA,
            None if timeout is None else time.monotonic() + timeout,
            self.peer,
            "tcp",
        )
        server = self.server
        spec = server.registry.methods.get(ev.method)
        body = ev.body
        if (
            not ev.compressed
            and not server.interceptors
            and not self.going_away_sent
            and (timeout is None or timeout > 0)
        ):
            lane = self._lane.get(ev.method)
            if lane is None and ev.method not in self._lane:
                lane = self._fast_lane(ev.method)
            if lane is not None and self._run_fast(cid, lane, body, ctx):
                return
        try:
            if ev.compressed:
                body = fr.decompress(body, self.conn.max_frame_size)
            if self.codec.id != 3:
                params = self._decode(body) if len(body) else None
            else:  # protobuf decodes into the method's request class
                params = tcp_stream.typed_params(
                    self.codec, self.server.registry.methods.get(ev.method), body
                )
        except (msgspec.DecodeError, ProtocolError) as exc:
            msg = exc.message if isinstance(exc, RpcError) else str(exc)
            self.conn.send_error(
                cid, Status.INVALID_ARGUMENT, f"cannot decode params of {ev.method}: {msg}"
            )
            return
        if self.going_away_sent:
            self.conn.send_error(cid, Status.UNAVAILABLE, "server is shutting down")
            return
        if spec is not None and server.runs_inline(spec):
            try:
                _, args, kwargs = server.prepare(spec, params, ctx)
                result = server.call_inline(spec, args, kwargs, ctx)
            except RpcError as exc:
                self._reply_error(cid, ctx, exc)
            else:
                self._reply(cid, ctx, result)
            return
        self.calls[cid] = ctx
        server.start_call(spec or ev.method, params, ctx,
                          lambda r, e: self._done(cid, ctx, r, e))

    def _on_stream_request(self, ev: fr.RequestReceived) -> None:
        tcp_stream.on_stream_request(self, ev)

    def _done(self, cid: int, ctx: Context, result: Any, exc: BaseException | None) -> None:
        if self.calls.get(cid) is not ctx:
            return  # cancelled by the client, or the connection is gone
        del self.calls[cid]
        if self.transport is None:
            return
        if exc is None:
            self._reply(cid, ctx, result)
        else:
            self._reply_error(cid, ctx, exc)
        if not self._in_read:
            self._schedule_flush()

    def _reply(self, cid: int, ctx: Context, result: Any) -> None:
        conn = self.conn
        try:
            body = self._encode(result)
        except Exception as enc_err:
            self._reply_error(
                cid, ctx, Internal(message=f"cannot encode the result of {ctx.method}: {enc_err}")
            )
            return
        compressed = False
        th = self._compress_threshold
        if th is not None and len(body) >= th and conn.peer_accepts_compression:
            body = zlib.compress(body, 1)
            compressed = True
        try:
            conn.send_response(cid, body, compressed=compressed)
        except FrameTooLarge:
            self._reply_error(cid, ctx, RpcError(
                Status.RESOURCE_EXHAUSTED,
                f"the reply of {ctx.method} ({len(body)} bytes) exceeds the client's "
                f"limit of {conn.peer_max_frame_size} bytes",
            ))

    def _reply_error(self, cid: int, ctx: Context, exc: BaseException) -> None:
        err = exc if isinstance(exc, RpcError) else self.server.error_from(exc, ctx)
        self.conn.send_error(
            cid, err.status, err.message, _encode_error_details(self.codec, err.details)
        )

    # -- writing -----------------------------------------------------------------------

    def close_connection(self) -> None:
        if self.transport is not None:
            self._flush()
            self.transport.close()

    def goaway(self) -> None:
        if self.transport is None:
            return
        self.going_away_sent = True
        self.conn.send_goaway(self.last_call_id, Status.UNAVAILABLE, "server is shutting down")
        self._flush()


def _codec_ids() -> list[int]:
    ids = []
    for cid in range(1, 256):
        if codecs.codec_by_id(cid) is not None:
            ids.append(cid)
    return ids


def make_server_protocol(server: Server, **opts: Any) -> asyncio.Protocol:
    """A native-protocol server protocol (for the one-port sniffing listener)."""
    listener = opts.pop("listener", None)
    return ServerProtocol(server, listener, **opts)


async def serve(server: Server, url: URL, **opts: Any) -> ConnectionListener:
    """Listen on ``tcp://host:port`` or ``unix:///path`` for the native protocol."""
    return await listen(url, lambda lst: ServerProtocol(server, lst, **opts))


# -- client ------------------------------------------------------------------------------


class TcpClientConnection(CoalescedWriter, ClientConnection, asyncio.Protocol):
    """One multiplexed native-protocol connection: many calls in flight, answered by id."""

    conn: fr.FrameConnection

    def __init__(
        self,
        codec: codecs.Codec,
        *,
        max_message_size: int = fr.DEFAULT_MAX_FRAME,
        compress_threshold: int | None = COMPRESS_THRESHOLD_DEFAULT,
        keepalive: float | None = None,
        idle_timeout: float | None = None,
        address: str = "",
    ) -> None:
        self.codec = codec
        self._encode = codec.encode
        self._decode_any = getattr(codec, "decode_any", codec.decode)
        self._idle_timeout = idle_timeout
        self._idle_mark = (1, time.monotonic())  # (_next_id, since when): idle from the start
        self.address = address
        self.conn = fr.FrameConnection(
            client=True, codec_id=codec.id, max_frame_size=max_message_size
        )
        self.transport: asyncio.Transport | None = None
        self._pending: dict[int, tuple[asyncio.Future[Any], Any]] = {}
        self._next_id = 1
        self._closed = False
        self._goaway = False
        self._close_reason: RpcError | None = None
        self._flush_scheduled = False
        self._loop = asyncio.get_event_loop()
        self._ready: asyncio.Future[None] = self._loop.create_future()
        self._compress_threshold = compress_threshold
        self._pings: dict[bytes, asyncio.Future[None]] = {}
        self._keepalive = keepalive
        self._ka_handle: asyncio.TimerHandle | None = None
        self._last_activity = time.monotonic()
        self.streams: dict[int, Any] = {}
        self.conn.set_fast_callbacks(on_response=self._on_plain_response)

    # -- ClientConnection API -------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed or self._goaway

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _new_id(self) -> int:
        cid = self._next_id
        self._next_id = cid + 1 if cid < 0xFFFFFFFF else 1
        return cid

    fast_start = True  # Client.call may use start() + await (one coroutine frame less)

    def start(
        self,
        method: str,
        params: Any,
        timeout: float | None,
        metadata: Mapping[str, str] | None,
        result_type: Any,
    ) -> tuple[int, asyncio.Future[Any]]:
        """Queue a call and return its id and the future its reply will complete."""
        if self._closed or self._goaway:
            raise self._close_reason or Unavailable(message=f"connection to {self.address} closed")
        cid = self._next_id
        self._next_id = cid + 1 if cid < 0xFFFFFFFF else 1
        try:
            body = self._encode(params)
        except (TypeError, msgspec.EncodeError) as exc:
            raise InvalidArgument(message=f"cannot encode arguments of {method}: {exc}") from None
        th = self._compress_threshold
        try:
            if th is not None and len(body) >= th and self.conn.peer_accepts_compression:
                self.conn.send_request(
                    cid, method, zlib.compress(body, 1), timeout, metadata or None,
                    compressed=True,
                )
            else:
                self.conn.send_request(cid, method, body, timeout, metadata or None)
        except FrameTooLarge as exc:
            raise FrameTooLarge(f"request for {method}: {exc.message}") from None
        fut = self._loop.create_future()
        pending = self._pending
        if not pending and not self._flush_scheduled and self.transport is not None:
            # Nothing else in flight (a sequential caller): no batch to wait for, write now.
            self.transport.write(self.conn.data_to_send())
        elif len(self.conn._out) >= CLIENT_WRITE_PARTS and self.transport is not None:
            self.transport.write(self.conn.data_to_send())
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        pending[cid] = (fut, result_type)
        if timeout is not None:
            handle = self._loop.call_later(timeout, self._expire, cid, method, timeout)
            fut.add_done_callback(lambda _f: handle.cancel())
        return cid, fut

    async def call(
        self,
        method: str,
        params: list[Any] | dict[str, Any],
        timeout: float | None,
        metadata: Mapping[str, str] | None,
        result_type: Any,
    ) -> Any:
        cid, fut = self.start(method, params, timeout, metadata, result_type)
        try:
            return await fut
        except asyncio.CancelledError:
            self._abandon(cid)
            raise

    def abandon(self, cid: int) -> None:
        """The caller gave up (task cancelled): tell the server to cancel the handler."""
        self._abandon(cid)

    def _abandon(self, cid: int) -> None:
        """The caller gave up (task cancelled): tell the server to cancel the handler."""
        if self._pending.pop(cid, None) is not None and self.transport is not None:
            self.conn.send_cancel(cid)
            self._schedule_flush()

    def _expire(self, cid: int, method: str, timeout: float) -> None:
        entry = self._pending.pop(cid, None)
        if entry is None:
            return
        fut = entry[0]
        if not fut.done():
            fut.set_exception(
                DeadlineExceeded(message=f"{method}: no reply within {timeout:g}s")
            )
        if self.transport is not None:
            self.conn.send_cancel(cid)
            self._schedule_flush()

    def open_stream(
        self,
        method: str,
        params: Any,
        timeout: float | None,
        metadata: Mapping[str, str] | None,
        result_type: Any,
    ) -> tcp_stream.TcpClientStream:
        """Open a streaming call (see ``wirecall.transport.tcp_stream``)."""
        return tcp_stream.open_stream(self, method, params, timeout, metadata, result_type)

    async def ping(self, timeout: float | None = None) -> float:
        if self._closed:
            raise Unavailable(message="connection closed")
        opaque = os.urandom(8)
        fut: asyncio.Future[None] = self._loop.create_future()
        self._pings[opaque] = fut
        t0 = time.monotonic()
        self.conn.send_ping(opaque)
        self._schedule_flush()
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise DeadlineExceeded(message="ping timed out") from None
        finally:
            self._pings.pop(opaque, None)
        return time.monotonic() - t0

    async def aclose(self) -> None:
        if self.transport is not None:
            self._flush()
            self.transport.close()
        self._fail_all(Unavailable(message=f"connection to {self.address} closed by the client"))
        self._closed = True

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)  # uvloop's is no subclass
        set_nodelay(transport)
        self.conn.initiate()
        self._flush()
        self._arm_timer()

    def _arm_timer(self) -> None:
        period = min(x for x in (self._keepalive, self._idle_timeout, 3600.0) if x)
        self._ka_handle = self._loop.call_later(period, self._on_keepalive)

    def _on_keepalive(self) -> None:
        if self._closed or self.transport is None:
            return
        now = time.monotonic()
        idle = self._idle_timeout
        if idle:
            if self._next_id != self._idle_mark[0] or self._pending:  # a call since last time
                self._idle_mark = (self._next_id, now)
            elif now - self._idle_mark[1] >= idle:
                log.debug("%s: idle for %.1fs, closing", self.address, now - self._idle_mark[1])
                self._closed = True
                self._close_reason = Unavailable(message=f"connection to {self.address} idle")
                self.transport.close()
                return
        if self._keepalive and now - self._last_activity >= self._keepalive:
            if any(not f.done() for f in self._pings.values()):
                log.info("%s: keepalive ping unanswered, closing", self.address)
                self.transport.abort()
                return
            opaque = os.urandom(8)
            self._pings[opaque] = self._loop.create_future()
            self.conn.send_ping(opaque)
            self._flush()
        self._arm_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.transport = None
        if self._ka_handle is not None:
            self._ka_handle.cancel()
        reason = self._close_reason or Unavailable(
            message=f"connection to {self.address} lost" + (f": {exc}" if exc else "")
        )
        if not self._ready.done():
            self._ready.set_exception(reason)
            self._ready.exception()  # mark retrieved
        self._fail_all(reason)

    def _fail_all(self, reason: RpcError) -> None:
        pending, self._pending = self._pending, {}
        for fut, _ in pending.values():
            if not fut.done():
                fut.set_exception(reason)
        for f in self._pings.values():
            if not f.done():
                f.set_exception(reason)
                f.exception()  # keepalive pings have no awaiter: mark the error retrieved
        for st in list(self.streams.values()):
            fail = getattr(st, "_fail", None)
            if fail is not None:
                fail(reason)

    def _on_plain_response(self, cid: int, body: bytes | memoryview) -> None:
        """A RESPONSE with no flags, straight from the parser (see ``set_fast_callbacks``)."""
        entry = self._pending.pop(cid, None)
        if entry is None:
            st = self.streams.get(cid)
            if st is not None:
                st._on_response(fr.ResponseReceived(cid, body, None, False))
            return
        fut, rtype = entry
        if fut.done():
            return
        try:
            fut.set_result(
                self._decode_any(body) if rtype is Any else self.codec.decode(body, rtype)
            )
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            fut.set_exception(InvalidArgument(message=f"cannot decode the reply: {exc}"))
        except RpcError as exc:
            fut.set_exception(exc)

    def data_received(self, data: bytes) -> None:
        self._last_activity = time.monotonic()
        try:
            events = self.conn.receive_data(data)
        except ProtocolError as exc:
            log.warning("closing connection to %s: %s", self.address, exc.message)
            self._close_reason = Unavailable(message=f"protocol error from server: {exc.message}")
            if self.transport is not None:
                self.transport.abort()
            return
        if events:  # plain replies were resolved by the parser's callback already
            self._on_events(events)

    def _on_events(self, events: list[fr.Event]) -> None:
        pending = self._pending
        for ev in events:
            t = type(ev)
            if t is fr.ResponseReceived:
                cid = ev.call_id  # type: ignore[attr-defined]
                body = ev.body  # type: ignore[attr-defined]
                if ev.compressed and cid in pending:  # type: ignore[attr-defined]
                    try:
                        body = fr.decompress(body, self.conn.max_frame_size)
                    except RpcError as exc:
                        fut = pending.pop(cid)[0]
                        if not fut.done():
                            fut.set_exception(exc)
                        continue
                if cid in pending:
                    self._on_plain_response(cid, body)
                else:
                    st = self.streams.get(cid)
                    if st is not None:
                        st._on_response(ev)
            elif t is fr.ErrorReceived:
                entry = pending.pop(ev.call_id, None)  # type: ignore[attr-defined]
                if entry is not None and not entry[0].done():
                    entry[0].set_exception(self._error(ev))  # type: ignore[arg-type]
                else:
                    st = self.streams.get(ev.call_id)  # type: ignore[attr-defined]
                    if st is not None:
                        st._on_error(self._error(ev))  # type: ignore[arg-type]
            elif t is fr.PrefaceReceived:
                if not self._ready.done():
                    self._ready.set_result(None)
            elif t is fr.PongReceived:
                f = self._pings.pop(ev.opaque, None)  # type: ignore[attr-defined]
                if f is not None and not f.done():
                    f.set_result(None)
            elif t is fr.GoAwayReceived:
                self._on_goaway(ev)  # type: ignore[arg-type]
            elif t is fr.FrameRefused:
                entry = pending.pop(ev.call_id, None)  # type: ignore[attr-defined]
                if entry is not None and not entry[0].done():
                    entry[0].set_exception(
                        RpcError(
                            Status.RESOURCE_EXHAUSTED,
                            f"reply of {ev.size} bytes exceeds the client limit of "  # type: ignore[attr-defined]
                            f"{self.conn.max_frame_size} bytes",
                        )
                    )
            elif t is fr.MessageReceived or t is fr.WindowUpdated:
                st = self.streams.get(ev.call_id)  # type: ignore[attr-defined]
                if st is not None:
                    st._on_frame(ev)
        if self.conn.has_data_to_send():
            self._flush()

    def _error(self, ev: fr.ErrorReceived) -> RpcError:
        return error_from_frame(self.codec, ev)

    def _on_goaway(self, ev: fr.GoAwayReceived) -> None:
        self._goaway = True
        reason = Unavailable(message=f"server sent GOAWAY: {ev.message or 'going away'}")
        if not self._ready.done():
            self._close_reason = (
                RpcError(ev.status, ev.message) if ev.status else reason
            )
        # calls the server never saw will never be answered: fail them now
        for cid in [c for c in self._pending if c > ev.last_call_id]:
            fut, _ = self._pending.pop(cid)
            if not fut.done():
                fut.set_exception(reason)


async def connect(
    url: URL,
    *,
    timeout: float | None = 10.0,
    codec: str | int | codecs.Codec = "msgpack",
    max_message_size: int = fr.DEFAULT_MAX_FRAME,
    compress_threshold: int | None = None,
    keepalive: float | None = 30.0,
    idle_timeout: float | None = None,
    **_: Any,
) -> TcpClientConnection:
    """Dial ``url`` (``tcp://`` or ``unix://``) within ``timeout`` seconds (DialTimeout).

    ``keepalive``: seconds of silence before a PING (an unanswered PING closes the connection);
    ``idle_timeout``: close the connection after this long with no call (the pool redials).
    """
    c = codecs.get(codec)
    loop = asyncio.get_running_loop()
    proto = TcpClientConnection(
        c,
        max_message_size=max_message_size,
        compress_threshold=compress_threshold,
        keepalive=keepalive,
        idle_timeout=idle_timeout,
        address=str(url),
    )
    factory: Callable[[], TcpClientConnection] = lambda: proto  # noqa: E731

    async def dial() -> None:
        if url.scheme == "unix":
            await loop.create_unix_connection(factory, url.path)
        else:
            await loop.create_connection(factory, url.host, url.port)
        await proto._ready

    await streams.dial(url, dial, timeout, lambda: proto.transport)
    return proto
