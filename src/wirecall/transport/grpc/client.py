"""gRPC client side: :class:`GrpcClientConnection` (one HTTP/2 connection, calls
multiplexed as streams; ``call`` for unary, ``open_stream`` for the three streaming modes) and
``connect`` (``grpc://``: h2c with prior knowledge; ``grpcs://``: TLS with ALPN ``h2``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl as ssl_mod
import time
import weakref
from collections import deque
from collections.abc import AsyncIterable, Callable, Mapping
from typing import Any

from ... import codec as codecs
from ...codec.protobuf import MessageWire, is_message_type
from ...errors import (
    ConnectError,
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    ResourceExhausted,
    RpcError,
    Unavailable,
    Unimplemented,
)
from ...protocol import grpc as gp
from ...status import Status
from ...streaming.model import expire_later
from .. import sockets
from ..base import URL, ClientConnection
from ..sockets import WRITE_BATCH, CoalescedWriter, set_nodelay
from ..tls import client_context
from .calls import GrpcClientStream, UnaryCall, live_call
from .common import HIGH_WATER, alpn_h2

__all__ = ["GrpcClientConnection", "client_ssl_context", "connect", "method_path"]

# client: bytes of answers to the server's frames queued over the high-water mark before the
# client stops reading (a server that sends without reading)
REPLY_BUDGET = 64 * 1024
_MONO = time.monotonic
# times a call whose stream the server refused (REFUSED_STREAM: not processed) is opened
# again before it fails with UNAVAILABLE (a server refusing everything is not retried forever)
REFUSED_RETRIES = 5


def method_path(method: str) -> str:
    """``pkg.Service.Method`` -> ``/pkg.Service/Method`` (``/a/b`` is used as is)."""
    if method.startswith("/"):
        return method
    svc, dot, meth = method.rpartition(".")
    if not dot:
        raise InvalidArgument(message=f"gRPC method {method!r} needs a service: Service.Method")
    return f"/{svc}/{meth}"


class GrpcClientConnection(CoalescedWriter, ClientConnection, asyncio.Protocol):
    """One HTTP/2 connection to a gRPC server; calls are multiplexed as streams."""

    conn: gp.GrpcConnection

    def __init__(
        self, *, authority: str, scheme: str = "http", codec: str | None = None,
        max_message_size: int = 4 * 1024 * 1024, compression: str | None = None,
        compress_threshold: int | None = 1024, user_agent: str = gp.USER_AGENT,
        http2_backend: str | None = None,
    ) -> None:
        self.authority = authority
        self.scheme = scheme
        self.codec_name = codec
        if compression not in (None, *gp.COMPRESSIONS):
            raise ValueError(f"unsupported compression {compression!r}: "
                             f"use one of {', '.join(gp.COMPRESSIONS)}")
        self.conn = gp.GrpcConnection(client_side=True, max_message_size=max_message_size,
                                      compress_threshold=compress_threshold or 1024,
                                      backend=http2_backend)
        # (compress_threshold=None is the native transport's "off")
        self.compress = compression == "gzip" and compress_threshold is not None
        self.user_agent = user_agent
        self.transport: asyncio.Transport | None = None
        # streams are held weakly: one the application dropped unfinished is collected and
        # reset (``_collected``)
        self.calls: dict[int, UnaryCall | weakref.ref[GrpcClientStream]] = {}
        # calls waiting for a stream, first come first served: the server's
        # SETTINGS_MAX_CONCURRENT_STREAMS is reached, or its SETTINGS have not arrived yet
        # (``GrpcConnection.can_open_stream``); they open as streams close (``admit``)
        self._queue: deque[UnaryCall | weakref.ref[GrpcClientStream]] = deque()
        self._loop = asyncio.get_event_loop()
        self._ready: asyncio.Future[None] = self._loop.create_future()
        self._closed = False
        self._goaway = False
        self._reason: RpcError | None = None
        self._flush_scheduled = False
        self.paused = False
        self._reading_paused = False
        self._replies = 0  # bytes answering the server's frames, written while paused
        self._batched = 0  # unary requests queued since the last full batch went out
        self._pings: dict[bytes, asyncio.Future[None]] = {}
        #: (request type, result type) -> its MessageWire (immutable), for the next calls
        self._wires: dict[tuple[Any, Any], MessageWire] = {}

    @property
    def closed(self) -> bool:
        return self._closed or self._goaway

    @property
    def pending(self) -> int:
        """Calls in flight, including those waiting for a stream."""
        return len(self.calls) + len(self._queue)

    # -- codec choice ----------------------------------------------------------------

    def _wire(self, params: Any, result_type: Any) -> MessageWire:
        first = params[0] if isinstance(params, (list, tuple)) and len(params) == 1 else params
        key = (type(first), result_type)
        try:
            wire = self._wires.get(key)
        except TypeError:  # an unhashable result type: chosen each time
            return self._choose_wire(first, result_type)
        if wire is None:
            wire = self._choose_wire(first, result_type)
            if len(self._wires) < 64:
                self._wires[key] = wire
        return wire

    def _choose_wire(self, first: Any, result_type: Any) -> MessageWire:
        name = self.codec_name
        if name is None:
            name = "proto" if (
                is_message_type(type(first)) or is_message_type(result_type)
            ) else "msgpack"
        if name in ("proto", "protobuf"):
            return MessageWire(None, None, result_type, gp.CONTENT_TYPE)
        c = codecs.get(name)
        return MessageWire(c, None, result_type, f"{gp.CONTENT_TYPE}+{c.name}")

    def check_size(self, payload: bytes) -> None:
        if len(payload) > self.conn.max_message_size:
            raise ResourceExhausted(message=f"request of {len(payload)} bytes is over the "
                                    f"limit of {self.conn.max_message_size}")

    def _check_open(self) -> None:
        if self._closed or self._goaway:
            raise self._reason or Unavailable(message=f"connection to {self.authority} closed")

    def _start(self, method: str, wire: MessageWire, timeout: float | None,
               metadata: Mapping[str, Any] | None, unary: bool) -> int:
        try:
            return self.conn.start_request(
                method_path(method), authority=self.authority, scheme=self.scheme,
                metadata=metadata, timeout=timeout, content_type=wire.content_type,
                encoding="gzip" if self.compress else "identity", user_agent=self.user_agent,
                unary=unary,
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
        self.check_size(payload)
        fut: asyncio.Future[Any] = self._loop.create_future()
        call = UnaryCall(fut, wire, result_type)
        call.method, call.request, call.metadata = method, payload, metadata
        conn = self.conn
        if self._queue or not conn.can_open_stream():  # wait for a stream, in turn
            self._queue.append(call)
        else:
            self._send_unary(call, self._start(method, wire, timeout, metadata, True), payload)
        if timeout is not None:
            call.timer = self._loop.call_later(timeout, self._expire, call, method, timeout)
        self._batched += 1
        if self._batched >= WRITE_BATCH or len(self.calls) <= 1:  # (alone: no batch to wait for)
            self._batched = 0
            self._flush()  # a full batch: the server can start on it now
        else:
            self._schedule_flush()
        try:
            return await fut
        except asyncio.CancelledError:
            sid = call.sid
            if sid == 0:
                self.unqueue(call)
            elif sid in self.calls:
                self.drop(sid)
                conn.reset(sid)
                self._schedule_flush()
                self.admit()
            raise

    def _send_unary(self, call: UnaryCall, sid: int, payload: bytes) -> None:
        # (the request stays on the call until it ends, should the server refuse the stream)
        self.conn.send_message(sid, payload, end=True)
        call.sid = sid
        self.calls[sid] = call

    def _expire(self, call: UnaryCall, method: str, timeout: float) -> None:
        if call.sid == 0:  # still queued: no HEADERS were sent
            self.unqueue(call)
        else:
            self.calls.pop(call.sid, None)
            self.conn.reset(call.sid)
            self._schedule_flush()
            self.admit()
        if not call.fut.done():
            call.fut.set_exception(
                DeadlineExceeded(message=f"{method}: deadline of {timeout:g}s exceeded")
            )

    # -- the queue of calls waiting for a stream ---------------------------------------

    def _left(self, timer: asyncio.TimerHandle | None) -> float | None:
        """What is left of a call's timeout (its timer fires at the deadline)."""
        return None if timer is None else max(0.0, timer.when() - self._loop.time())

    def _retry_refused(self, c: UnaryCall | GrpcClientStream) -> bool:
        """The server refused the stream (RST_STREAM REFUSED_STREAM: it was not processed,
        RFC 9113 8.7), typically because it had not yet retired streams that had already
        ended on our side. Like grpc-go's transparent retry, open it again, first in the
        queue, if what it sent can be sent again (not a stream that sent messages), at most
        REFUSED_RETRIES times; the protocol meanwhile opens fewer streams at once
        (``GrpcConnection.can_open_stream``). False: fail the call."""
        if c.retries >= REFUSED_RETRIES or self._closed or self._goaway:
            return False
        if isinstance(c, UnaryCall):
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

    def unqueue(self, entry: UnaryCall | weakref.ref[GrpcClientStream]) -> None:
        with contextlib.suppress(ValueError):
            self._queue.remove(entry)
        if isinstance(entry, UnaryCall) and entry.timer is not None:
            entry.timer.cancel()

    def admit(self) -> None:
        """Open the streams of queued calls, in order, while the server's limit allows."""
        q = self._queue
        if not q or self._closed or self._goaway:
            return
        conn = self.conn
        opened = False
        while q and conn.can_open_stream():
            entry = q.popleft()
            if isinstance(entry, UnaryCall):
                if entry.fut.done():
                    continue
                try:
                    sid = self._start(entry.method, entry.wire, self._left(entry.timer),
                                      entry.metadata, True)
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
            self.check_size(first)
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
        sid = st.sid = self._start(st.method, st.wire, timeout, metadata, False)
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
        self.paused = True
        self._replies = 0

    def resume_writing(self) -> None:
        self.paused = False
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
            self.admit()

    def _fail_queued(self, err: RpcError) -> None:
        """Calls waiting for a stream will never get one (connection closed, GOAWAY)."""
        queue, self._queue = self._queue, deque()
        for entry in queue:
            c = live_call(entry)
            if isinstance(c, UnaryCall):
                self._finish_unary(0, c, err)
            elif c is not None:
                c._finish(err)

    def _fail_all(self, err: RpcError) -> None:
        self._fail_queued(err)
        calls, self.calls = self.calls, {}
        for entry in calls.values():
            c = live_call(entry)
            if c is None:
                continue
            if isinstance(c, UnaryCall):
                if c.timer is not None:
                    c.timer.cancel()
                if not c.fut.done():
                    c.fut.set_exception(err)
            else:
                c._finish(err)
        for f in self._pings.values():
            if not f.done():
                f.set_exception(err)

    def drop(self, sid: int) -> None:
        c = self.calls.pop(sid, None)
        if isinstance(c, UnaryCall) and c.timer is not None:
            c.timer.cancel()

    def data_received(self, data: bytes) -> None:
        if self.paused:
            self._flush()  # what the application queued is not an answer to these bytes
        for ev in self.conn.receive(data, self._loop.time()):
            t = type(ev)
            if t is gp.MessageReceived:
                c = live_call(self.calls.get(ev.stream_id))
                if c is None:
                    self.conn.consumed(ev.stream_id, ev.flow)
                elif isinstance(c, UnaryCall):
                    self.conn.consumed(ev.stream_id, ev.flow)
                    if c.payload is not None:
                        # gRPC carries no call mode: a second reply means a stream method
                        name = c.method.strip("/").replace("/", ".")
                        self._finish_unary(ev.stream_id, c, Unimplemented(
                            message=f"method {name} is a stream (the server sent more than "
                                    "one reply): call it with client.stream()"))
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
                c = live_call(self.calls.get(ev.stream_id))
                if isinstance(c, GrpcClientStream):
                    c._feed_initial(ev.metadata)
            elif t is gp.StreamReset:
                c = live_call(self.calls.pop(ev.stream_id, None))
                if (ev.error_code == gp.REFUSED_STREAM and c is not None
                        and self._retry_refused(c)):
                    continue
                if ev.error_code == gp.REFUSED_STREAM and (self._goaway or self._closed):
                    # not processed, and not to be retried on this connection: a ConnectError
                    # (never sent), which wirecall.Client retries once on a live connection
                    err: RpcError = ConnectError(
                        message=f"{self.authority}: call refused unprocessed (REFUSED_STREAM) "
                                "on a connection going away")
                else:
                    err = RpcError(gp.RESET_STATUS.get(ev.error_code, Status.INTERNAL),
                                   f"stream reset by the server (HTTP/2 error {ev.error_code})")
                if isinstance(c, UnaryCall):
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
            self.admit()
        if self.paused:
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
        if self._replies > REPLY_BUDGET and self.paused and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def _on_trailers(self, ev: gp.TrailersReceived) -> None:
        c = live_call(self.calls.pop(ev.stream_id, None))
        if c is None:
            return
        if isinstance(c, UnaryCall):
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

    def _finish_unary(self, sid: int, c: UnaryCall, err: RpcError) -> None:
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
        # no new stream after GOAWAY: they were never sent (wirecall.Client retries them)
        self._fail_queued(ConnectError(message=f"{err.message}: call not sent"))
        for sid in [s for s in self.calls if s > ev.last_stream_id]:
            c = live_call(self.calls.pop(sid))
            if isinstance(c, UnaryCall):
                self._finish_unary(sid, c, err)
            elif c is not None:
                c._finish(err)

    def _wake_writers(self) -> None:
        if self.paused:
            return
        for sid, entry in self.calls.items():
            c = live_call(entry)
            if isinstance(c, GrpcClientStream):
                w = c.waiter
                if w is not None and not w.done() and self.conn.pending(sid) <= HIGH_WATER:
                    w.set_result(None)


def client_ssl_context(opts: Mapping[str, Any]) -> ssl_mod.SSLContext:
    ctx = opts.get("ssl")
    if isinstance(ctx, ssl_mod.SSLContext):
        return alpn_h2(ctx)
    return alpn_h2(client_context("grpcs", cafile=opts.get("cafile"),
                                  certfile=opts.get("certfile"), keyfile=opts.get("keyfile")))


async def connect(
    url: URL,
    *,
    timeout: float | None = 10.0,
    codec: str | None = None,
    max_message_size: int = 4 * 1024 * 1024,
    compression: str | None = None,
    compress_threshold: int | None = 1024,
    http2_backend: str | None = None,
    **opts: Any,
) -> GrpcClientConnection:
    """Dial a gRPC server. ``codec``: force ``proto``/``msgpack``/``json`` (default: protobuf
    when the request or result type is a protobuf message, else msgpack).
    ``compression="gzip"`` (or ``?compression=gzip`` in the URL) sends ``grpc-encoding: gzip``
    and compresses request messages of at least ``compress_threshold`` bytes (None: off, as
    on the native transport); replies
    compressed by the server are inflated either way (``grpc-accept-encoding: identity,gzip``
    is always sent), the size limit applying to the inflated size.
    ``grpcs://`` takes ``ssl=`` (an SSLContext), ``cafile=`` and ``server_hostname=``.
    ``http2_backend="ngh2"|"h2"`` (or ``?http2_backend=``): the HTTP/2 core (default:
    ``$WIRECALL_GRPC_HTTP2``, else ngh2 when installed, else h2)."""
    loop = asyncio.get_running_loop()
    codec = codec or url.query.get("codec")
    proto = GrpcClientConnection(
        authority=url.hostport, scheme="https" if url.scheme == "grpcs" else "http",
        codec=codec, max_message_size=max_message_size,
        compression=compression or url.query.get("compression"),
        compress_threshold=compress_threshold,
        http2_backend=http2_backend or url.query.get("http2_backend"),
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

    await sockets.dial(url, dial, timeout, lambda: proto.transport)
    return proto
