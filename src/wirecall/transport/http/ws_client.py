"""The WebSocket client: JSON-RPC 2.0 over one WebSocket, both ways
(:class:`WebSocketConnection`): calls, batches, streams (wirecall's ``rpc.stream.*``
convention with its credit window), and the server's notifications and calls to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import weakref
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from typing import Any

import msgspec

from ...errors import (
    ConnectError,
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    ResourceExhausted,
    RpcError,
    Unavailable,
    Unimplemented,
    wrong_mode,
)
from ...protocol import jsonrpc2 as j2
from ...streaming.model import ClientStream, expire_later
from ..base import URL, ClientConnection
from .common import (
    GRANT_AT,
    META_PREFIX,
    STREAM_CANCEL,
    STREAM_END,
    STREAM_ITEM,
    STREAM_OPEN,
    STREAM_WINDOW,
    STREAM_WINDOW_INITIAL,
    TIMEOUT_KEY,
    BatchItem,
    batch_calls,
    convert_result,
    window_increment,
)

__all__ = ["WebSocketConnection", "connect_websocket"]

log = logging.getLogger("wirecall.http")


class WebSocketConnection(ClientConnection):
    """JSON-RPC 2.0 over one WebSocket, both ways.

    ``on_notification(method, fn)`` runs ``fn(params)`` (sync or async) for each notification
    the server sends; ``register(method, fn)`` answers the server's calls to ``method``.
    At most ``max_incoming_calls`` of the server's calls run at once (as
    ``Server(max_concurrent_calls=...)`` bounds a server): one more is answered at once with
    ``RESOURCE_EXHAUSTED``. ``aclose()`` cancels and awaits the handlers still running.
    """

    def __init__(self, session: Any, ws: Any, url: str, max_incoming_calls: int = 1024) -> None:
        if max_incoming_calls < 1:
            raise ValueError("max_incoming_calls must be at least 1")
        self._session = session
        self._ws = ws
        self.url = url
        self._ids = itertools.count(1)
        self._pending: dict[Any, asyncio.Future[Any]] = {}
        self._handlers: dict[str, Callable[..., Any]] = {}
        self._listeners: dict[str, list[Callable[[Any], Any]]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self._serving: set[asyncio.Future[Any]] = set()  # the server's calls being handled
        self.max_incoming_calls = max_incoming_calls
        # streams are held weakly: one the application dropped unfinished is collected, and
        # its call cancelled on the server (``_cancel_stream``)
        self._streams: dict[int, weakref.ref[_WsClientStream]] = {}
        self._closed = False
        self.goaway_received = False
        self._reader = asyncio.ensure_future(self._read())
        self._reader.add_done_callback(_discard_result(set()))  # (its end is seen as closed)

    @property
    def closed(self) -> bool:
        return self._closed or self.goaway_received

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _stream(self, id: Any) -> _WsClientStream | None:
        ref = self._streams.get(id) if type(id) is int else None
        return None if ref is None else ref()

    def _live_streams(self) -> list[_WsClientStream]:
        return [st for ref in list(self._streams.values()) if (st := ref()) is not None]

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Future[Any]:
        """Run ``coro`` in a task this connection owns (cancelled and awaited by aclose)."""
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(_discard_result(self._tasks))
        return t

    def _cancel_stream(self, id: int, opened: asyncio.Future[Any] | None) -> None:
        """Forget stream ``id`` and, if it was still open, send ``rpc.stream.cancel``."""
        if self._streams.pop(id, None) is not None and not self._ws.closed:
            self._spawn(_send_control(self._ws, opened, j2.encode(
                j2.request_object(STREAM_CANCEL, {"id": id}))))

    def open_stream(
        self,
        method: str,
        params: Any,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        result_type: Any = Any,
    ) -> ClientStream[Any]:
        """A streaming call: ``params`` are the call's arguments (a list or dict: the request
        of a server stream), an (async) iterable of messages to stream to the server, or
        None (send with ``stream.send`` and ``stream.done_writing``). ``metadata`` travels
        in the request's ``"metadata"`` member (the handler's ``Context.metadata``)."""
        if self._closed:
            raise Unavailable(message="the WebSocket is closed")
        streaming_in = params is not None and (
            isinstance(params, AsyncIterable) or hasattr(params, "__next__")
        )
        id = next(self._ids)
        st = _WsClientStream(self, method, id, result_type)
        if timeout is not None:
            metadata = {**(metadata or {}), TIMEOUT_KEY: f"{max(timeout, 0.0):.6f}"}
        req = j2.request_object(method, None if streaming_in else params, id, metadata)
        # (owned by the connection, not the stream: a stream collected or closed at once
        # must not cancel the request half-sent, or the rpc.stream.cancel would be skipped)
        opened = self._spawn(self._ws.send_bytes(j2.encode(req)))
        self._streams[id] = weakref.ref(st)
        st.opened(opened, lambda: self._cancel_stream(id, opened), timeout)
        if streaming_in:
            st.send_all(params)
        return st

    def on_notification(self, method: str, fn: Callable[[Any], Any]) -> None:
        self._listeners.setdefault(method, []).append(fn)

    def register(self, method: str, fn: Callable[..., Any]) -> None:
        self._handlers[method] = fn

    async def call(
        self,
        method: str,
        params: list[Any] | dict[str, Any] | None,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        result_type: Any = Any,
    ) -> Any:
        if self._closed:
            raise Unavailable(message="the WebSocket is closed")
        id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[id] = fut
        if timeout is not None:  # the deadline travels: the handler sees it
            metadata = {**(metadata or {}), TIMEOUT_KEY: f"{max(timeout, 0.0):.6f}"}
        try:
            await self._ws.send_bytes(j2.encode(j2.request_object(method, params, id, metadata)))
            result = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise DeadlineExceeded(message=f"{method}: no answer in {timeout}s") from None
        finally:
            self._pending.pop(id, None)
        return convert_result(result, result_type)

    async def notify(self, method: str, params: list[Any] | dict[str, Any] | None = None) -> None:
        await self._ws.send_bytes(j2.encode(j2.request_object(method, params)))

    async def batch(
        self,
        calls: Iterable[BatchItem],
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> list[Any]:
        """A batch over the WebSocket: same contract as :meth:`HttpConnection.batch`."""
        items = batch_calls(calls)
        if not items:
            return []
        loop = asyncio.get_running_loop()
        reqs = []
        futs: list[asyncio.Future[Any] | None] = []
        for c in items:
            if c.notify:
                reqs.append(j2.request_object(c.method, c.params, metadata=metadata))
                futs.append(None)
            else:
                rid = next(self._ids)
                fut: asyncio.Future[Any] = loop.create_future()
                self._pending[rid] = fut
                reqs.append(j2.request_object(c.method, c.params, rid, metadata))
                futs.append(fut)
        try:
            await self._ws.send_bytes(j2.encode(reqs))
            waiting = [f for f in futs if f is not None]
            if waiting:
                await asyncio.wait_for(
                    asyncio.gather(*waiting, return_exceptions=True), timeout
                )
        except TimeoutError:
            raise DeadlineExceeded(message=f"batch: no answer in {timeout}s") from None
        finally:
            for f in futs:
                if f is not None and not f.done():
                    f.cancel()
            for k in [k for k, f in self._pending.items() if f in futs]:
                self._pending.pop(k, None)
        out: list[Any] = []
        for c, f in zip(items, futs, strict=True):
            if f is None:
                out.append(None)
            elif f.exception() is not None:
                out.append(f.exception())
            else:
                out.append(convert_result(f.result(), c.result_type))
        return out

    async def _read(self) -> None:
        from aiohttp import WSMsgType

        try:
            async for msg in self._ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
                    try:
                        obj = j2.decode_any(data)
                    except (msgspec.DecodeError, RecursionError):
                        log.warning("%s: ignoring a malformed WebSocket message", self.url)
                        continue
                    refused: list[bytes] = []
                    for o in obj if isinstance(obj, list) else [obj]:
                        self._dispatch(o, refused)
                    for reply in refused:  # (a server that does not read them stops being read)
                        if self._ws.closed:
                            break
                        with contextlib.suppress(ConnectionError):
                            await self._ws.send_bytes(reply)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            self._closed = True
            for t in self._serving:  # their answers could not go out any more
                t.cancel()
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(Unavailable(message="the WebSocket closed"))
            for st in self._live_streams():
                st.end(Unavailable(message="the WebSocket closed"))
            self._streams.clear()

    def _dispatch(self, obj: Any, refused: list[bytes] | None = None) -> None:
        """Act on one message from the server; answers refusing the server's calls at once
        go to ``refused`` (the reader sends them), or out in a task of their own."""
        if not isinstance(obj, dict):
            return
        method = obj.get("method")
        if isinstance(method, str):
            if "id" in obj:
                if len(self._serving) >= self.max_incoming_calls:
                    reply = j2.encode(_error_reply(obj["id"], ResourceExhausted(
                        message=f"too many of the server's calls in flight on this WebSocket "
                                f"client (limit {self.max_incoming_calls})")))
                    if refused is not None:
                        refused.append(reply)
                    elif not self._ws.closed:
                        t = asyncio.ensure_future(self._ws.send_bytes(reply))
                        self._tasks.add(t)
                        t.add_done_callback(_discard_result(self._tasks))
                    return
                t = asyncio.ensure_future(self._serve(method, obj.get("params"), obj["id"]))
                self._serving.add(t)
                t.add_done_callback(_discard_result(self._serving))
                return
            if method in (STREAM_ITEM, STREAM_WINDOW):
                p = obj.get("params")
                sid = p.get("id") if isinstance(p, dict) else None
                st = self._stream(sid)
                if st is not None and isinstance(p, dict):
                    st.received_control(method, p)
                return
            if method == STREAM_OPEN:
                self._stream_opened(obj.get("params"))
                return
            if method == "rpc.goaway":
                self.goaway_received = True
            for fn in self._listeners.get(method, ()):
                try:
                    r = fn(obj.get("params"))
                    if asyncio.iscoroutine(r):
                        t = asyncio.ensure_future(r)
                        self._tasks.add(t)
                        t.add_done_callback(_listener_done(self._tasks, method))
                except Exception:
                    log.exception("notification listener for %s failed", method)
            return
        try:
            id, result, err = j2.decode_response(obj)
        except ValueError:
            return
        ref = self._streams.pop(id, None) if type(id) is int else None
        if ref is not None:
            stream = ref()
            if stream is not None:
                if err is None and not stream.mode_seen:  # answered as a unary call
                    err = wrong_mode(stream.method, "unary")
                stream.end(err)
            return
        fut = self._pending.get(id)
        if fut is not None and not fut.done():
            if err is None:
                fut.set_result(result)
            else:
                fut.set_exception(err)

    def _stream_opened(self, p: Any) -> None:
        """``rpc.stream.open``: the server runs call ``id`` as a stream; a unary call of
        ours fails naming the mode (and the stream is cancelled on the server)."""
        if not isinstance(p, dict) or type(p.get("id")) is not int:
            return
        id = p["id"]
        ref = self._streams.get(id)
        stream = ref() if ref is not None else None
        if stream is not None:
            stream.mode_seen = True
            return
        fut = self._pending.get(id)
        if fut is not None and not fut.done():
            fut.set_exception(wrong_mode(str(p.get("method")), str(p.get("mode"))))
            if not self._ws.closed:
                self._spawn(self._ws.send_bytes(j2.encode(
                    j2.request_object(STREAM_CANCEL, {"id": id}))))

    async def _serve(self, method: str, params: Any, id: Any) -> None:
        fn = self._handlers.get(method)
        reply: dict[str, Any]
        if fn is None:
            reply = _error_reply(id, Unimplemented(
                message=f"the client has no method {method!r}"))
        else:
            try:
                if isinstance(params, list):
                    r = fn(*params)
                elif isinstance(params, dict):
                    r = fn(**params)
                else:
                    r = fn()
                if isinstance(r, Awaitable):
                    r = await r
                reply = {"jsonrpc": "2.0", "id": id, "result": r}
            except Exception as exc:
                reply = _error_reply(
                    id, exc if isinstance(exc, RpcError) else Internal(message=str(exc)))
        if not self._ws.closed:
            await self._ws.send_bytes(j2.encode(reply))

    async def aclose(self) -> None:
        """Close the WebSocket; cancel and await the reader, the server's calls still being
        handled and every other task this connection (or one of its streams) started."""
        self._closed = True
        streams = self._live_streams()
        try:
            await self._ws.close()
        finally:
            me = asyncio.current_task()
            tasks: list[asyncio.Future[Any]] = [self._reader, *self._serving, *self._tasks]
            for st in streams:
                tasks.extend(st.tasks)
            tasks = [t for t in tasks if t is not me]
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.wait(tasks)
            for t in tasks:  # (retrieved: none of them is anyone's to report now)
                if not t.cancelled():
                    t.exception()
            await self._session.close()



class _WsClientStream(ClientStream[Any]):
    """A streaming call over a :class:`WebSocketConnection` (which holds it weakly).

    Its items and its ``rpc.stream.end`` go out in order, each in a connection-owned task
    that waits for the previous one (``_tail``, the opening request first); none of these
    tasks refers to the stream, so a stream the application dropped is still collected."""

    def __init__(
        self, conn: WebSocketConnection, method: str, id: int, result_type: Any
    ) -> None:
        super().__init__(method)
        self.conn = conn
        self.id = id
        self.result_type = result_type
        self._opened: asyncio.Future[Any] | None = None  # the opening request's send
        self._tail: asyncio.Future[Any] | None = None  # the last ordered send
        self._timer: asyncio.TimerHandle | None = None
        self.credit = STREAM_WINDOW_INITIAL  # items we may still send
        self.received = 0  # items the server sent
        self.granted = STREAM_WINDOW_INITIAL  # items the server may have sent so far
        self.consumed = 0  # items the application took since the last grant
        self.mode_seen = False  # the server's rpc.stream.open arrived
        self._credit_waiter: asyncio.Future[None] | None = None

    def opened(self, request: asyncio.Future[Any], cancel: Callable[[], None],
               timeout: float | None) -> None:
        """The opening request is being sent (``request``); ``cancel`` cancels the call on
        the server when the stream is collected unfinished; ``timeout`` is its deadline."""
        self._opened = self._tail = request
        self._cancel_on_collect(cancel)
        if timeout is not None:
            self._timer = expire_later(self, timeout)

    def received_control(self, method: str, p: dict[str, Any]) -> None:
        """An ``rpc.stream.window`` or ``rpc.stream.item`` the server sent for this call."""
        if method == STREAM_WINDOW:
            self._grant(window_increment(p))
            return
        self.received += 1
        if self.received > self.granted:
            self._fail(ResourceExhausted(
                message=f"{self.method}: the server sent more stream items than the "
                        f"window ({self.granted}) allows"))
            return
        try:
            self._feed(convert_result(p.get("item"), self.result_type), 1)
        except RpcError as exc:
            self._fail(exc)

    def end(self, error: RpcError | None) -> None:
        """The call's final answer arrived (or the connection went)."""
        self._finish(error)

    @property
    def tasks(self) -> set[asyncio.Task[Any]]:
        """The tasks the stream runs (its ``send_all``), awaited by the connection's aclose."""
        return self._tasks

    def _grant(self, n: int) -> None:
        """The server's ``rpc.stream.window``: ``n`` more items may be sent."""
        if n:
            self.credit += n
            self._wake_writer()

    def _wake_writer(self) -> None:
        w = self._credit_waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _fail(self, error: RpcError) -> None:
        """End the call on a protocol violation or a bad item: cancel it on the server too."""
        self._abort(error)
        self._finish(error)

    def _consumed(self, credit: int) -> None:
        self.consumed += 1
        if self.consumed >= GRANT_AT and not self._done:
            self.granted += self.consumed
            n, self.consumed = self.consumed, 0
            if not self.conn._ws.closed:
                self.conn._spawn(_send_control(self.conn._ws, self._opened, j2.encode(
                    j2.request_object(STREAM_WINDOW, {"id": self.id, "n": n}))))

    def _send_in_order(self, method: str, params: dict[str, Any]) -> asyncio.Future[Any]:
        data = j2.encode(j2.request_object(method, params))
        t = self.conn._spawn(_send_after(self.conn._ws, self._tail, data))
        self._tail = t
        return t

    async def _sent(self, t: asyncio.Future[Any]) -> None:
        """Wait for an ordered send (without being cancelled with it); raise its failure."""
        if not t.done():
            await asyncio.wait([t])
        if t.cancelled():
            raise self._error or Unavailable(message=f"{self.method}: the stream is closed")
        exc = t.exception()
        if exc is not None:
            raise exc

    def _write_gate(self) -> asyncio.Future[None] | None:
        if self.credit > 0 or self._done:
            return None
        w = self._credit_waiter
        if w is None or w.done():  # (woken by rpc.stream.window or the end of the call)
            w = self._credit_waiter = asyncio.get_running_loop().create_future()
        return w

    def _put(self, item: Any) -> None:
        self._put_item(item)

    def _put_item(self, item: Any) -> asyncio.Future[Any]:
        try:
            t = self._send_in_order(STREAM_ITEM, {"id": self.id, "item": item})
        except (TypeError, ValueError, msgspec.EncodeError) as exc:  # as on tcp and grpc
            raise InvalidArgument(message=f"cannot encode a message of {self.method}: "
                                  f"{exc}") from None
        self.credit -= 1
        return t

    async def _write(self, item: Any) -> None:
        while (gate := self._write_gate()) is not None:
            await gate
        if self._done:
            raise self._error or Unavailable(message=f"{self.method}: the stream is closed")
        await self._sent(self._put_item(item))

    async def _write_end(self) -> None:
        await self._sent(self._send_in_order(STREAM_END, {"id": self.id}))

    def _abort(self, error: RpcError) -> None:
        self.conn._cancel_stream(self.id, self._opened)

    def _finish(self, error: RpcError | None, trailing: Mapping[str, Any] | None = None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake_writer()
        super()._finish(error, trailing)


async def _send_control(ws: Any, opened: asyncio.Future[Any] | None, data: bytes) -> None:
    """Send a stream's ``rpc.stream.window`` or ``rpc.stream.cancel`` once its opening
    request went out (nothing, if it never did)."""
    if opened is not None:
        if not opened.done():
            await asyncio.wait([opened])
        if opened.cancelled() or opened.exception() is not None:
            return
    if not ws.closed:
        await ws.send_bytes(data)


async def _send_after(ws: Any, prev: asyncio.Future[Any] | None, data: bytes) -> None:
    """Send one of a stream's ordered messages after the one before it (``prev``)."""
    if prev is not None:
        if not prev.done():
            await asyncio.wait([prev])
        if prev.cancelled() or prev.exception() is not None:
            raise Unavailable(message="an earlier message of the stream could not be sent")
    if ws.closed:
        raise Unavailable(message="the WebSocket is closed")
    await ws.send_bytes(data)


def _discard_result(tasks: set[asyncio.Future[Any]]) -> Callable[[asyncio.Future[Any]], None]:
    def done(t: asyncio.Future[Any]) -> None:
        tasks.discard(t)
        if not t.cancelled():
            t.exception()  # retrieved: a send to a closed socket is not worth a warning

    return done


def _listener_done(tasks: set[asyncio.Future[Any]], method: str,
                   ) -> Callable[[asyncio.Future[Any]], None]:
    def done(t: asyncio.Future[Any]) -> None:
        tasks.discard(t)
        if not t.cancelled() and (exc := t.exception()) is not None:
            log.error("notification listener for %s failed", method, exc_info=exc)

    return done


def _error_reply(id: Any, err: RpcError) -> dict[str, Any]:
    """The JSON-RPC error answering one of the server's calls to this client."""
    return {"jsonrpc": "2.0", "id": id, "error": {
        "code": j2.code_for_status(err.status), "message": err.message,
        "data": {"status": err.status.name}}}



async def connect_websocket(url: URL, **opts: Any) -> WebSocketConnection:
    """Open ``ws://host:port[/path]`` (path ``/ws`` by default): JSON-RPC 2.0 both ways."""
    import aiohttp

    headers = dict(opts.get("headers") or {})
    for k, v in dict(opts.get("metadata") or {}).items():
        headers[META_PREFIX + k] = v
    tls = opts.get("ssl_context")
    target = f"{'https' if tls else 'http'}://{url.hostport}{url.path or '/ws'}"
    timeout = opts.get("timeout", 10.0)
    session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, connect=timeout, sock_connect=timeout)
    )
    try:
        ws = await session.ws_connect(
            target,
            headers=headers,
            timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
            max_msg_size=int(opts.get("max_message_size", 4 * 1024 * 1024)),
            heartbeat=opts.get("heartbeat", 30.0),
            ssl=tls if tls is not None else True,
        )
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        await session.close()
        raise ConnectError(message=f"cannot open WebSocket {target}: {exc}") from exc
    return WebSocketConnection(session, ws, target,
                               max_incoming_calls=int(opts.get("max_incoming_calls", 1024)))
