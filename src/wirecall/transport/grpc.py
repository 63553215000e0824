"""asyncio adapter for gRPC over HTTP/2: ``grpc://`` (h2c, prior knowledge) and ``grpcs://``
(TLS with ALPN ``h2``). The protocol itself is :mod:`wirecall.protocol.grpc` (sans-IO).

Server: every request ends in the one dispatch path: unary calls in ``Server.start_call``,
streaming calls in ``Server.start_stream``. ``/pkg.Service/Method`` is looked up as
``pkg.Service.Method`` then ``Service.Method`` (wirecall service names carry no package).
The message codec follows the content-type: ``application/grpc`` (``+proto``) carries protobuf
for services generated from a ``.proto`` (``wirecall gen``) and msgpack for plain Python
services; ``application/grpc+msgpack`` and ``+json`` select those codecs explicitly.

Client: :class:`GrpcClientConnection` (one HTTP/2 connection, calls multiplexed as streams);
``call`` for unary, ``open_stream`` for the three streaming modes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl as ssl_mod
import time
import weakref
from collections import deque
from collections.abc import AsyncIterable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from .. import codec as codecs
from ..codec.protobuf import is_message_type
from ..context import Context
from ..errors import (
    ConnectError,
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    ResourceExhausted,
    RpcError,
    Unavailable,
    Unimplemented,
)
from ..protocol import grpc as gp
from ..service import BIDI_STREAM, CLIENT_STREAM, UNARY, MethodSpec
from ..status import Status
from ..streaming import (
    ClientStream,
    Inbound,
    ResponseMetadata,
    bind_response_metadata,
    expire_later,
    reset_response_metadata,
)
from . import streams
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

__all__ = [
    "GrpcClientConnection",
    "GrpcServerProtocol",
    "connect",
    "make_server_protocol",
    "method_path",
    "serve",
]

log = logging.getLogger("wirecall.grpc")

HIGH_WATER = 256 * 1024  # bytes queued on one stream before send() waits for the window
# client: bytes of answers to the server's frames queued over the high-water mark before the
# client stops reading (a server that sends without reading)
REPLY_BUDGET = 64 * 1024
_MONO = time.monotonic
# times a call whose stream the server refused (REFUSED_STREAM: not processed) is opened
# again before it fails with UNAVAILABLE (a server refusing everything is not retried forever)
REFUSED_RETRIES = 5


# -- message codecs per call ---------------------------------------------------------------


class _Wire:
    """How one call's messages become bytes: protobuf classes, or a wirecall codec."""

    __slots__ = ("codec", "content_type", "req", "res")

    def __init__(self, codec: codecs.Codec | None, req: Any, res: Any, content_type: str) -> None:
        self.codec = codec  # None: protobuf with the given classes
        self.req = req
        self.res = res
        self.content_type = content_type

    def decode(self, payload: bytes, tp: Any) -> Any:
        if self.codec is None:
            if not is_message_type(tp):
                raise Internal(message="protobuf message type unknown for this call")
            try:
                return tp.FromString(payload)
            except Exception as exc:
                raise InvalidArgument(message=f"cannot parse {tp.__name__}: {exc}") from None
        try:
            return self.codec.decode(payload, tp)
        except msgspec.ValidationError as exc:
            raise InvalidArgument(message=f"invalid message: {exc}") from None
        except (msgspec.DecodeError, ValueError) as exc:
            raise InvalidArgument(
                message=f"cannot decode {self.codec.name} message: {exc}"
            ) from None

    def encode(self, value: Any, tp: Any) -> bytes:
        if self.codec is None:
            if isinstance(value, (list, tuple)) and len(value) == 1:
                value = value[0]
            if isinstance(value, dict) and is_message_type(tp):
                value = tp(**value)
            if value is None and is_message_type(tp):
                value = tp()
            try:
                return value.SerializeToString()  # type: ignore[no-any-return]
            except AttributeError:
                raise Internal(
                    message=f"expected a protobuf message, got {type(value).__name__}"
                ) from None
        return self.codec.encode(value)


def proto_method_info(spec: MethodSpec) -> tuple[Any, Any, str] | None:
    """(request class, response class, mode) of a method generated from a ``.proto``."""
    owner = getattr(spec.func, "__self__", None)
    table = getattr(type(owner), "__grpc_methods__", None)
    if not table:
        return None
    info = table.get(spec.name.rpartition(".")[2])
    return (info[0], info[1], info[2]) if info else None


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


# -- server ---------------------------------------------------------------------------------


class _ServerCall:
    __slots__ = (
        "ctx", "dead", "inbound", "md", "mode", "request", "sid", "spec", "task", "waiter", "wire",
    )

    def __init__(self, sid: int, spec: MethodSpec, ctx: Context, wire: _Wire, mode: str) -> None:
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
        self, server: Server, listener: ConnectionListener | None = None, **opts: Any
    ) -> None:
        self.server = server
        self.listener = listener
        self.conn = gp.GrpcConnection(
            client_side=False,
            max_message_size=int(opts.get("max_message_size", server.max_message_size)),
            max_concurrent_streams=int(opts.get("max_concurrent_streams", 1000)),
            reset_limit=int(opts.get("reset_limit", 200)),
            # compress_threshold=None (the native transport's "off") turns compression off
            compression=None if "compress_threshold" in opts and opts["compress_threshold"]
            is None else opts.get("compression"),
            compress_threshold=int(opts.get("compress_threshold") or 1024),
        )
        self.transport: asyncio.Transport | None = None
        self.calls: dict[int, _ServerCall] = {}
        self.peer = ""
        self._loop = asyncio.get_event_loop()
        self._flush_scheduled = False
        self._paused = False
        self._reading_paused = False
        self._held: deque[Any] = deque()  # events parsed while paused, handled on resume
        self._draining = False
        self._closing = False
        self._batched = 0  # unary replies queued since the last write

    def _flush(self) -> None:
        self._batched = 0
        super()._flush()

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # (uvloop's is not a subclass)
        set_nodelay(transport)
        self.peer = peer_name(transport)
        if self.listener is not None:
            self.listener.connections.add(self)
        self.conn.initiate()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self.listener is not None:
            self.listener.connections.discard(self)
        for call in list(self.calls.values()):
            self._kill(call, Unavailable(message="connection lost"))
        self.calls.clear()
        self.transport = None

    def pause_writing(self) -> None:
        # The peer is not reading: stop reading its requests too (no new calls are parsed
        # while their replies could not be written); streams' send() waits on _paused.
        self._paused = True
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        if self._held:
            self._handle(self._held)
            self._after_events()
        if not self._paused and self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        self._wake_writers()

    def data_received(self, data: bytes) -> None:
        events = self.conn.receive(data, self._loop.time())
        if self._held:  # still working through what was parsed before a pause
            self._held.extend(events)
        else:
            self._handle(deque(events))
        self._after_events()

    def _after_events(self) -> None:
        self._flush()
        if self.calls:
            self._wake_writers()
        if self._draining and not self.calls and not self._held:
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
                self._abort_all()
                events.clear()
                return
            if conn.unsent > HIGH_WATER:  # replies piling up: write now, maybe pausing
                self._flush()
        self._held = events

    # -- calls -----------------------------------------------------------------------

    def _resolve(self, path: str) -> MethodSpec:
        if path[:1] != "/" or path.count("/") != 2:
            raise Unimplemented(message=f"malformed gRPC path {path!r}")
        _, svc, meth = path.split("/")
        methods = self.server.registry.methods
        spec = methods.get(f"{svc}.{meth}")
        if spec is None and "." in svc:
            spec = methods.get(f"{svc.rpartition('.')[2]}.{meth}")
        if spec is None:
            return self.server.lookup(f"{svc}.{meth}")  # raises Unimplemented naming the miss
        return spec

    def _on_call(self, ev: gp.CallStarted) -> None:
        sid = ev.stream_id
        try:
            if self._draining:
                raise Unavailable(message="server is shutting down")
            spec = self._resolve(ev.path)
            info = proto_method_info(spec)
            sub = _subtype_codec(ev.content_type)
            if sub is None or (sub == "" and info is not None):
                if info is None:
                    raise Unimplemented(message=f"{spec.name} is not a protobuf method; "
                                        "use application/grpc+msgpack or +json")
                wire = _Wire(None, info[0], info[1], ev.content_type)
                mode = info[2]
            else:
                c = codecs.MSGPACK_CODEC if sub == "" else sub
                assert not isinstance(c, str)
                wire = _Wire(c, spec.request_type, spec.result_type, ev.content_type)
                mode = spec.mode
        except RpcError as exc:
            self.conn.send_trailers(sid, exc.status, exc.message, content_type=ev.content_type)
            return
        deadline = None if ev.timeout is None else _MONO() + ev.timeout
        ctx = Context(spec.name, ev.metadata, deadline, self.peer, "grpc")
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
                    self._headers(call)
                    conn.send_message(sid, payload)
                    conn.send_trailers(sid, Status.OK, "", call.md.trailing or None)
        if exc is not None:
            err = exc if isinstance(exc, RpcError) else self.server.error_from(exc, call.ctx)
            if call.md.initial:
                self._headers(call)
            conn.send_trailers(sid, err.status, err.message, call.md.trailing or None,
                               content_type=call.wire.content_type)
        self._batched += 1
        if conn.unsent > HIGH_WATER or self._batched >= WRITE_BATCH:
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
        if self._draining and not self.calls and not self._held:
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

    def _abort_all(self) -> None:
        for call in list(self.calls.values()):
            self._kill(call, Unavailable(message="connection closed"))
        self.calls.clear()
        self._close_transport()

    # -- output ----------------------------------------------------------------------

    def goaway(self) -> None:
        """Graceful shutdown: GOAWAY (no new streams); close once in-flight calls end."""
        self._draining = True
        self.conn.graceful_goaway()
        self._flush()
        if not self.calls and not self._held:
            self._close_transport()

    def _close_transport(self) -> None:
        if self.transport is not None and not self._closing:
            self._closing = True
            self._flush()
            self.transport.close()


def make_server_protocol(server: Server, **opts: Any) -> asyncio.Protocol:
    """A gRPC server protocol for one connection (the one-port sniffer hands it connections
    that start with ``PRI * HTTP/2.0``)."""
    listener = opts.pop("listener", None)
    return GrpcServerProtocol(server, listener, **opts)


def server_ssl_context(opts: Mapping[str, Any]) -> ssl_mod.SSLContext:
    ctx = opts.get("ssl")
    if isinstance(ctx, ssl_mod.SSLContext):
        ctx.set_alpn_protocols(["h2"])
        return ctx
    certfile, keyfile = opts.get("certfile"), opts.get("keyfile")
    if not certfile:
        raise ValueError("grpcs:// needs ssl=SSLContext or certfile=/keyfile=")
    ctx = ssl_mod.create_default_context(ssl_mod.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certfile, keyfile)
    ctx.set_alpn_protocols(["h2"])
    return ctx


async def serve(server: Server, url: URL, **opts: Any) -> ConnectionListener:
    """Listen on ``grpc://host:port`` (h2c, prior knowledge) or ``grpcs://`` (TLS, ALPN h2).
    ``compression="gzip"`` (or ``?compression=gzip`` in the URL) compresses replies of at
    least ``compress_threshold`` bytes (default 1024) for clients that accept gzip."""
    if "compression" in url.query:
        opts.setdefault("compression", url.query["compression"])
    if opts.get("compression") not in (None, *gp.COMPRESSIONS):
        raise ValueError(f"unsupported compression {opts['compression']!r}: "
                         f"use one of {', '.join(gp.COMPRESSIONS)}")
    tls = server_ssl_context(opts) if url.scheme == "grpcs" else None
    for k in ("ssl", "certfile", "keyfile"):
        opts.pop(k, None)
    return await listen(
        url, lambda lst: GrpcServerProtocol(server, lst, **opts), ssl_context=tls
    )


# -- client ---------------------------------------------------------------------------------


def method_path(method: str) -> str:
    """``pkg.Service.Method`` -> ``/pkg.Service/Method`` (``/a/b`` is used as is)."""
    if method.startswith("/"):
        return method
    svc, dot, meth = method.rpartition(".")
    if not dot:
        raise InvalidArgument(message=f"gRPC method {method!r} needs a service: Service.Method")
    return f"/{svc}/{meth}"


class _UnaryCall:
    __slots__ = (
        "fut", "metadata", "method", "payload", "request", "result_type", "retries", "sid",
        "timer", "wire",
    )

    def __init__(self, fut: asyncio.Future[Any], wire: _Wire, result_type: Any) -> None:
        self.fut = fut
        self.wire = wire
        self.result_type = result_type
        self.payload: bytes | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.sid = 0  # 0 while it waits for a stream (see GrpcClientConnection._queue)
        # what opening the stream takes (again, if the server refuses it: ``_retry_refused``)
        self.method = ""
        self.request = b""
        self.metadata: Mapping[str, Any] | None = None
        self.retries = 0


def _live(c: _UnaryCall | weakref.ref[GrpcClientStream] | None,
          ) -> _UnaryCall | GrpcClientStream | None:
    """A call table entry: unary calls are held, streams weakly (see ``_collected``)."""
    return c() if isinstance(c, weakref.ref) else c


class GrpcClientStream(ClientStream[Any]):
    """A streaming call on a :class:`GrpcClientConnection`."""

    def __init__(self, owner: GrpcClientConnection, method: str, wire: _Wire,
                 result_type: Any) -> None:
        super().__init__(method)
        self.owner = owner
        self.wire = wire
        self.result_type = result_type
        self.sid = 0  # 0 while it waits for a stream (see GrpcClientConnection._queue)
        self.timer: asyncio.TimerHandle | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.ref = weakref.ref(self)
        # while it waits for a stream: resolved once it is open (or ended)
        self.opened: asyncio.Future[None] | None = None
        # what opening the stream takes (again, if the server refuses it: ``_retry_refused``)
        self.first: bytes | None = None  # the request of a server stream
        self.metadata: Mapping[str, Any] | None = None
        self.sent = False  # a message went out (send / send_all): it cannot be sent again
        self.ended = False  # half-closed with done_writing
        self.retries = 0

    async def _wait_open(self) -> None:
        """A queued stream: wait until it has its HTTP/2 stream (raise if it ended first)."""
        while self.sid == 0 and not self._done and self.opened is not None:
            await asyncio.shield(self.opened)  # (one cancelled writer leaves it to the others)
        if self._done:
            raise self._error or Unavailable(message=f"{self.method}: stream is closed")

    def _encode_item(self, item: Any) -> bytes:
        try:
            return self.wire.encode(item, None)
        except (TypeError, ValueError, msgspec.EncodeError) as exc:  # as on tcp and ws
            raise InvalidArgument(message=f"cannot encode a message of {self.method}: "
                                  f"{exc}") from None

    async def _write(self, item: Any) -> None:
        o = self.owner
        payload = self._encode_item(item)
        o._check_size(payload)
        if self.sid == 0:
            await self._wait_open()
        self.sent = True
        o.conn.send_message(self.sid, payload)
        o._schedule_flush()
        while (o.conn.pending(self.sid) > HIGH_WATER or o._paused) and not self._done:
            self.waiter = o._loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        if self._done and self._error is not None:
            raise self._error

    async def _write_end(self) -> None:
        if self.sid == 0:
            await self._wait_open()
        self.ended = True
        self.owner.conn.end_request(self.sid)
        self.owner._schedule_flush()

    def _abort(self, error: RpcError) -> None:
        o = self.owner
        if self.sid == 0:  # still queued: nothing was sent
            o._unqueue(self.ref)
            return
        o._drop(self.sid)
        o.conn.reset(self.sid)
        o._schedule_flush()
        o._admit()  # the reset freed a stream

    def _consumed(self, credit: int) -> None:
        self.owner.conn.consumed(self.sid, credit)
        self.owner._schedule_flush()

    def _finish(self, error: RpcError | None, trailing: Mapping[str, Any] | None = None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)
        super()._finish(error, trailing)
        if self.opened is not None and not self.opened.done():
            self.opened.set_result(None)  # writers waiting for the stream see the end

    # the background sender (``send_all``, see ``streaming._pump``) waits on ``_write_gate``
    # holding the stream only weakly, then writes with ``_put`` without waiting
    def _write_gate(self) -> asyncio.Future[Any] | None:
        if self._done:
            return None
        o = self.owner
        if self.sid == 0:  # queued: wait for its HTTP/2 stream
            return None if self.opened is None else asyncio.shield(self.opened)
        if o.conn.pending(self.sid) <= HIGH_WATER and not o._paused:
            return None
        w = self.waiter
        if w is None or w.done():
            w = self.waiter = o._loop.create_future()
        return w

    def _put(self, item: Any) -> None:
        o = self.owner
        payload = self._encode_item(item)
        o._check_size(payload)
        self.sent = True
        o.conn.send_message(self.sid, payload)
        o._schedule_flush()


class GrpcClientConnection(CoalescedWriter, ClientConnection, asyncio.Protocol):
    """One HTTP/2 connection to a gRPC server; calls are multiplexed as streams."""

    conn: gp.GrpcConnection

    def __init__(
        self, *, authority: str, scheme: str = "http", codec: str | None = None,
        max_message_size: int = 4 * 1024 * 1024, compression: str | None = None,
        compress_threshold: int | None = 1024, user_agent: str = gp.USER_AGENT,
    ) -> None:
        self.authority = authority
        self.scheme = scheme
        self.codec_name = codec
        if compression not in (None, *gp.COMPRESSIONS):
            raise ValueError(f"unsupported compression {compression!r}: "
                             f"use one of {', '.join(gp.COMPRESSIONS)}")
        self.conn = gp.GrpcConnection(client_side=True, max_message_size=max_message_size,
                                      compress_threshold=compress_threshold or 1024)
        # (compress_threshold=None is the native transport's "off")
        self.compress = compression == "gzip" and compress_threshold is not None
        self.user_agent = user_agent
        self.transport: asyncio.Transport | None = None
        # streams are held weakly: one the application dropped unfinished is collected and
        # reset (``_collected``)
        self.calls: dict[int, _UnaryCall | weakref.ref[GrpcClientStream]] = {}
        # calls waiting for a stream, first come first served: the server's
        # SETTINGS_MAX_CONCURRENT_STREAMS is reached, or its SETTINGS have not arrived yet
        # (``GrpcConnection.can_open_stream``); they open as streams close (``_admit``)
        self._queue: deque[_UnaryCall | weakref.ref[GrpcClientStream]] = deque()
        self._loop = asyncio.get_event_loop()
        self._ready: asyncio.Future[None] = self._loop.create_future()
        self._closed = False
        self._goaway = False
        self._reason: RpcError | None = None
        self._flush_scheduled = False
        self._paused = False
        self._reading_paused = False
        self._replies = 0  # bytes answering the server's frames, written while paused
        self._batched = 0  # unary requests queued since the last full batch went out
        self._pings: dict[bytes, asyncio.Future[None]] = {}

    @property
    def closed(self) -> bool:
        return self._closed or self._goaway

    @property
    def pending(self) -> int:
        """Calls in flight, including those waiting for a stream."""
        return len(self.calls) + len(self._queue)

    # -- codec choice ----------------------------------------------------------------

    def _wire(self, params: Any, result_type: Any) -> _Wire:
        name = self.codec_name
        if name is None:
            first = params[0] if isinstance(params, (list, tuple)) and len(params) == 1 else params
            name = "proto" if (
                is_message_type(type(first)) or is_message_type(result_type)
            ) else "msgpack"
        if name in ("proto", "protobuf"):
            return _Wire(None, None, result_type, gp.CONTENT_TYPE)
        c = codecs.get(name)
        return _Wire(c, None, result_type, f"{gp.CONTENT_TYPE}+{c.name}")

    def _check_size(self, payload: bytes) -> None:
        if len(payload) > self.conn.max_message_size:
            raise ResourceExhausted(message=f"request of {len(payload)} bytes is over the "
                                    f"limit of {self.conn.max_message_size}")

    def _check_open(self) -> None:
        if self._closed or self._goaway:
            raise self._reason or Unavailable(message=f"connection to {self.authority} closed")

    def _start(self, method: str, wire: _Wire, timeout: float | None,
               metadata: Mapping[str, Any] | None) -> int:
        try:
            return self.conn.start_request(
                method_path(method), authority=self.authority, scheme=self.scheme,
                metadata=metadata, timeout=timeout, content_type=wire.content_type,
                encoding="gzip" if self.compress else "identity", user_agent=self.user_agent,
            )
        except ValueError as exc:
            raise InvalidArgument(message=str(exc)) from None
        except Exception as exc:  # h2 refusing a new stream (too many, connection closed)
            raise Unavailable(message=f"cannot open a stream: {exc}") from None

    # -- ClientConnection API --------------------------------------------------------

    async def call(
        self,
        method: str,
        params: list[Any] | dict[str, Any],
        timeout: float | None,
        metadata: Mapping[str, str] | None,
        result_type: Any,
    ) -> Any:
        self._check_open()
        wire = self._wire(params, result_type)
        payload = wire.encode(params, None)
        self._check_size(payload)
        fut: asyncio.Future[Any] = self._loop.create_future()
        call = _UnaryCall(fut, wire, result_type)
        call.method, call.request, call.metadata = method, payload, metadata
        conn = self.conn
        if self._queue or not conn.can_open_stream():  # wait for a stream, in turn
            self._queue.append(call)
        else:
            self._send_unary(call, self._start(method, wire, timeout, metadata), payload)
        if timeout is not None:
            call.timer = self._loop.call_later(timeout, self._expire, call, method, timeout)
        self._batched += 1
        if self._batched >= WRITE_BATCH:
            self._batched = 0
            self._flush()  # a full batch: the server can start on it now
        else:
            self._schedule_flush()
        try:
            return await fut
        except asyncio.CancelledError:
            sid = call.sid
            if sid == 0:
                self._unqueue(call)
            elif sid in self.calls:
                self._drop(sid)
                conn.reset(sid)
                self._schedule_flush()
                self._admit()
            raise

    def _send_unary(self, call: _UnaryCall, sid: int, payload: bytes) -> None:
        # (the request stays on the call until it ends, should the server refuse the stream)
        conn = self.conn
        conn.send_message(sid, payload)
        conn.end_request(sid)
        call.sid = sid
        self.calls[sid] = call

    def _expire(self, call: _UnaryCall, method: str, timeout: float) -> None:
        if call.sid == 0:  # still queued: no HEADERS were sent
            self._unqueue(call)
        else:
            self.calls.pop(call.sid, None)
            self.conn.reset(call.sid)
            self._schedule_flush()
            self._admit()
        if not call.fut.done():
            call.fut.set_exception(
                DeadlineExceeded(message=f"{method}: deadline of {timeout:g}s exceeded")
            )

    # -- the queue of calls waiting for a stream ---------------------------------------

    def _left(self, timer: asyncio.TimerHandle | None) -> float | None:
        """What is left of a call's timeout (its timer fires at the deadline)."""
        return None if timer is None else max(0.0, timer.when() - self._loop.time())

    def _retry_refused(self, c: _UnaryCall | GrpcClientStream) -> bool:
        """The server refused the stream (RST_STREAM REFUSED_STREAM: it was not processed,
        RFC 9113 8.7), typically because it had not yet retired streams that had already
        ended on our side. Like grpc-go's transparent retry, open it again, first in the
        queue, if what it sent can be sent again (not a stream that sent messages), at most
        REFUSED_RETRIES times; the protocol meanwhile opens fewer streams at once
        (``GrpcConnection.can_open_stream``). False: fail the call."""
        if c.retries >= REFUSED_RETRIES or self._closed or self._goaway:
            return False
        if isinstance(c, _UnaryCall):
            if c.fut.done():
                return False
            c.retries += 1
            c.sid = 0
            self._queue.appendleft(c)
            return True
        if c._done or c.sent:
            return False
        c.retries += 1
        c.sid = 0
        if c._collected is not None:
            c._collected.detach()  # re-registered when it opens again
        if c.opened is None or c.opened.done():
            c.opened = self._loop.create_future()
        self._queue.appendleft(c.ref)
        return True

    def _unqueue(self, entry: _UnaryCall | weakref.ref[GrpcClientStream]) -> None:
        with contextlib.suppress(ValueError):
            self._queue.remove(entry)
        if isinstance(entry, _UnaryCall) and entry.timer is not None:
            entry.timer.cancel()

    def _admit(self) -> None:
        """Open the streams of queued calls, in order, while the server's limit allows."""
        q = self._queue
        if not q or self._closed or self._goaway:
            return
        conn = self.conn
        opened = False
        while q and conn.can_open_stream():
            entry = q.popleft()
            if isinstance(entry, _UnaryCall):
                if entry.fut.done():
                    continue
                try:
                    sid = self._start(entry.method, entry.wire, self._left(entry.timer),
                                      entry.metadata)
                except RpcError as exc:
                    self._finish_unary(0, entry, exc)
                    continue
                self._send_unary(entry, sid, entry.request)
                opened = True
                continue
            st = entry()
            if st is None or st._done:  # dropped by the application while it waited
                continue
            try:
                self._open(st, self._left(st.timer), st.metadata, st.first)
            except RpcError as exc:
                st._finish(exc)
                continue
            if st.opened is not None and not st.opened.done():
                st.opened.set_result(None)
            if st._writing_done and st.ended:  # a refused stream half-closed before: again
                self.conn.end_request(st.sid)
            opened = True
        if opened:
            self._schedule_flush()

    def open_stream(
        self,
        method: str,
        params: Any,
        timeout: float | None,
        metadata: Mapping[str, str] | None,
        result_type: Any,
    ) -> GrpcClientStream:
        """Open a streaming call. ``params``: the request of a server stream (sent, then
        half-closed), an (async) iterable of requests to send in the background, or None
        (send with ``stream.send`` and ``stream.done_writing``)."""
        self._check_open()
        streaming_in = params is not None and (
            isinstance(params, AsyncIterable) or hasattr(params, "__next__")
        )
        wire = self._wire(None if streaming_in else params, result_type)
        first = None
        if params is not None and not streaming_in:
            first = wire.encode(params, None)
            self._check_size(first)
        st = GrpcClientStream(self, method, wire, result_type)
        st.first, st.metadata = first, metadata
        if self._queue or not self.conn.can_open_stream():
            # wait for a stream, in turn; writes wait for it too (``_wait_open``)
            st.opened = self._loop.create_future()
            self._queue.append(st.ref)  # (weakly: a stream dropped while it waits is skipped)
        else:
            self._open(st, timeout, metadata, first)
        if timeout is not None:
            st.timer = expire_later(st, timeout)
        if streaming_in:
            st.send_all(params)
        elif first is not None:
            st._writing_done = True
        self._schedule_flush()
        return st

    def _open(self, st: GrpcClientStream, timeout: float | None,
              metadata: Mapping[str, Any] | None, first: bytes | None) -> None:
        """Open the HTTP/2 stream of a streaming call (and send a server stream's request)."""
        sid = st.sid = self._start(st.method, st.wire, timeout, metadata)
        self.calls[sid] = st.ref
        st._cancel_on_collect(lambda: self._collected(sid))
        if first is not None:
            self.conn.send_message(sid, first)
            self.conn.end_request(sid)

    async def ping(self, timeout: float | None = None) -> float:
        self._check_open()
        data = os.urandom(8)
        fut: asyncio.Future[None] = self._loop.create_future()
        self._pings[data] = fut
        t0 = _MONO()
        self.conn.ping(data)
        self._flush()
        try:
            await asyncio.wait_for(fut, timeout)
        finally:
            self._pings.pop(data, None)
        return _MONO() - t0

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.conn.goaway()
        self._flush()
        self._fail_all(Unavailable(message="connection closed by the client"))
        if self.transport is not None:
            self.transport.close()

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # (uvloop's is not a subclass)
        set_nodelay(transport)
        self.conn.initiate()
        self._flush()
        if not self._ready.done():
            self._ready.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.transport = None
        self._fail_all(self._reason or Unavailable(
            message=f"connection to {self.authority} lost" + (f": {exc}" if exc else "")))
        if not self._ready.done():
            self._ready.set_exception(ConnectError(message=f"connection to {self.authority} lost"))

    def pause_writing(self) -> None:
        # Over the high-water mark: stream senders wait (``_write``). Reading goes on, so the
        # server's replies keep flowing, until the server makes us queue more than
        # REPLY_BUDGET bytes of answers to its own frames (see data_received).
        self._paused = True
        self._replies = 0

    def resume_writing(self) -> None:
        self._paused = False
        self._replies = 0
        if self._reading_paused:
            self._reading_paused = False
            if self.transport is not None:
                self.transport.resume_reading()
        self._wake_writers()

    def _collected(self, sid: int) -> None:
        """An unfinished stream was garbage-collected: reset its call."""
        if self.calls.pop(sid, None) is not None and not self._closed:
            self.conn.reset(sid)
            self._schedule_flush()
            self._admit()

    def _fail_queued(self, err: RpcError) -> None:
        """Calls waiting for a stream will never get one (connection closed, GOAWAY)."""
        queue, self._queue = self._queue, deque()
        for entry in queue:
            c = _live(entry)
            if isinstance(c, _UnaryCall):
                self._finish_unary(0, c, err)
            elif c is not None:
                c._finish(err)

    def _fail_all(self, err: RpcError) -> None:
        self._fail_queued(err)
        calls, self.calls = self.calls, {}
        for entry in calls.values():
            c = _live(entry)
            if c is None:
                continue
            if isinstance(c, _UnaryCall):
                if c.timer is not None:
                    c.timer.cancel()
                if not c.fut.done():
                    c.fut.set_exception(err)
            else:
                c._finish(err)
        for f in self._pings.values():
            if not f.done():
                f.set_exception(err)

    def _drop(self, sid: int) -> None:
        c = self.calls.pop(sid, None)
        if isinstance(c, _UnaryCall) and c.timer is not None:
            c.timer.cancel()

    def data_received(self, data: bytes) -> None:
        if self._paused:
            self._flush()  # what the application queued is not an answer to these bytes
        for ev in self.conn.receive(data, self._loop.time()):
            t = type(ev)
            if t is gp.MessageReceived:
                c = _live(self.calls.get(ev.stream_id))
                if c is None:
                    self.conn.consumed(ev.stream_id, ev.flow)
                elif isinstance(c, _UnaryCall):
                    self.conn.consumed(ev.stream_id, ev.flow)
                    if c.payload is not None:
                        self._finish_unary(ev.stream_id, c, Internal(
                            message="server sent more than one reply to a unary call"))
                        self.conn.reset(ev.stream_id)
                    else:
                        c.payload = ev.payload
                else:
                    try:
                        item = c.wire.decode(ev.payload, c.result_type)
                    except RpcError as exc:
                        self.calls.pop(ev.stream_id, None)
                        self.conn.reset(ev.stream_id)
                        c._finish(Internal(message=f"bad reply: {exc.message}"))
                        continue
                    c._feed(item, ev.flow)
            elif t is gp.TrailersReceived:
                self._on_trailers(ev)
            elif t is gp.ResponseStarted:
                c = _live(self.calls.get(ev.stream_id))
                if isinstance(c, GrpcClientStream):
                    c._feed_initial(ev.metadata)
            elif t is gp.StreamReset:
                c = _live(self.calls.pop(ev.stream_id, None))
                if (ev.error_code == gp.REFUSED_STREAM and c is not None
                        and self._retry_refused(c)):
                    continue
                err = RpcError(gp.RESET_STATUS.get(ev.error_code, Status.INTERNAL),
                               f"stream reset by the server (HTTP/2 error {ev.error_code})")
                if isinstance(c, _UnaryCall):
                    self._finish_unary(ev.stream_id, c, err)
                elif c is not None:
                    c._finish(err)
            elif t is gp.ConnectionClosed:
                self._on_goaway(ev)
            elif t is gp.PingAcked:
                f = self._pings.get(ev.data)
                if f is not None and not f.done():
                    f.set_result(None)
        if self._queue:  # streams closed or the server's SETTINGS came: open queued calls
            self._admit()
        if self._paused:
            self._flush_replies()
        else:
            self._flush()
        if self.calls:
            self._wake_writers()

    def _flush_replies(self) -> None:
        """Write what the server's bytes made us queue while the write buffer is over its
        high-water mark, and count it: PING and SETTINGS acks, WINDOW_UPDATE, RST_STREAM
        (DATA the server's window updates released is not counted: flow control bounds it).
        Past REPLY_BUDGET the server is sending without reading: stop reading it until the
        buffer drains (``resume_writing``), so it cannot grow our buffer without bound.
        Reading is not stopped on the high-water mark alone: a server doing the same (as
        wirecall's does) would then wait for us while we wait for it."""
        self._flush_scheduled = False
        flow_controlled = self.conn.unsent
        out = self.conn.data_to_send()
        if not out or self.transport is None:
            return
        self.transport.write(out)
        self._replies += len(out) - flow_controlled
        if self._replies > REPLY_BUDGET and self._paused and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def _on_trailers(self, ev: gp.TrailersReceived) -> None:
        c = _live(self.calls.pop(ev.stream_id, None))
        if c is None:
            return
        if isinstance(c, _UnaryCall):
            if ev.status != Status.OK:
                self._finish_unary(ev.stream_id, c, RpcError(ev.status, ev.message))
            elif c.payload is None:
                self._finish_unary(ev.stream_id, c, Internal(
                    message="server ended a unary call without a reply"))
            else:
                try:
                    result = c.wire.decode(c.payload, c.result_type)
                except RpcError as exc:
                    self._finish_unary(ev.stream_id, c, Internal(message=f"bad reply: "
                                                                   f"{exc.message}"))
                    return
                if c.timer is not None:
                    c.timer.cancel()
                if not c.fut.done():
                    c.fut.set_result(result)
            return
        if ev.initial is not None:
            c._feed_initial(ev.initial)
        if ev.status != Status.OK:
            c._finish(RpcError(ev.status, ev.message), ev.metadata)
        else:
            c._finish(None, ev.metadata)
        if not c._writing_done:  # the server finished before we half-closed: stop sending
            self.conn.reset(ev.stream_id, 0)

    def _finish_unary(self, sid: int, c: _UnaryCall, err: RpcError) -> None:
        if c.timer is not None:
            c.timer.cancel()
        if not c.fut.done():
            c.fut.set_exception(err)

    def _on_goaway(self, ev: gp.ConnectionClosed) -> None:
        self._goaway = True
        err = Unavailable(message=f"server sent GOAWAY ({ev.reason or ev.error_code})")
        self._reason = err
        # streams above last_stream_id were never processed: fail them (safe to retry)
        if ev.local or ev.error_code:
            self._fail_all(err)
            if self.transport is not None:
                self._flush()
                self.transport.close()
            return
        self._fail_queued(err)  # no new stream after GOAWAY: they were never sent
        for sid in [s for s in self.calls if s > ev.last_stream_id]:
            c = _live(self.calls.pop(sid))
            if isinstance(c, _UnaryCall):
                self._finish_unary(sid, c, err)
            elif c is not None:
                c._finish(err)

    def _wake_writers(self) -> None:
        if self._paused:
            return
        for sid, entry in self.calls.items():
            c = _live(entry)
            if isinstance(c, GrpcClientStream):
                w = c.waiter
                if w is not None and not w.done() and self.conn.pending(sid) <= HIGH_WATER:
                    w.set_result(None)


def client_ssl_context(opts: Mapping[str, Any]) -> ssl_mod.SSLContext:
    ctx = opts.get("ssl")
    if isinstance(ctx, ssl_mod.SSLContext):
        ctx.set_alpn_protocols(["h2"])
        return ctx
    ctx = ssl_mod.create_default_context(cafile=opts.get("cafile"))
    ctx.set_alpn_protocols(["h2"])
    return ctx


async def connect(
    url: URL,
    *,
    timeout: float | None = 10.0,
    codec: str | None = None,
    max_message_size: int = 4 * 1024 * 1024,
    compression: str | None = None,
    compress_threshold: int | None = 1024,
    **opts: Any,
) -> GrpcClientConnection:
    """Dial a gRPC server. ``codec``: force ``proto``/``msgpack``/``json`` (default: protobuf
    when the request or result type is a protobuf message, else msgpack).
    ``compression="gzip"`` (or ``?compression=gzip`` in the URL) sends ``grpc-encoding: gzip``
    and compresses request messages of at least ``compress_threshold`` bytes (None: off, as
    on the native transport); replies
    compressed by the server are inflated either way (``grpc-accept-encoding: identity,gzip``
    is always sent), the size limit applying to the inflated size.
    ``grpcs://`` takes ``ssl=`` (an SSLContext), ``cafile=`` and ``server_hostname=``."""
    loop = asyncio.get_running_loop()
    codec = codec or url.query.get("codec")
    proto = GrpcClientConnection(
        authority=url.hostport, scheme="https" if url.scheme == "grpcs" else "http",
        codec=codec, max_message_size=max_message_size,
        compression=compression or url.query.get("compression"),
        compress_threshold=compress_threshold,
    )
    tls = client_ssl_context(opts) if url.scheme == "grpcs" else None
    factory: Callable[[], GrpcClientConnection] = lambda: proto  # noqa: E731

    async def dial() -> None:
        if tls is not None:
            await loop.create_connection(
                factory, url.host, url.port, ssl=tls,
                server_hostname=opts.get("server_hostname", url.host),
            )
            assert proto.transport is not None
            sslobj = proto.transport.get_extra_info("ssl_object")
            if sslobj is not None and sslobj.selected_alpn_protocol() != "h2":
                proto.transport.close()
                raise ConnectError(message=f"dial {url}: the server did not agree to ALPN h2")
        else:
            await loop.create_connection(factory, url.host, url.port)
        await proto._ready

    await streams.dial(url, dial, timeout, lambda: proto.transport)
    return proto

