"""The native protocol's server side (``tcp://``, ``unix://``): one :class:`ServerProtocol`
per accepted connection.

Every complete frame read is handled at once and all answers ready at the end of the read go
out in one write. Plain requests come straight from the parser's callback and run on the
server's fast lane (``Dispatcher.fast_lane``) when it has an entry for the method; everything
else goes through ``Dispatcher.start_call`` / ``start_stream`` (streams: :mod:`.server_streams`).
The server is seen only through :class:`wirecall.seam.Dispatcher`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import typing
import zlib
from collections.abc import Mapping
from functools import partial
from typing import Any

import msgspec

from ... import codec as codecs
from ...codec.negotiate import CODEC_KEY, CallCodecs
from ...context import CURRENT, EMPTY_METADATA, Context
from ...errors import FrameTooLarge, Internal, InvalidArgument, ProtocolError, RpcError
from ...protocol import frames as fr
from ...protocol.flood import FloodGuard
from ...seam import Dispatcher, FastEntry
from ...status import Status
from ..base import URL
from ..sockets import (
    WRITE_BATCH,
    CoalescedWriter,
    ConnectionListener,
    listen,
    peer_identity,
    peer_name,
    set_nodelay,
    socket_options,
)
from .messages import encode_error_details, typed_params
from .server_streams import ServerStreams

__all__ = ["ServerProtocol", "make_server_protocol", "serve"]

log = logging.getLogger("wirecall.tcp")

#: sockets.WRITE_BATCH messages, counted in queued frame parts (a reply is 2)
SERVER_WRITE_PARTS = 2 * WRITE_BATCH


class ServerProtocol(CoalescedWriter, asyncio.Protocol):
    """One accepted connection speaking the native protocol."""

    conn: fr.FrameConnection
    #: the transport name handlers see in ``Context.transport`` (``quic`` reuses this class)
    scheme = "tcp"
    #: the TLS peer certificate's identity (``transport.tls.peer_identity``)
    identity = ""

    def __init__(
        self, server: Dispatcher, listener: ConnectionListener | None = None, **opts: Any
    ) -> None:
        self.server = server
        self.listener = listener
        self.limits = lim = server.limits
        self.conn = fr.FrameConnection(
            client=False,
            max_frame_size=server.max_message_size,
            codecs=_codec_ids(),
            max_method_names=lim.max_method_names,
            max_method_name_bytes=lim.max_method_name_bytes,
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
        self._write_waiters: list[asyncio.Future[None]] = []  # stream senders (see wait_writable)
        self._frame_timer: asyncio.TimerHandle | None = None  # an unfinished frame's time limit
        self._control = FloodGuard(lim.max_control_frames_per_second)
        self._max_unsent = lim.max_unsent_bytes
        self._backlog: collections.deque[fr.Event] = collections.deque()
        self._max_calls: int = server.max_concurrent_calls
        #: the server's fast lane for this codec: method -> (handler, params decoder) or None
        self._lane: Mapping[str, FastEntry | None] = server.fast_lane(self._module)
        #: the streaming calls being served on this connection
        self.streams = ServerStreams(self)
        #: calls with their own codec (``wirecall-codec`` metadata: codec/negotiate.py)
        self.call_codecs = CallCodecs(self.codec)
        self.conn.set_fast_callbacks(on_request=self._on_plain_request)

    # -- connection lifecycle ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)  # uvloop's is no subclass
        set_nodelay(transport)
        self.peer = peer_name(transport)
        self.identity = peer_identity(transport)
        if self.listener is not None:
            self.listener.connections.add(self)
        self._arm_keepalive()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.listener is not None:
            self.listener.connections.discard(self)
        for timer in (self._keepalive, self._frame_timer):
            if timer is not None:
                timer.cancel()
        self._keepalive = self._frame_timer = None
        calls, self.calls = self.calls, {}
        for ctx in calls.values():
            ctx.cancel()
        self.transport = None
        # no reference cycle may outlive the connection (it is freed without the cyclic GC):
        # the parser's callbacks and the stream table refer back to this object
        self.conn.release()
        self.streams.detach()
        self._backlog.clear()
        self._wake_writers()

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
        if self.transport is None or self._lane is _CLOSED_LANE:
            return
        self._lane = _CLOSED_LANE  # the rest of this read's plain requests are dropped
        self.conn.fail(message, status)
        self._flush()
        self.transport.close()

    # -- reading -----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._last_activity = time.monotonic()
        self._in_read = True  # plain requests are handled while the parser runs
        conn = self.conn
        try:
            events = conn.receive_data(data)
        except ProtocolError as exc:
            self._in_read = False
            log.warning("closing connection from %s: %s", self.peer, exc.message)
            self.close_with(exc.status, exc.message)
            return
        if self._frame_timer is None and conn.unfinished:
            self._arm_frame_timer()
        if conn.control_frames and self._metered(conn):
            return
        if not events:  # the hot path: every frame was a plain request, already handled
            self._in_read = False
            out = conn.data_to_send()
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
        self._paused_out = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._writable = True
        self._paused_out = False
        self._wake_writers()
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
                if self.conn.closed:  # a protocol error closed it: the rest is dropped
                    self._backlog.clear()
                    break
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
            if conn.closed:
                return
            if len(self.calls) >= self._max_calls:
                conn.send_error(
                    ev.call_id,  # type: ignore[attr-defined]
                    Status.RESOURCE_EXHAUSTED,
                    f"too many calls in flight on this connection (limit {self._max_calls})",
                )
            else:
                self._on_request(ev)  # type: ignore[arg-type]
            if conn.queued_bytes >= self.FLUSH_AT or len(conn.queued_parts) >= SERVER_WRITE_PARTS:
                self._flush()  # may call pause_writing()
        elif t is fr.CancelReceived:
            self.call_codecs.calls.pop(ev.call_id, None)  # type: ignore[attr-defined]
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
                self._lane = self.server.fast_lane(self._module)
        elif t is fr.FrameRefused:
            self._on_refused(ev)  # type: ignore[arg-type]
        elif t is fr.PongReceived:
            self._ping_outstanding = False
            if self.drain_pending and ev.opaque == self.DRAIN_PING:  # type: ignore[attr-defined]
                self._final_goaway()
        elif t is fr.GoAwayReceived:
            self.going_away = True
        elif t is fr.MessageReceived or t is fr.WindowUpdated:
            self._on_stream_frame(ev)

    def _on_stream_frame(self, ev: fr.Event) -> None:
        self.streams.on_frame(ev)

    def _on_refused(self, ev: fr.FrameRefused) -> None:
        msg = (
            f"message of {ev.size} bytes exceeds the server limit of "
            f"{self.conn.max_frame_size} bytes"
        )
        if ev.frame_type == fr.REQUEST:
            self.conn.send_error(ev.call_id, Status.RESOURCE_EXHAUSTED, msg)
        else:
            log.warning("%s: refused oversized frame: %s", self.peer, msg)

    def _run_fast(
        self, cid: int, lane: FastEntry, body: bytes | memoryview,
        ctx: Context,
    ) -> bool:
        """The fast lane: params decoded straight into the handler's annotated types, the
        inline handler run now, its reply queued. False when the params do not decode that
        way (the general path then reports them with its own messages)."""
        try:
            args = lane[1].decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return False
        token = CURRENT.set(ctx)
        try:
            result = lane[0](*args)
        except BaseException as exc:  # every failure goes to the caller
            self._reply_error(cid, ctx, exc)
            return True
        finally:
            CURRENT.reset(token)
        if self._compress_threshold is None:
            try:
                data = self._encode(result)
                ctx.response_size = len(data)
                self.conn.send_response(cid, data)
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
        if self.calls and cid in self.calls:
            self._reused(cid)
            return
        if self._writable and not self._backlog:
            lane = self._lane[method]
            if (
                lane is not None
                and not self.going_away_sent
                and self._run_fast(
                    cid, lane, body, Context(method, EMPTY_METADATA, None, self.peer, self.scheme,
                                           self.identity, len(body))
                )
            ):
                conn = self.conn
                if (len(conn.queued_parts) >= SERVER_WRITE_PARTS
                        or conn.queued_bytes >= self.FLUSH_AT):
                    self._flush()  # may call pause_writing()
                return
        ev = fr.RequestReceived(cid, method, body, None, None, False, False, False)
        if self._backlog or not self._writable:
            self._backlog.append(ev)
        else:
            self._process_one(ev)

    def _on_request(self, ev: fr.RequestReceived) -> None:
        cid = ev.call_id
        if self.conn.closed:
            return
        if cid in self.calls:
            self._reused(cid)
            return
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
            self.scheme,
            self.identity,
            len(ev.body),
        )
        server = self.server
        body = ev.body
        if ev.metadata and CODEC_KEY in ev.metadata and not self.going_away_sent:
            self._on_coded_request(ev, ctx)
            return
        if not ev.compressed and not self.going_away_sent and (timeout is None or timeout > 0):
            lane = self._lane[ev.method]
            if lane is not None and self._run_fast(cid, lane, body, ctx):
                return
        try:
            if ev.compressed:
                body = fr.decompress(body, self.conn.max_frame_size)
            if self.codec.id != 3:
                params = self._decode(body) if len(body) else None
            else:  # protobuf decodes into the method's request class
                params = typed_params(self.codec, server.find(ev.method), body)
        except (msgspec.DecodeError, ProtocolError) as exc:
            msg = exc.message if isinstance(exc, RpcError) else str(exc)
            self.conn.send_error(
                cid, Status.INVALID_ARGUMENT, f"cannot decode params of {ev.method}: {msg}"
            )
            return
        if self.going_away_sent:
            self.conn.send_error(cid, Status.UNAVAILABLE, "server is shutting down")
            return
        # the server runs it (inline: before start_call returns, the reply queued in this read)
        self.calls[cid] = ctx
        server.start_call(ev.method, params, ctx, partial(self._done, cid, ctx))

    def _on_coded_request(self, ev: fr.RequestReceived, ctx: Context) -> None:
        """A call naming its own codec: one argument, decoded into the method's parameter
        type by that codec's per-connection session; the reply encoded the same way."""
        cc = self.call_codecs
        md = ev.metadata or {}
        try:
            codec = cc.server_codec(md)
            spec = self.server.lookup(ev.method)
            if not spec.single:
                raise InvalidArgument(message=f"{spec.name} takes {len(spec.params)} "
                                      f"parameters; a {codec.name} call passes exactly one")
            session = cc.session(codec)
            body = ev.body
            if ev.compressed:
                body = fr.decompress(body, self.conn.max_frame_size)
            params = session.decode(body, [spec.params[0].type], md)
        except RpcError as exc:
            self.conn.send_error(ev.call_id, exc.status, exc.message)
            return
        except (ValueError, TypeError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.conn.send_error(ev.call_id, Status.INVALID_ARGUMENT,
                                 f"cannot decode params of {ev.method}: {exc}")
            return
        cc.calls[ev.call_id] = (session, spec.result_type)
        self.calls[ev.call_id] = ctx
        self.server.start_call(spec, params, ctx, partial(self._done, ev.call_id, ctx))

    def _reply_coded(self, cid: int, ctx: Context, result: Any, coded: Any) -> None:
        session, rtype = coded
        try:
            body, md = session.encode(result, rtype)
            ctx.response_size = len(body)
            self.conn.send_response(cid, body, md)
        except Exception as exc:
            self._reply_error(cid, ctx, Internal(
                message=f"cannot encode the result of {ctx.method}: {exc}"))

    def _on_stream_request(self, ev: fr.RequestReceived) -> None:
        self.streams.on_request(ev)

    def _reused(self, cid: int) -> None:
        """A REQUEST reusing the id of a call in flight: a protocol error (docs/protocol.md)."""
        log.warning("closing connection from %s: call id %d reused while in flight", self.peer, cid)
        self.close_with(Status.INTERNAL, f"call id {cid} reused while that call is in flight")

    # -- budgets (docs/limits.md) ----------------------------------------------------------

    def _metered(self, conn: fr.FrameConnection) -> bool:
        """PING/SETTINGS frames of this read against the per-second budget (True: closed)."""
        n, conn.control_frames = conn.control_frames, 0
        if not self._control.hit(self._last_activity, n):
            return False
        self._in_read = False
        self.close_with(Status.RESOURCE_EXHAUSTED, (
            f"more than {self._control.limit} control frames (PING, SETTINGS) per second "
            "(limits.max_control_frames_per_second)"))
        return True

    def _arm_frame_timer(self) -> None:
        self._frame_timer = self._loop.call_later(
            self.limits.frame_timeout, self._on_frame_timer, self.conn.partials)

    def _on_frame_timer(self, mark: int) -> None:
        self._frame_timer = None
        conn = self.conn
        if self.transport is None or not conn.unfinished:
            return
        if conn.partials != mark:  # another frame since: its own clock starts now
            self._arm_frame_timer()
            return
        limit = self.limits.frame_timeout
        log.warning("closing connection from %s: frame unfinished after %gs", self.peer, limit)
        self.close_with(Status.RESOURCE_EXHAUSTED,
                        f"frame not completed within {limit:g}s (limits.frame_timeout)")

    @property
    def writable(self) -> bool:
        """The transport takes more output (its buffer is under the high-water mark)."""
        return self._writable

    def wait_writable(self) -> asyncio.Future[None] | None:
        """None when writable, else a future done once the peer has read enough."""
        if self._writable or self.transport is None:
            return None
        fut: asyncio.Future[None] = self._loop.create_future()
        self._write_waiters.append(fut)
        return fut

    def _wake_writers(self) -> None:
        waiters, self._write_waiters = self._write_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

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
        if self.call_codecs.calls:
            coded = self.call_codecs.calls.pop(cid, None)
            if coded is not None:
                self._reply_coded(cid, ctx, result, coded)
                return
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
        ctx.response_size = len(body)
        try:
            conn.send_response(cid, body, compressed=compressed)
        except FrameTooLarge:
            self._reply_error(cid, ctx, RpcError(
                Status.RESOURCE_EXHAUSTED,
                f"the reply of {ctx.method} ({len(body)} bytes) exceeds the client's "
                f"limit of {conn.peer_max_frame_size} bytes",
            ))

    def _reply_error(self, cid: int, ctx: Context, exc: BaseException) -> None:
        if self.call_codecs.calls:
            self.call_codecs.calls.pop(cid, None)
        err = exc if isinstance(exc, RpcError) else self.server.error_from(exc, ctx)
        conn = self.conn
        before = conn.queued_bytes
        conn.send_error(cid, err.status, err.message, encode_error_details(self.codec, err.details))
        ctx.response_size = conn.queued_bytes - before  # the error frame

    # -- writing -----------------------------------------------------------------------

    def flush_soon(self) -> None:
        """Write what is queued at the end of the current read (or loop iteration)."""
        if not self._in_read:
            self._schedule_flush()

    def close_connection(self) -> None:
        if self.transport is not None:
            self._flush()
            self.transport.close()

    #: a two-step GOAWAY waits for the answer to this PING (see :meth:`goaway`)
    DRAIN_PING = b"wcdrain!"
    drain_pending = False

    def goaway(self) -> None:
        """Refuse new calls: a GOAWAY naming the last call seen. With a hand-over
        (``Server.handoff``, set for ``wirecall serve --workers``) in two steps, as gRPC's: a
        GOAWAY naming every call id and a PING first, so calls the client sent before it read
        the GOAWAY are still served; the final GOAWAY once the PING is answered."""
        if self.transport is None or self.going_away_sent or self.drain_pending:
            return
        if getattr(self.server, "handoff", 0) > 0:
            self.drain_pending = True
            self.conn.send_goaway(0xFFFFFFFF, Status.UNAVAILABLE, "server is shutting down")
            self.conn.send_ping(self.DRAIN_PING)
            self._flush()
            return
        self._final_goaway()

    def _final_goaway(self) -> None:
        self.drain_pending = False
        self.going_away_sent = True
        self.conn.send_goaway(self.last_call_id, Status.UNAVAILABLE, "server is shutting down")
        self._flush()


class _ClosedLane(dict[str, "FastEntry | None"]):
    """The lane of a connection closed on an error: no method runs on it any more."""

    def __missing__(self, method: str) -> FastEntry | None:
        return None


_CLOSED_LANE = _ClosedLane()


def _codec_ids() -> frozenset[int]:
    # (optional codecs are imported when a client's preface asks for one, not here)
    return codecs.known_ids()


def make_server_protocol(server: Dispatcher, **opts: Any) -> asyncio.Protocol:
    """A native-protocol server protocol (for the one-port sniffing listener)."""
    listener = opts.pop("listener", None)
    return ServerProtocol(server, listener, **opts)


async def serve(server: Dispatcher, url: URL, **opts: Any) -> ConnectionListener:
    """Listen on ``tcp://host:port`` or ``unix:///path`` for the native protocol."""
    sock = socket_options(opts, url.scheme)
    scheme = "tls" if url.scheme == "tls" else ServerProtocol.scheme

    def make(lst: ConnectionListener) -> ServerProtocol:
        proto = ServerProtocol(server, lst, **opts)
        proto.scheme = scheme
        return proto

    return await listen(url, make, **sock)
