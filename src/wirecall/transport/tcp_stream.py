"""Streaming calls on wirecall's native protocol (``tcp://``, ``unix://``): see
``docs/protocol.md`` (Streaming) and ``docs/streaming.md``.

A streaming call is a REQUEST with flag STREAM (plus END_STREAM when the client has nothing
more to send: a server stream); messages travel as MESSAGE frames; a MESSAGE with END_STREAM
and an empty body is a pure half-close (it carries no message and costs no credit). The call
ends with RESPONSE (the result of a client stream; empty otherwise) or ERROR; CANCEL ends it
early. Flow control counts messages: each direction starts with 16 credits, and the receiver
returns credit with WINDOW_UPDATE as its application consumes messages (in batches of half a
window), so a slow reader stops the sender instead of growing a buffer.

The unary hot path in ``tcp.py`` is untouched: it hands streaming frames to this module.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from ..context import Context
from ..errors import InvalidArgument, RpcError, Unavailable
from ..protocol import frames as fr
from ..service import BIDI_STREAM, CLIENT_STREAM, UNARY, MethodSpec
from ..status import Status
from ..streaming import ClientStream, Inbound, expire_later

if TYPE_CHECKING:
    from .tcp import ServerProtocol, TcpClientConnection

__all__ = ["INITIAL_WINDOW", "TcpClientStream", "on_stream_frame", "on_stream_request",
           "open_stream", "typed_params"]

INITIAL_WINDOW = 16  # messages each side may send before the first WINDOW_UPDATE
_GRANT_AT = INITIAL_WINDOW // 2


def _proto_types(spec: MethodSpec) -> tuple[Any, Any, str] | None:
    owner = type(getattr(spec.func, "__self__", None))
    table = getattr(owner, "__grpc_methods__", None)
    if not table:
        return None
    info = table.get(spec.name.rpartition(".")[2])
    return (info[0], info[1], info[2]) if info else None


def typed_params(codec: Any, spec: MethodSpec | None, body: bytes | memoryview) -> Any:
    """Decode wire params; codecs that need a type (protobuf) get ``[request class]``."""
    if codec.id != 3:
        return codec.decode(body)
    info = _proto_types(spec) if spec is not None else None
    if info is None:
        raise msgspec.DecodeError("protobuf params need a method generated from a .proto")
    try:
        return codec.decode(body, [info[0]])
    except ValueError as exc:
        raise msgspec.DecodeError(str(exc)) from None


def _decode(codec: Any, body: bytes | memoryview, tp: Any) -> Any:
    try:
        return codec.decode(body, tp)
    except msgspec.ValidationError as exc:
        raise InvalidArgument(message=f"invalid message: {exc}") from None
    except (msgspec.DecodeError, ValueError) as exc:
        raise InvalidArgument(message=f"cannot decode message: {exc}") from None


# -- server ---------------------------------------------------------------------------------


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


def _streams(proto: ServerProtocol) -> dict[int, _ServerStream]:
    st: dict[int, _ServerStream] | None = proto.__dict__.get("_wc_streams")
    if st is None:
        st = proto.__dict__["_wc_streams"] = {}
    return st


def _flush_soon(proto: Any) -> None:
    if not proto._in_read:
        proto._schedule_flush()


def on_stream_request(proto: ServerProtocol, ev: fr.RequestReceived) -> None:
    """A REQUEST with flag STREAM: start the handler through ``Server.start_stream``."""
    cid = ev.call_id
    conn = proto.conn
    server = proto.server
    timeout = ev.timeout
    ctx = Context(ev.method, ev.metadata or {},
                  None if timeout is None else time.monotonic() + timeout, proto.peer, "tcp")
    try:
        if proto.going_away_sent or server.closing:
            raise Unavailable(message="server is shutting down")
        spec = server.lookup(ev.method)
        info = _proto_types(spec)
        mode = info[2] if info is not None else spec.mode
        if mode == UNARY:
            raise RpcError(Status.FAILED_PRECONDITION,
                           f"{spec.name} is a unary method, not a streaming one")
        body = ev.body
        if ev.compressed:
            body = fr.decompress(body, conn.max_frame_size)
        params = typed_params(proto.codec, spec, body) if len(body) else None
    except RpcError as exc:
        conn.send_error(cid, exc.status, exc.message)
        return
    except msgspec.DecodeError as exc:
        conn.send_error(cid, Status.INVALID_ARGUMENT, f"cannot decode params: {exc}")
        return
    item_type = info[0] if info is not None else spec.request_type
    st = _ServerStream(cid, ctx, mode, item_type)
    if mode in (CLIENT_STREAM, BIDI_STREAM):

        def consumed(_credit: int) -> None:
            st.consumed += 1
            if st.consumed >= _GRANT_AT and not st.dead:
                conn.send_window_update(cid, st.consumed)
                st.granted += st.consumed
                st.consumed = 0
                _flush_soon(proto)

        st.inbound = Inbound(consumed)
        if ev.end_stream:
            st.inbound.close()
    _streams(proto)[cid] = st
    proto.calls[cid] = ctx  # CANCEL and connection loss cancel it like a unary call
    codec = proto.codec

    async def send(item: Any) -> None:
        if st.dead:
            raise asyncio.CancelledError
        if st.mode == CLIENT_STREAM:
            st.result = item  # the result travels in RESPONSE
            return
        while st.credit <= 0:
            st.waiter = proto._loop.create_future()
            try:
                await st.waiter
            finally:
                st.waiter = None
            if st.dead:
                raise asyncio.CancelledError
        st.credit -= 1
        conn.send_message(cid, codec.encode(item))
        _flush_soon(proto)

    def done(_r: Any, exc: BaseException | None) -> None:
        _streams(proto).pop(cid, None)
        if proto.calls.get(cid) is ctx:
            del proto.calls[cid]
        elif proto.transport is None or st.dead:
            return
        st.dead = True
        if proto.transport is None:
            return
        if exc is None:
            try:
                body = codec.encode(st.result) if st.mode == CLIENT_STREAM else b""
                conn.send_response(cid, body)
            except Exception as e:
                exc = server.error_from(e, ctx)
        if exc is not None:
            err = exc if isinstance(exc, RpcError) else server.error_from(exc, ctx)
            conn.send_error(cid, err.status, err.message)
        _flush_soon(proto)

    server.start_stream(spec, params, ctx, st.inbound, send, done)


def on_stream_frame(proto: ServerProtocol, ev: fr.Event) -> None:
    """MESSAGE or WINDOW_UPDATE for a streaming call being served."""
    cid: int = ev.call_id  # type: ignore[attr-defined]
    st = _streams(proto).get(cid)
    if st is None:
        return  # a late frame for a call that already ended: ignored
    if type(ev) is fr.WindowUpdated:
        st.credit += ev.increment
        w = st.waiter
        if w is not None and not w.done():
            w.set_result(None)
        return
    inbound = st.inbound
    if inbound is None:
        _abort(proto, st, RpcError(Status.FAILED_PRECONDITION,
                                   "MESSAGE on a server-streaming call"))
        return
    body = ev.body  # type: ignore[attr-defined]
    if len(body):
        st.received += 1
        if st.received > st.granted:
            _abort(proto, st, RpcError(Status.RESOURCE_EXHAUSTED,
                                       "client sent more messages than its credit"))
            return
        try:
            if ev.compressed:  # type: ignore[attr-defined]
                body = fr.decompress(body, proto.conn.max_frame_size)
            item = _decode(proto.codec, body, st.item_type)
        except RpcError as exc:
            _abort(proto, st, exc)
            return
        inbound.put(item, 1)
    if ev.end_stream:  # type: ignore[attr-defined]
        inbound.close()


def _abort(proto: ServerProtocol, st: _ServerStream, err: RpcError) -> None:
    _streams(proto).pop(st.cid, None)
    proto.calls.pop(st.cid, None)
    st.dead = True
    proto.conn.send_error(st.cid, err.status, err.message)
    if st.inbound is not None:
        st.inbound.fail(err)
    st.ctx.cancel()
    _flush_soon(proto)


# -- client ---------------------------------------------------------------------------------


class TcpClientStream(ClientStream[Any]):
    """A streaming call on a :class:`~wirecall.transport.tcp.TcpClientConnection`."""

    def __init__(self, owner: TcpClientConnection, cid: int, method: str,
                 result_type: Any) -> None:
        super().__init__(method)
        self.owner = owner
        self.cid = cid
        self.result_type = result_type
        self.credit = INITIAL_WINDOW
        self.consumed = 0
        self.waiter: asyncio.Future[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    async def _write(self, item: Any) -> None:
        while (gate := self._write_gate()) is not None:
            await gate
        if self._done:
            raise self._error or Unavailable(message="stream closed")
        self._put(item)

    def _write_gate(self) -> asyncio.Future[None] | None:
        if self.credit > 0 or self._done:
            return None
        w = self.waiter
        if w is None or w.done():  # (woken by WINDOW_UPDATE or the end of the call)
            w = self.waiter = self.owner._loop.create_future()
        return w

    def _put(self, item: Any) -> None:
        o = self.owner
        try:
            body = o.codec.encode(item)
        except (TypeError, msgspec.EncodeError) as exc:
            raise InvalidArgument(message=f"cannot encode a message of {self.method}: "
                                  f"{exc}") from None
        self.credit -= 1
        o.conn.send_message(self.cid, body)
        o._schedule_flush()

    async def _write_end(self) -> None:
        self.owner.conn.send_message(self.cid, b"", end_stream=True)
        self.owner._schedule_flush()

    def _abort(self, error: RpcError) -> None:
        o = self.owner
        o.streams.pop(self.cid, None)
        if not o._closed:
            o.conn.send_cancel(self.cid)
            o._schedule_flush()

    def _consumed(self, credit: int) -> None:
        self.consumed += 1
        if self.consumed >= _GRANT_AT and not self._done:
            self.owner.conn.send_window_update(self.cid, self.consumed)
            self.consumed = 0
            self.owner._schedule_flush()

    def _finish(self, error: RpcError | None, trailing: Mapping[str, Any] | None = None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)
        super()._finish(error, trailing)

    # -- called by TcpClientConnection -----------------------------------------------

    def _on_frame(self, ev: fr.Event) -> None:
        if type(ev) is fr.WindowUpdated:
            self.credit += ev.increment
            w = self.waiter
            if w is not None and not w.done():
                w.set_result(None)
            return
        body = ev.body  # type: ignore[attr-defined]
        if not len(body):
            return
        try:
            if ev.compressed:  # type: ignore[attr-defined]
                body = fr.decompress(body, self.owner.conn.max_frame_size)
            item = _decode(self.owner.codec, body, self.result_type)
        except RpcError as exc:
            self.cancel()
            self._error = exc
            return
        self._feed(item, 1)

    def _on_response(self, ev: fr.ResponseReceived) -> None:
        self.owner.streams.pop(self.cid, None)
        if len(ev.body):
            try:
                body = ev.body
                if ev.compressed:
                    body = fr.decompress(body, self.owner.conn.max_frame_size)
                self._feed(_decode(self.owner.codec, body, self.result_type))
            except RpcError as exc:
                self._finish(exc)
                return
        self._finish(None)

    def _on_error(self, err: RpcError) -> None:
        self.owner.streams.pop(self.cid, None)
        self._finish(err)

    def _fail(self, err: RpcError) -> None:
        self._finish(err)


class _Slot:
    """What the connection's stream table holds: the stream, weakly (so an unfinished
    stream the application dropped is collected, and cancelled by :func:`_collected`)."""

    __slots__ = ("ref",)

    def __init__(self, st: TcpClientStream) -> None:
        self.ref = weakref.ref(st)

    def _on_frame(self, ev: fr.Event) -> None:
        st = self.ref()
        if st is not None:
            st._on_frame(ev)

    def _on_response(self, ev: fr.ResponseReceived) -> None:
        st = self.ref()
        if st is not None:
            st._on_response(ev)

    def _on_error(self, err: RpcError) -> None:
        st = self.ref()
        if st is not None:
            st._on_error(err)

    def _fail(self, err: RpcError) -> None:
        st = self.ref()
        if st is not None:
            st._fail(err)


def _collected(owner: TcpClientConnection, cid: int) -> None:
    """An unfinished stream was garbage-collected: cancel its call."""
    if owner.streams.pop(cid, None) is not None and not owner._closed:
        owner.conn.send_cancel(cid)
        owner._schedule_flush()


def open_stream(owner: TcpClientConnection, method: str, params: Any, timeout: float | None,
                metadata: Mapping[str, str] | None, result_type: Any) -> TcpClientStream:
    """Open a streaming call: ``params`` is the request of a server stream (sent with
    END_STREAM), an (async) iterable of requests sent in the background, or None."""
    if owner.closed:
        raise owner._close_reason or Unavailable(message=f"connection to {owner.address} closed")
    streaming_in = params is not None and (
        isinstance(params, AsyncIterable) or hasattr(params, "__next__")
    )
    cid = owner._new_id()
    st = TcpClientStream(owner, cid, method, result_type)
    body = b""
    if params is not None and not streaming_in:
        try:
            body = owner.codec.encode(params)
        except (TypeError, msgspec.EncodeError) as exc:
            raise InvalidArgument(message=f"cannot encode arguments of {method}: {exc}") from None
    server_stream = params is not None and not streaming_in
    owner.conn.send_request(cid, method, body, timeout, metadata or None, stream=True,
                            end_stream=server_stream)
    if server_stream:
        st._writing_done = True
    owner.streams[cid] = _Slot(st)
    st._cancel_on_collect(lambda: _collected(owner, cid))
    if timeout is not None:
        st.timer = expire_later(st, timeout)
    owner._schedule_flush()
    if streaming_in:
        st.send_all(params)
    return st
