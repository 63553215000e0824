"""Streaming calls served on the native protocol (``tcp://``, ``unix://``): see
``docs/protocol.md`` (Streaming) and ``docs/streaming.md``.

A streaming call is a REQUEST with flag STREAM (plus END_STREAM when the client has nothing
more to send: a server stream); messages travel as MESSAGE frames; a MESSAGE with END_STREAM
and an empty body is a pure half-close (it carries no message and costs no credit). The call
ends with RESPONSE (the result of a client stream; empty otherwise) or ERROR; CANCEL ends it
early. Flow control counts messages: each direction starts with 16 credits, and the receiver
returns credit with WINDOW_UPDATE as its application consumes messages (in batches of half a
window), so a slow reader stops the sender instead of growing a buffer.

The unary hot path in :mod:`.server` is untouched: it hands streaming frames to the
connection's :class:`ServerStreams`, which starts handlers through ``Dispatcher.start_stream``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

import msgspec

from ... import codec as codecs
from ...context import Context
from ...errors import RpcError, Unavailable, wrong_mode
from ...protocol import frames as fr
from ...seam import BIDI_STREAM, CLIENT_STREAM, UNARY, Dispatcher
from ...status import Status
from ...streaming.model import Inbound
from .messages import GRANT_AT, INITIAL_WINDOW, decode_message, typed_params

_NO_REQUEST = (CLIENT_STREAM, BIDI_STREAM)  # modes whose call opens with no request message

__all__ = ["ServerStreams", "StreamingConnection"]


class StreamingConnection(Protocol):
    """What the stream code needs of its server connection (:class:`.server.ServerProtocol`)."""

    conn: fr.FrameConnection
    server: Dispatcher
    codec: codecs.Codec
    peer: str
    #: the transport name handlers see (``tcp``, ``quic``)
    scheme: str
    identity: str
    #: this server sent GOAWAY: new calls are refused
    going_away_sent: bool
    #: the calls (unary and streaming) in flight, by id: CANCEL and connection loss cancel them
    calls: dict[int, Context]
    transport: asyncio.Transport | None

    def flush_soon(self) -> None:
        """Write what is queued at the end of the current read (or loop iteration)."""

    def wait_writable(self) -> asyncio.Future[None] | None:
        """None when the transport takes more output, else a future done once it does."""


class _Gone:
    """The owner of a detached stream table (its connection is gone)."""

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"the connection is gone (asked for {name!r})")


_GONE: Any = _Gone()


class _ServerStream:
    __slots__ = ("cid", "consumed", "credit", "ctx", "dead", "granted", "inbound", "item_type",
                 "mode", "received", "result", "waiter")

    def __init__(self, cid: int, ctx: Context, mode: str, item_type: Any) -> None:
        self.cid = cid
        self.ctx = ctx
        self.mode = mode
        self.item_type = item_type
        self.credit = INITIAL_WINDOW
        self.consumed = 0
        self.received = 0
        self.granted = INITIAL_WINDOW  # messages the client may have sent so far
        self.inbound: Inbound[Any] | None = None
        self.result: Any = None
        self.waiter: asyncio.Future[None] | None = None
        self.dead = False


class ServerStreams:
    """The streaming calls being served on one connection, by call id."""

    __slots__ = ("_owner", "_streams")

    def __init__(self, owner: StreamingConnection) -> None:
        self._owner = owner
        self._streams: dict[int, _ServerStream] = {}

    def __len__(self) -> int:
        return len(self._streams)

    def detach(self) -> None:
        """The connection is gone: forget it (no reference cycle outlives it). Handlers still
        running hold what they need; no frame arrives any more."""
        self._streams.clear()
        self._owner = _GONE

    def on_request(self, ev: fr.RequestReceived) -> None:
        """A REQUEST with flag STREAM: start the handler through ``Dispatcher.start_stream``."""
        proto = self._owner
        cid = ev.call_id
        conn = proto.conn
        server = proto.server
        timeout = ev.timeout
        ctx = Context(ev.method, ev.metadata or {},
                      None if timeout is None else time.monotonic() + timeout, proto.peer,
                      proto.scheme, proto.identity)
        try:
            if proto.going_away_sent or server.closing:
                raise Unavailable(message="server is shutting down")
            spec = server.lookup(ev.method)
            info = spec.proto
            mode = info[2] if info is not None else spec.mode
            if mode == UNARY:
                raise wrong_mode(spec.name, mode)
            body = ev.body
            if ev.compressed:
                body = fr.decompress(body, conn.max_frame_size)
            # an empty body is "no params", except a protobuf request (a message whose fields
            # are all default encodes to zero bytes) of a server stream
            params = (typed_params(proto.codec, spec, body)
                      if len(body) or (info is not None and mode not in _NO_REQUEST
                                       and proto.codec.id == 3)
                      else None)
        except RpcError as exc:
            conn.send_error(cid, exc.status, exc.message)
            return
        except msgspec.DecodeError as exc:
            conn.send_error(cid, Status.INVALID_ARGUMENT, f"cannot decode params: {exc}")
            return
        item_type = info[0] if info is not None else spec.request_type
        st = _ServerStream(cid, ctx, mode, item_type)
        if mode in (CLIENT_STREAM, BIDI_STREAM):
            st.inbound = Inbound(self._grant(st))
            if ev.end_stream:
                st.inbound.close()
        self._streams[cid] = st
        proto.calls[cid] = ctx  # CANCEL and connection loss cancel it like a unary call
        server.start_stream(spec, params, ctx, st.inbound, self._sender(st), self._ender(st))

    def _grant(self, st: _ServerStream) -> Any:
        """``Inbound``'s consumed hook: return credit in batches of half a window."""
        proto = self._owner

        def consumed(_credit: int) -> None:
            st.consumed += 1
            if st.consumed >= GRANT_AT and not st.dead:
                proto.conn.send_window_update(st.cid, st.consumed)
                st.granted += st.consumed
                st.consumed = 0
                proto.flush_soon()

        return consumed

    def _sender(self, st: _ServerStream) -> Any:
        """The handler's ``send``: one MESSAGE per item, waiting while the window is shut."""
        proto = self._owner
        codec = proto.codec
        cid = st.cid

        async def send(item: Any) -> None:
            if st.dead:
                raise asyncio.CancelledError
            if st.mode == CLIENT_STREAM:
                st.result = item  # the result travels in RESPONSE
                return
            while st.credit <= 0:
                st.waiter = asyncio.get_running_loop().create_future()
                try:
                    await st.waiter
                finally:
                    st.waiter = None
                if st.dead:
                    raise asyncio.CancelledError
            full = proto.wait_writable()
            while full is not None:  # the peer does not read: wait, do not queue
                await full
                if st.dead or proto.transport is None:
                    raise asyncio.CancelledError
                full = proto.wait_writable()
            st.credit -= 1
            proto.conn.send_message(cid, codec.encode(item))
            proto.flush_soon()

        return send

    def _ender(self, st: _ServerStream) -> Any:
        """The stream's ``on_done``: RESPONSE (a client stream's result) or ERROR."""
        proto = self._owner
        codec = proto.codec
        cid, ctx = st.cid, st.ctx

        def done(_r: Any, exc: BaseException | None) -> None:
            self._streams.pop(cid, None)
            if proto.calls.get(cid) is ctx:
                del proto.calls[cid]
            elif proto.transport is None or st.dead:
                return
            st.dead = True
            if proto.transport is None:
                return
            conn = proto.conn
            if exc is None:
                try:
                    body = codec.encode(st.result) if st.mode == CLIENT_STREAM else b""
                    conn.send_response(cid, body)
                except Exception as e:
                    exc = proto.server.error_from(e, ctx)
            if exc is not None:
                err = exc if isinstance(exc, RpcError) else proto.server.error_from(exc, ctx)
                conn.send_error(cid, err.status, err.message)
            proto.flush_soon()

        return done

    def on_frame(self, ev: fr.Event) -> None:
        """MESSAGE or WINDOW_UPDATE for a streaming call being served."""
        cid: int = ev.call_id  # type: ignore[attr-defined]
        st = self._streams.get(cid)
        if st is None:
            return  # a late frame for a call that already ended: ignored
        if type(ev) is fr.WindowUpdated:
            # credit beyond what a stream may buffer is clamped (a 2^32-1 grant is no licence
            # to produce without bound; the sender also waits while the socket is full)
            st.credit = min(st.credit + ev.increment, self._owner.server.limits.max_stream_credit)
            w = st.waiter
            if w is not None and not w.done():
                w.set_result(None)
            return
        inbound = st.inbound
        if inbound is None:
            self._abort(st, RpcError(Status.FAILED_PRECONDITION,
                                     "MESSAGE on a server-streaming call"))
            return
        body = ev.body  # type: ignore[attr-defined]
        if len(body) or not ev.end_stream:  # type: ignore[attr-defined]
            # an empty MESSAGE is a message (protobuf defaults encode to zero bytes); only an
            # empty one with END_STREAM is the bare half-close
            st.received += 1
            if st.received > st.granted:
                self._abort(st, RpcError(Status.RESOURCE_EXHAUSTED,
                                         "client sent more messages than its credit"))
                return
            try:
                if ev.compressed:  # type: ignore[attr-defined]
                    body = fr.decompress(body, self._owner.conn.max_frame_size)
                item = decode_message(self._owner.codec, body, st.item_type)
            except RpcError as exc:
                self._abort(st, exc)
                return
            inbound.put(item, 1)
        if ev.end_stream:  # type: ignore[attr-defined]
            inbound.close()

    def _abort(self, st: _ServerStream, err: RpcError) -> None:
        proto = self._owner
        self._streams.pop(st.cid, None)
        proto.calls.pop(st.cid, None)
        st.dead = True
        proto.conn.send_error(st.cid, err.status, err.message)
        if st.inbound is not None:
            st.inbound.fail(err)
        st.ctx.cancel()
        proto.flush_soon()
