"""The WebSocket server: JSON-RPC 2.0 in both directions on ``GET /ws`` (aiohttp's WebSocket
implementation, reached through the HTTP server's Upgrade hand-off).

The client calls the server's methods (single, batch, notifications) and streams with
wirecall's convention (``rpc.stream.*`` notifications, credit-based flow control:
``rpc.stream.window``); handler code reaches the client back through
:func:`current_websocket` (:meth:`WebSocketSession.notify`, :meth:`WebSocketSession.call`).
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from ...context import Context
from ...errors import (
    DeadlineExceeded,
    InvalidArgument,
    ResourceExhausted,
    RpcError,
    Unavailable,
)
from ...protocol import jsonrpc2 as j2
from ...seam import BIDI_STREAM, CLIENT_STREAM, UNARY
from ...streaming.model import Inbound
from ..sockets import peer_identity, peer_name
from .common import (
    GRANT_AT,
    META_PREFIX,
    STREAM_CANCEL,
    STREAM_END,
    STREAM_ITEM,
    STREAM_OPEN,
    STREAM_WINDOW,
    STREAM_WINDOW_INITIAL,
    convert_item,
    window_increment,
)
from .dispatch import CallSlots, as_rpc_error, call_ctx, handle_items

if TYPE_CHECKING:
    from ...seam import Dispatcher, MethodInfo

__all__ = ["WebSocketSession", "current_websocket", "serve_websocket"]

log = logging.getLogger("wirecall.http")


_current_ws: contextvars.ContextVar[WebSocketSession | None] = contextvars.ContextVar(
    "wirecall_websocket", default=None
)


def current_websocket() -> WebSocketSession | None:
    """The WebSocket session the current call arrived on (``None`` over plain HTTP)."""
    return _current_ws.get()


class _WsServerStream:
    """Flow-control state of one streaming call served over a WebSocket."""

    __slots__ = ("consumed", "credit", "ctx", "dead", "granted", "inbound", "item_type",
                 "received", "waiter")

    def __init__(self, ctx: Context, inbound: Any, item_type: Any) -> None:
        self.ctx = ctx
        self.inbound = inbound
        self.item_type = item_type
        self.credit = STREAM_WINDOW_INITIAL  # items we may still send
        self.received = 0  # items the client sent
        self.granted = STREAM_WINDOW_INITIAL  # items the client may have sent so far
        self.consumed = 0  # items the handler took since the last grant
        self.waiter: asyncio.Future[None] | None = None
        self.dead = False  # the call's final answer went out (or the connection is gone)

    def wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)


class WebSocketSession:
    """The server's side of one WebSocket: answers calls and talks back to the client.

    Handler code reaches it with :func:`current_websocket` and may keep it (for example in a
    set of subscribers) to :meth:`notify` the client later, or :meth:`call` a method the client
    registered. ``closed`` tells whether the client is still there.
    """

    #: the TLS client certificate's identity (wss:// with mTLS), for ``Context.identity``
    identity = ""

    def __init__(self, server: Dispatcher, ws: Any, peer: str, headers: Mapping[str, str]) -> None:
        self.server = server
        self.ws = ws
        self.peer = peer
        self.metadata = {
            k[len(META_PREFIX):].lower(): v
            for k, v in headers.items()
            if k.lower().startswith(META_PREFIX.lower())
        }
        self._ids = itertools.count(1)
        self._pending: dict[Any, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self._streams: dict[Any, _WsServerStream] = {}
        #: calls (a batch's each) and streams running, against ``max_concurrent_calls``
        self._slots = CallSlots(max(1, int(server.max_concurrent_calls)),
                                server.limits.max_unsent_bytes)
        #: stream credit one grant may raise a stream's to (``Limits(max_stream_credit=)``)
        self._max_credit = server.limits.max_stream_credit
        self._queued = 0  # bytes of answers whose send tasks have not written them yet
        self._aborted = False
        self._max_unsent = server.limits.max_unsent_bytes

    @property
    def closed(self) -> bool:
        return bool(self.ws.closed)

    async def notify(self, method: str, params: Any = None) -> None:
        """Send a JSON-RPC notification to the client."""
        await self._send(j2.encode(j2.request_object(method, params)))

    async def call(self, method: str, params: Any = None, timeout: float | None = None) -> Any:
        """Call a method the client registered; returns its result or raises RpcError."""
        id = f"s{next(self._ids)}"
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[id] = fut
        try:
            await self._send(j2.encode(j2.request_object(method, params, id)))
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise DeadlineExceeded(message=f"client did not answer {method} in time") from None
        finally:
            self._pending.pop(id, None)

    async def _send(self, data: bytes) -> None:
        if self.ws.closed:
            raise Unavailable(message="the WebSocket is closed")
        await self.ws.send_str(data.decode())

    def goaway(self) -> None:
        """Tell the client (``rpc.goaway`` notification) to take new calls elsewhere."""
        task = asyncio.ensure_future(self.notify("rpc.goaway"))
        self._tasks.add(task)
        task.add_done_callback(self._sent)

    async def close(self) -> None:
        pending = [t for t in self._tasks if not t.done()]
        if pending:  # let the GOAWAY and answers already being sent go out first
            await asyncio.wait(pending, timeout=1.0)
        await self.ws.close()

    async def _writable(self) -> None:
        """Wait while the socket's write buffer is over its high-water mark (a client that
        does not read its answers stops being read from, instead of growing our buffer)."""
        if self._queued > _YIELD_AT:  # answers just queued: let them reach the socket first
            await asyncio.sleep(0)  # (its buffer then tells whether the peer reads)
        writer = getattr(self.ws, "_writer", None)
        proto = getattr(writer, "protocol", None)
        while proto is not None and getattr(proto, "_paused", False) and not self.ws.closed:
            drain = getattr(proto, "_drain_helper", None)
            if drain is None:  # pragma: no cover - an aiohttp without it: poll
                await asyncio.sleep(0.01)
                continue
            try:
                await drain()
            except (ConnectionError, RuntimeError):
                return

    async def run(self) -> None:
        from aiohttp import WSMsgType

        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.TEXT:
                    self._received(msg.data.encode())
                elif msg.type == WSMsgType.BINARY:
                    self._received(msg.data)
                elif msg.type == WSMsgType.ERROR:
                    log.info("%s: WebSocket error: %s", self.peer, self.ws.exception())
                    break
                await self._writable()
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(Unavailable(message="the WebSocket closed"))
            for t in list(self._tasks):
                t.cancel()
            for st in list(self._streams.values()):
                st.dead = True
                st.wake()
                if st.inbound is not None:
                    st.inbound.fail(Unavailable(message="the WebSocket closed"))
                st.ctx.cancel()
            self._streams.clear()

    def _received(self, data: bytes) -> None:
        try:
            doc = j2.decode_any(data)
        except (msgspec.DecodeError, RecursionError):
            self._handle(j2.parse(data), data)  # the parse error answer
            return
        if type(doc) is dict:
            method = doc.get("method", _NO_METHOD)
            if method is _NO_METHOD:  # no "method" member: a response to one of our calls?
                try:
                    id, result, err = j2.decode_response(doc)
                except ValueError:
                    pass
                else:
                    fut = self._pending.get(id) if isinstance(id, str) else None
                    if fut is not None and not fut.done():
                        if err is None:
                            fut.set_result(result)
                        else:
                            fut.set_exception(err)
                    return
            elif type(method) is str and doc.get("jsonrpc") == "2.0":
                if method.startswith("rpc.stream."):
                    self._stream_control(method, doc.get("params"))
                    return
                spec = self.server.find(method)
                if spec is not None and spec.mode != UNARY and "id" in doc:
                    items, _ = j2.parse_document(doc)
                    item = items[0]
                    if type(item) is j2.Call:
                        self._start_stream(spec, item)
                        return
        self._handle(j2.parse_document(doc), data)

    def _handle(self, parsed: tuple[list[j2.Call | j2.ErrorReply], bool], data: bytes) -> None:
        """Each call (a batch's each) takes a slot of ``max_concurrent_calls`` while it runs;
        past the limit a call is answered RESOURCE_EXHAUSTED at once (in a batch: that
        element; the batch's answer still has one element per call, as JSON-RPC 2.0 peers
        expect)."""
        items, is_batch = parsed
        token = _current_ws.set(self)
        try:
            handle_items(self.server, items, is_batch, data, self._make_ctx, self._respond,
                         self.peer, self._slots)
        finally:
            _current_ws.reset(token)

    # -- streaming calls: wirecall's convention on JSON-RPC 2.0 (docs/http.md) ----------

    def _start_stream(self, spec: MethodInfo, call: j2.Call) -> None:
        id = call.id
        if id in self._streams:
            self._respond(j2.encode(j2.error_reply(call, InvalidArgument(
                message=f"a streaming call with id {id!r} is already open"))))
            return
        if not self._slots.take():
            self._respond(j2.encode(j2.error_reply(call, self._slots.refusal())))
            return
        ctx = call_ctx(self._make_ctx, call)
        client_streams = spec.mode in (CLIENT_STREAM, BIDI_STREAM)
        st = _WsServerStream(ctx, None, spec.request_type)
        if client_streams:

            def consumed(_credit: int) -> None:
                st.consumed += 1
                if st.consumed >= GRANT_AT and not st.dead:
                    st.granted += st.consumed
                    self._respond(j2.encode(j2.request_object(
                        STREAM_WINDOW, {"id": id, "n": st.consumed})))
                    st.consumed = 0

            st.inbound = Inbound[Any](consumed)
        self._streams[id] = st

        async def send(item: Any) -> None:
            while st.credit <= 0 and not st.dead:
                st.waiter = asyncio.get_running_loop().create_future()
                try:
                    await st.waiter
                finally:
                    st.waiter = None
            if st.dead:
                raise asyncio.CancelledError
            st.credit -= 1
            await self._send(j2.encode(j2.request_object(STREAM_ITEM, {"id": id, "item": item})))

        def on_done(_r: Any, exc: BaseException | None) -> None:
            self._slots.give()
            if self._streams.get(id) is st:
                del self._streams[id]
            if st.dead:
                return  # already answered (refused for exceeding its window)
            st.dead = True
            if exc is None:
                self._respond(j2.encode(j2.result_reply(call, None)))
            else:
                self._respond(j2.encode(j2.error_reply(call, as_rpc_error(exc))))

        # the mode first: a client that called the method as unary fails clearly (issue #10)
        self._respond(j2.encode(j2.request_object(
            STREAM_OPEN, {"id": id, "method": spec.name, "mode": spec.mode})))
        token = _current_ws.set(self)
        try:
            self.server.start_stream(spec, call.params, ctx, st.inbound, send, on_done)
        finally:
            _current_ws.reset(token)

    def _stream_control(self, method: str, p: Any) -> None:
        if not isinstance(p, dict) or "id" not in p:
            return
        id = p["id"]
        st = self._streams.get(id) if id is None or type(id) in (str, int, float) else None
        if st is None or st.dead:
            return  # a late message for a call that already ended: ignored
        if method == STREAM_WINDOW:
            n = window_increment(p)
            if n:  # credit past what a stream may buffer is clamped (as on the native wire)
                st.credit = min(st.credit + n, self._max_credit)
                st.wake()
            return
        inbound = st.inbound
        if method == STREAM_CANCEL:
            st.ctx.cancel()
        elif inbound is None:
            return
        elif method == STREAM_END:
            inbound.close()
        elif method == STREAM_ITEM:
            st.received += 1
            if st.received > st.granted:
                self._abort_stream(id, st, ResourceExhausted(
                    message=f"the client sent more stream items than its window "
                            f"({st.granted}) allows"))
                return
            try:
                inbound.put(convert_item(p.get("item"), st.item_type), 1)
            except RpcError as exc:
                inbound.fail(exc)

    def _abort_stream(self, id: Any, st: _WsServerStream, err: RpcError) -> None:
        """End a streaming call now with ``err`` (the handler is cancelled)."""
        self._streams.pop(id, None)
        st.dead = True
        st.wake()
        self._respond(j2.encode(j2.error_reply(j2.Call("", None, id), err)))
        if st.inbound is not None:
            st.inbound.fail(err)
        st.ctx.cancel()

    def _make_ctx(self) -> Context:
        return Context("", self.metadata, None, self.peer, "ws", self.identity)

    def _respond(self, data: bytes | None) -> None:
        if data is None or self.ws.closed or self._aborted:
            return
        n = len(data)
        transport = getattr(getattr(self.ws, "_writer", None), "transport", None)
        unsent = self._queued + n + (transport.get_write_buffer_size() if transport else 0)
        if unsent > self._max_unsent and transport is not None:
            self._over_unsent(transport, unsent)
            return
        self._queued += n
        task = asyncio.ensure_future(self.ws.send_str(data.decode()))
        self._tasks.add(task)
        task.add_done_callback(self._sent)
        # the task's first step writes the answer to the transport (before any await); this
        # runs right after it
        asyncio.get_running_loop().call_soon(self._unqueue, n)

    def _unqueue(self, n: int) -> None:
        self._queued -= n

    def _over_unsent(self, transport: Any, unsent: int) -> None:
        """Answers the peer has not read (in the socket's buffer, or waiting to be written)
        would pass ``limits.max_unsent_bytes``: abort (logged; a peer that does not read
        would not read a close frame either)."""
        self._aborted = True
        log.warning("%s: aborting a WebSocket whose peer left %d bytes of answers unread "
                    "(limits.max_unsent_bytes %d)", self.peer, unsent, self._max_unsent)
        transport.abort()
        for t in list(self._tasks):
            t.cancel()

    def _sent(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("%s: WebSocket send failed: %s", self.peer, task.exception())


_NO_METHOD: Any = object()
#: bytes of answers queued at which the reading loop lets them reach the socket first
_YIELD_AT = 64 * 1024


async def serve_websocket(
    server: Dispatcher,
    request: Any,
    *,
    path: str | None,
    max_message_size: int,
    heartbeat: float | None,
    sessions: set[WebSocketSession],
) -> Any:
    """Answer one aiohttp request: on ``path``, a WebSocket served until it closes (its
    session is in ``sessions`` meanwhile); anywhere else, 404."""
    from aiohttp import web

    if path is None or request.path != path:
        return web.Response(status=404, text="not found\n")
    ws = web.WebSocketResponse(max_msg_size=max_message_size, heartbeat=heartbeat, autoping=True)
    await ws.prepare(request)
    # host:port, as every other wire names its peer (request.remote is the host only)
    peer = peer_name(request.transport) if request.transport is not None else (
        request.remote or "")
    session = WebSocketSession(server, ws, peer, dict(request.headers))
    if request.transport is not None:
        session.identity = peer_identity(request.transport)
    sessions.add(session)
    try:
        await session.run()
    finally:
        sessions.discard(session)
    return ws
