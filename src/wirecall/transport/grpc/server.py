"""gRPC server side: :class:`GrpcServerProtocol`, one accepted HTTP/2 connection, and
``serve`` (``grpc://``: h2c with prior knowledge; ``grpcs://``: TLS with ALPN ``h2``).

Every request ends in the dispatch seam (:class:`wirecall.seam.Dispatcher`): unary calls in
``start_call``, streaming calls in ``start_stream``. ``/pkg.Service/Method`` is looked up as
``pkg.Service.Method`` then ``Service.Method`` (wirecall service names carry no package).
The message codec follows the content-type: ``application/grpc`` (``+proto``) carries protobuf
for services generated from a ``.proto`` (``wirecall gen``) and msgpack for plain Python
services; ``application/grpc+msgpack`` and ``+json`` select those codecs explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_mod
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from ... import codec as codecs
from ...codec.protobuf import MessageWire
from ...context import Context
from ...errors import (
    Internal,
    ResourceExhausted,
    RpcError,
    Unavailable,
    Unimplemented,
    wrong_mode,
)
from ...protocol import grpc as gp
from ...protocol.grpc.http2 import ErrorCodes, resolve_backend
from ...seam import BIDI_STREAM, CLIENT_STREAM, UNARY, Dispatcher, MethodInfo
from ...status import Status
from ...streaming.model import (
    Inbound,
    ResponseMetadata,
    bind_response_metadata,
    reset_response_metadata,
)
from ..base import URL
from ..sockets import (
    WRITE_BATCH,
    CoalescedWriter,
    ConnectionListener,
    listen,
    peer_name,
    set_nodelay,
    socket_options,
)
from ..tls import DEFAULT_HANDSHAKE_TIMEOUT, SERVER_KEYS, peer_identity, pop_server_tls
from .common import HIGH_WATER, alpn_h2

_CALL_KEY = gp.CALL_UNARY_HEADER[0]  # marks a wirecall client's unary call (headers.py)

__all__ = ["GrpcServerProtocol", "make_server_protocol", "serve", "server_ssl_context"]

log = logging.getLogger("wirecall.grpc")

_MONO = time.monotonic


def _subtype_codec(content_type: str) -> codecs.Codec | str | None:
    """Codec named by ``application/grpc+<name>``: a codec, None (protobuf), or "" (plain)."""
    if content_type == gp.CONTENT_TYPE:
        return ""
    sub = content_type[len(gp.CONTENT_TYPE) + 1:].split(";")[0].strip()
    if sub in ("proto", "protobuf"):
        return None
    c = codecs.codec_by_name(sub)
    if c is None:
        raise Unimplemented(message=f"unsupported content-type {content_type!r}")
    return c


class _ServerCall:
    __slots__ = (
        "ctx", "dead", "inbound", "md", "mode", "request", "sid", "spec", "task", "waiter", "wire",
    )

    def __init__(
        self, sid: int, spec: MethodInfo, ctx: Context, wire: MessageWire, mode: str
    ) -> None:
        self.sid = sid
        self.spec = spec
        self.ctx = ctx
        self.wire = wire
        self.mode = mode
        self.inbound: Inbound[Any] | None = None
        self.request: bytes | None = None
        self.md = ResponseMetadata()
        self.waiter: asyncio.Future[None] | None = None
        self.dead = False
        self.task: asyncio.Task[Any] | None = None


class GrpcServerProtocol(CoalescedWriter, asyncio.Protocol):
    """One accepted HTTP/2 connection serving gRPC calls."""

    conn: gp.GrpcConnection

    def __init__(
        self, server: Dispatcher, listener: ConnectionListener | None = None, **opts: Any
    ) -> None:
        self.server = server
        self.listener = listener
        self.conn = gp.GrpcConnection(
            client_side=False,
            max_message_size=int(opts.get("max_message_size", server.max_message_size)),
            max_concurrent_streams=int(opts.get("max_concurrent_streams", 1000)),
            reset_limit=int(opts.get("reset_limit", 200)),
            control_limit=server.limits.max_control_frames_per_second,
            # compress_threshold=None (the native transport's "off") turns compression off
            compression=None if "compress_threshold" in opts and opts["compress_threshold"]
            is None else opts.get("compression"),
            compress_threshold=int(opts.get("compress_threshold") or 1024),
            backend=opts.get("http2_backend"),
        )
        self.transport: asyncio.Transport | None = None
        self.calls: dict[int, _ServerCall] = {}
        self.peer = ""
        self.identity = ""
        self._loop = asyncio.get_event_loop()
        self._flush_scheduled = False
        self._paused = False
        self._reading_paused = False
        self._held: deque[Any] = deque()  # events parsed while paused, handled on resume
        self._draining = False
        self._closing = False
        self._lingering = False
        self._batched = 0  # unary replies queued since the last write
        self._in_read = False  # handling what one read parsed
        lim = server.limits
        self._max_unsent = lim.max_unsent_bytes
        self._frame_timeout = lim.frame_timeout
        self._frame_timer: asyncio.TimerHandle | None = None  # unfinished frames' time limit
        self._marks: set[tuple[Any, ...]] = set()  # what was unfinished at the last check
        self._routes: dict[tuple[str, str], tuple[MethodInfo, MessageWire, str]] = {}

    def _schedule_flush(self) -> None:
        # while a read is handled (_in_read), _after_events writes once it is done: nothing
        # to schedule (it would run an empty flush on the next loop turn per reply)
        if not (self._in_read or self._flush_scheduled):
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._batched = 0
        super()._flush()
        if self.conn.queued > HIGH_WATER:
            self._check_unsent()

    def _check_unsent(self) -> None:
        """Replies waiting for the peer's flow-control window, and (while the socket's
        buffer is over its high-water mark) those the peer has not read, against
        ``limits.max_unsent_bytes``: over it, the connection is closed."""
        t = self.transport
        if t is None or self._closing or t.is_closing():
            return
        total = self.conn.queued + (t.get_write_buffer_size() if self._paused_out else 0)
        if total <= self._max_unsent:
            return
        reason = (f"more than {self._max_unsent} bytes of replies unsent "
                  "(limits.max_unsent_bytes): the peer does not read them or grants no "
                  "flow-control window")
        log.warning("closing gRPC connection from %s: %s", self.peer, reason)
        self.conn.drop_queued()
        if self._paused_out:  # it does not read: it would not read a GOAWAY either
            self._abort_all()
            t.abort()
            return
        self.conn.goaway(ErrorCodes.ENHANCE_YOUR_CALM, reason)
        self._abort_all(linger=True)

    # -- the unfinished-frame time limit ---------------------------------------------

    def _arm_frame_timer(self) -> None:
        self._frame_timer = self._loop.call_later(self._frame_timeout, self._on_frame_timer)

    def _on_frame_timer(self) -> None:
        """Every ``limits.frame_timeout`` while something is unfinished: what was already
        unfinished at the previous check (the same HTTP/2 frame, header block or gRPC
        message) closes the connection, so a peer gets between one and two timeouts."""
        self._frame_timer = None
        if self.transport is None or self._closing:
            return
        if self._reading_paused:  # we stopped reading: the peer cannot finish anything
            self._marks = set()
            self._arm_frame_timer()
            return
        marks, watching = self.conn.unfinished_marks()
        stale = marks & self._marks
        self._marks = marks if watching else set()
        if stale:
            kind = min(stale)[0]
            what = "gRPC message" if kind == "message" else f"HTTP/2 {kind}"
            limit = self._frame_timeout
            reason = f"{what} not completed within {limit:g}s (limits.frame_timeout)"
            log.warning("closing gRPC connection from %s: %s", self.peer, reason)
            self.conn.goaway(ErrorCodes.ENHANCE_YOUR_CALM, reason)
            self._abort_all(linger=True)
        elif watching:
            self._arm_frame_timer()

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # (uvloop's is not a subclass)
        set_nodelay(transport)
        self.peer = peer_name(transport)
        self.identity = peer_identity(transport)
        if self.listener is not None:
            self.listener.connections.add(self)
        self.conn.initiate()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._frame_timer is not None:
            self._frame_timer.cancel()
            self._frame_timer = None
        if self.listener is not None:
            self.listener.connections.discard(self)
        for call in list(self.calls.values()):
            self._kill(call, Unavailable(message="connection lost"))
        self.calls.clear()
        self.transport = None

    def pause_writing(self) -> None:
        # The peer is not reading: stop reading its requests too (no new calls are parsed
        # while their replies could not be written); streams' send() waits on _paused.
        self._paused = self._paused_out = True
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = self._paused_out = False
        if self._held:
            self._in_read = True
            self._handle(self._held)
            self._in_read = False
            self._after_events()
        if not self._paused and self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        self._wake_writers()

    def data_received(self, data: bytes) -> None:
        if self._lingering:  # closing after an error GOAWAY: what the peer sends is dropped
            return
        conn = self.conn
        self._in_read = True
        events = conn.receive(data, self._loop.time())
        if self._frame_timer is None and (conn.partial or conn.backend.unfinished):
            self._arm_frame_timer()
        if self._held:  # still working through what was parsed before a pause
            self._held.extend(events)
        else:
            self._handle(deque(events))
        self._in_read = False
        self._after_events()

    def _after_events(self) -> None:
        self._flush()
        if self.calls:
            self._wake_writers()
        if self._draining and not self.calls and not self._held and not self.conn.drain_pending:
            self._close_transport()

    def _handle(self, events: deque[Any]) -> None:
        """Act on parsed events in order; stop (keeping the rest in ``_held``) as soon as
        the write buffer goes over its high-water mark."""
        conn = self.conn
        while events:
            if self._paused:
                self._held = events
                return
            ev = events.popleft()
            t = type(ev)
            if t is gp.MessageReceived:
                self._on_message(ev)
            elif t is gp.CallStarted:
                self._on_call(ev)
            elif t is gp.HalfClosed:
                self._on_half_close(ev)
            elif t is gp.StreamReset:
                call = self.calls.pop(ev.stream_id, None)
                if call is not None:
                    self._kill(call, RpcError(Status.CANCELLED, "stream reset by the client"))
            elif t is gp.StreamFailed:
                call = self.calls.pop(ev.stream_id, None)
                if call is not None:
                    self._kill(call, RpcError(ev.status, ev.message))
            elif t is gp.ConnectionClosed and ev.local:
                log.info("closing gRPC connection from %s: %s", self.peer, ev.reason)
                self._flush()
                self._abort_all(linger=True)
                events.clear()
                return
            if conn.unsent > HIGH_WATER:  # replies piling up: write now, maybe pausing
                self._flush()
        self._held = events

    # -- calls -----------------------------------------------------------------------

    def _resolve(self, path: str) -> MethodInfo:
        if path[:1] != "/" or path.count("/") != 2:
            raise Unimplemented(message=f"malformed gRPC path {path!r}")
        _, svc, meth = path.split("/")
        find = self.server.find
        spec = find(f"{svc}.{meth}")
        if spec is None and "." in svc:
            spec = find(f"{svc.rpartition('.')[2]}.{meth}")
        if spec is None:
            short = svc.rpartition(".")[2]
            if self.server.has_service(svc) or self.server.has_service(short):
                raise Unimplemented(message=f"unknown method {meth!r} of service {svc!r}")
            return self.server.lookup(f"{svc}.{meth}")  # raises Unimplemented naming the miss
        return spec

    def _route(self, path: str, content_type: str) -> tuple[MethodInfo, MessageWire, str]:
        """The method, message wire and mode of a call (raises the RpcError refusing it);
        kept per connection for the next calls of the same path and content-type, as long
        as the server still has that method (MessageWire is immutable)."""
        key = (path, content_type)
        route = self._routes.get(key)
        if route is not None and self.server.find(route[0].name) is route[0]:
            return route
        spec = self._resolve(path)
        info = spec.proto
        sub = _subtype_codec(content_type)
        if sub is None or (sub == "" and info is not None):
            if info is None:
                raise Unimplemented(message=f"{spec.name} is not a protobuf method; "
                                    "use application/grpc+msgpack or +json")
            wire = MessageWire(None, info[0], info[1], content_type)
            mode = info[2]
        else:
            c = codecs.MSGPACK_CODEC if sub == "" else sub
            assert not isinstance(c, str)
            wire = MessageWire(c, spec.request_type, spec.result_type, content_type)
            mode = spec.mode
        route = (spec, wire, mode)
        if len(self._routes) < 64:
            self._routes[key] = route
        return route

    def _on_call(self, ev: gp.CallStarted) -> None:
        sid = ev.stream_id
        try:
            if self._draining and sid > self.conn.goaway_last:
                raise Unavailable(message="server is shutting down")
            spec, wire, mode = self._route(ev.path, ev.content_type)
            # how a wirecall client's caller made it
            made = ev.metadata.pop(_CALL_KEY, None) if ev.metadata else None
            if made is not None and (made == "unary") != (mode == UNARY):
                raise wrong_mode(spec.name, mode)
        except RpcError as exc:
            self.conn.send_trailers(sid, exc.status, exc.message, content_type=ev.content_type)
            return
        deadline = None if ev.timeout is None else _MONO() + ev.timeout
        ctx = Context(spec.name, ev.metadata, deadline, self.peer, "grpc", self.identity)
        call = _ServerCall(sid, spec, ctx, wire, mode)
        self.calls[sid] = call
        if mode in (CLIENT_STREAM, BIDI_STREAM):
            conn = self.conn

            def consumed(n: int, sid: int = sid) -> None:
                conn.consumed(sid, n)
                self._schedule_flush()

            call.inbound = Inbound(consumed)
            self._start_stream(call, None)

    def _on_message(self, ev: gp.MessageReceived) -> None:
        call = self.calls.get(ev.stream_id)
        if call is None:
            self.conn.consumed(ev.stream_id, ev.flow)
            return
        if call.inbound is not None:
            try:
                item = call.wire.decode(ev.payload, call.wire.req)
            except RpcError as exc:
                self._fail_call(call, exc)
                return
            call.inbound.put(item, ev.flow)
            return
        self.conn.consumed(ev.stream_id, ev.flow)
        if call.request is not None:
            self._fail_call(call, Internal(
                message=f"{call.spec.name} takes one request message, got more"))
            return
        call.request = ev.payload

    def _on_half_close(self, ev: gp.HalfClosed) -> None:
        call = self.calls.get(ev.stream_id)
        if call is None:
            return
        if call.inbound is not None:
            call.inbound.close()
            return
        if call.request is None:
            self._fail_call(call, Internal(message=f"{call.spec.name}: no request message"))
            return
        try:
            msg = call.wire.decode(call.request, call.wire.req if call.wire.codec is None else Any)
        except RpcError as exc:
            self._fail_call(call, exc)
            return
        params = [msg] if call.wire.codec is None else msg
        call.ctx.request_size = len(call.request)
        call.request = None
        if call.mode == UNARY:
            sid = call.sid
            token = bind_response_metadata(call.md)
            try:
                self.server.start_call(
                    call.spec, params, call.ctx, lambda r, e: self._unary_done(sid, r, e)
                )
            finally:
                reset_response_metadata(token)
        else:
            self._start_stream(call, params)

    def _start_stream(self, call: _ServerCall, params: Any) -> None:
        sid = call.sid

        async def send(item: Any) -> None:
            await self._send(call, item)

        def flush_headers() -> None:  # (flush_initial_metadata from the handler)
            if not call.dead and sid in self.conn.streams:
                self._headers(call)
                self._schedule_flush()

        call.md.flush = flush_headers
        token = bind_response_metadata(call.md)
        try:
            call.task = self.server.start_stream(
                call.spec, params, call.ctx, call.inbound, send,
                lambda _r, e: self._stream_done(sid, e),
            )
        finally:
            reset_response_metadata(token)

    def _headers(self, call: _ServerCall) -> None:
        if not call.md.sent:
            call.md.sent = True
            self.conn.send_response_headers(
                call.sid, call.md.initial or None, call.wire.content_type
            )

    def _unary_done(self, sid: int, result: Any, exc: BaseException | None) -> None:
        call = self.calls.pop(sid, None)
        if call is None or call.dead:
            return
        conn = self.conn
        if exc is None:
            try:
                payload = call.wire.encode(result, call.wire.res)
            except Exception as e:
                exc = self.server.error_from(e, call.ctx)
            else:
                if len(payload) > conn.max_message_size:
                    exc = ResourceExhausted(message=f"response of {len(payload)} bytes is over "
                                            f"the limit of {conn.max_message_size}")
                else:
                    call.ctx.response_size = len(payload)
                    md = call.md
                    if not (md.sent or md.initial or md.trailing):  # (the usual reply)
                        md.sent = True
                        conn.send_reply(sid, payload, call.wire.content_type)
                    else:
                        self._headers(call)
                        conn.send_message(sid, payload)
                        conn.send_trailers(sid, Status.OK, "", md.trailing or None)
        if exc is not None:
            err = exc if isinstance(exc, RpcError) else self.server.error_from(exc, call.ctx)
            if call.md.initial:
                self._headers(call)
            conn.send_trailers(sid, err.status, err.message, call.md.trailing or None,
                               content_type=call.wire.content_type)
        self._batched += 1
        # a big reply, a full batch, or the last call in flight answered outside a read
        # (sequential calls: written now, not on the next loop turn)
        if (conn.unsent > HIGH_WATER or self._batched >= WRITE_BATCH
                or not (self.calls or self._in_read)):
            self._flush()  # a big reply or a full batch: write it now (may pause us)
        else:
            self._schedule_flush()

    async def _send(self, call: _ServerCall, item: Any) -> None:
        if call.dead or call.sid not in self.conn.streams:
            raise asyncio.CancelledError
        payload = call.wire.encode(item, call.wire.res)
        if len(payload) > self.conn.max_message_size:
            raise ResourceExhausted(message=f"message of {len(payload)} bytes is over the "
                                    f"limit of {self.conn.max_message_size}")
        self._headers(call)
        self.conn.send_message(call.sid, payload)
        self._schedule_flush()
        while (self.conn.pending(call.sid) > HIGH_WATER or self._paused) and not call.dead:
            call.waiter = self._loop.create_future()
            try:
                await call.waiter
            finally:
                call.waiter = None

    def _wake_writers(self) -> None:
        if self._paused:
            return
        for call in self.calls.values():
            w = call.waiter
            if w is not None and not w.done() and self.conn.pending(call.sid) <= HIGH_WATER:
                w.set_result(None)

    def _stream_done(self, sid: int, exc: BaseException | None) -> None:
        call = self.calls.pop(sid, None)
        if call is None or call.dead:
            return
        if call.md.initial:
            self._headers(call)
        if exc is None:
            self.conn.send_trailers(sid, Status.OK, "", call.md.trailing or None,
                                    content_type=call.wire.content_type)
        else:
            err = exc if isinstance(exc, RpcError) else self.server.error_from(exc, call.ctx)
            self.conn.send_trailers(sid, err.status, err.message, call.md.trailing or None,
                                    content_type=call.wire.content_type)
        self._schedule_flush()
        if self._draining and not self.calls and not self._held and not self.conn.drain_pending:
            self._close_transport()

    def _fail_call(self, call: _ServerCall, err: RpcError) -> None:
        """Refuse a call for a bad request: status to the peer, handler cancelled."""
        self.calls.pop(call.sid, None)
        self.conn.send_trailers(call.sid, err.status, err.message,
                                content_type=call.wire.content_type)
        self.conn.reset(call.sid, 0)  # NO_ERROR: stop the client sending more
        self._kill(call, err)

    def _kill(self, call: _ServerCall, err: RpcError) -> None:
        call.dead = True
        if call.inbound is not None:
            call.inbound.fail(err)
        if call.waiter is not None and not call.waiter.done():
            call.waiter.set_exception(asyncio.CancelledError())
        call.ctx.cancel()

    def close_connection(self) -> None:
        self._abort_all()

    def _abort_all(self, linger: bool = False) -> None:
        for call in list(self.calls.values()):
            self._kill(call, Unavailable(message="connection closed"))
        self.calls.clear()
        if linger:
            self._linger_close()
        else:
            self._close_transport()

    #: seconds an erroring connection is read and discarded after its GOAWAY (so the peer
    #: reads the GOAWAY instead of a reset that would drop it)
    LINGER = 1.0

    def _linger_close(self) -> None:
        """Close after an error GOAWAY: half-close, discard what the peer still sends, close
        after :attr:`LINGER` seconds (abort if the peer left our output unread)."""
        transport = self.transport
        if transport is None or self._closing:
            return
        self._closing = True
        self._lingering = True
        self._flush()
        if transport.can_write_eof():
            with contextlib.suppress(OSError, RuntimeError):
                transport.write_eof()
        transport.resume_reading()

        def close() -> None:
            if transport.get_write_buffer_size():
                transport.abort()
            else:
                transport.close()

        self._loop.call_later(self.LINGER, close)

    # -- output ----------------------------------------------------------------------

    def goaway(self) -> None:
        """Graceful shutdown: GOAWAY (no new streams); close once in-flight calls end."""
        self._draining = True
        self.conn.graceful_goaway()
        self._flush()
        # (closed once the client acknowledged the GOAWAY's PING: see graceful_goaway)
        if not self.calls and not self._held and not self.conn.drain_pending:
            self._close_transport()

    def _close_transport(self) -> None:
        if self.transport is not None and not self._closing:
            self._closing = True
            self._flush()
            self.transport.close()


def make_server_protocol(server: Dispatcher, **opts: Any) -> asyncio.Protocol:
    """A gRPC server protocol for one connection (the one-port sniffer hands it connections
    that start with ``PRI * HTTP/2.0``)."""
    listener = opts.pop("listener", None)
    return GrpcServerProtocol(server, listener, **opts)


def server_ssl_context(opts: Mapping[str, Any]) -> ssl_mod.SSLContext:
    """The grpcs:// server context (``transport.tls``: certfile/keyfile, cafile for mTLS,
    reloading), with ALPN ``h2``."""
    ctx = opts.get("ssl")
    if isinstance(ctx, ssl_mod.SSLContext):
        return alpn_h2(ctx)
    tls_opts = {k: v for k, v in opts.items() if k in SERVER_KEYS}
    made = pop_server_tls("grpcs", tls_opts)
    assert made is not None
    return alpn_h2(made)


async def serve(server: Dispatcher, url: URL, **opts: Any) -> ConnectionListener:
    """Listen on ``grpc://host:port`` (h2c, prior knowledge) or ``grpcs://`` (TLS, ALPN h2).
    ``compression="gzip"`` (or ``?compression=gzip`` in the URL) compresses replies of at
    least ``compress_threshold`` bytes (default 1024) for clients that accept gzip.
    ``http2_backend="ngh2"|"h2"`` (or ``?http2_backend=``): the HTTP/2 core (default:
    ``$WIRECALL_GRPC_HTTP2``, else ngh2 when installed, else h2), fixed for the listener."""
    if "http2_backend" in url.query:
        opts.setdefault("http2_backend", url.query["http2_backend"])
    opts["http2_backend"] = resolve_backend(opts.get("http2_backend"))
    if "compression" in url.query:
        opts.setdefault("compression", url.query["compression"])
    if opts.get("compression") not in (None, *gp.COMPRESSIONS):
        raise ValueError(f"unsupported compression {opts['compression']!r}: "
                         f"use one of {', '.join(gp.COMPRESSIONS)}")
    tls = server_ssl_context(opts) if url.scheme == "grpcs" else None
    for k in SERVER_KEYS:
        opts.pop(k, None)
    handshake = float(opts.pop("tls_handshake_timeout", DEFAULT_HANDSHAKE_TIMEOUT))
    sock = socket_options(opts)
    if tls is not None:
        sock["ssl_handshake_timeout"] = handshake
    return await listen(
        url, lambda lst: GrpcServerProtocol(server, lst, **opts), ssl_context=tls, **sock
    )
