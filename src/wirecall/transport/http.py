"""HTTP/1.1 and WebSocket: JSON-RPC 2.0 (and Go's 1.0) at ``POST /jsonrpc``, ``/ws``, probes.

Server (``http://host:port[/path]``): ``serve(server, url, **opts)`` answers

* ``POST /jsonrpc`` (and the ``/rpc`` alias; ``url.path`` or ``paths=`` change them): JSON-RPC
  2.0 bodies (single, batch, notifications) and Go ``net/rpc/jsonrpc`` 1.0 requests, see
  :mod:`wirecall.protocol.jsonrpc2`;
* ``GET /healthz`` (liveness: 200 while the process serves) and ``GET /readyz`` (readiness:
  503 from the moment graceful shutdown starts);
* ``GET /ws`` with ``Upgrade: websocket``: JSON-RPC 2.0 in both directions (see
  :class:`WebSocketSession`), served by aiohttp's WebSocket implementation, with streaming
  calls (``rpc.stream.*`` notifications, credit-based flow control: ``rpc.stream.window``);
* ``CONNECT /_goRPC_`` (Go's ``rpc.DialHTTP``): handed to the gob transport.

The request path is parsed by ``httptools`` (llhttp) under our own ``asyncio.Protocol``:
the body limit is enforced from ``Content-Length`` before the body is read and while a chunked
body streams in (413), headers are bounded in size (431) and time (408), idle keep-alive
connections are closed, pipelined requests are answered in order, ``Expect: 100-continue`` is
answered, absolute-form targets are routed by their path.

Client (``http://host:port/jsonrpc``): :class:`HttpConnection` over aiohttp's pooled
keep-alive connections, with ``call``, ``notify`` and ``batch``. ``ws://host:port/ws``:
:class:`WebSocketConnection`, which also receives the server's notifications and calls.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import importlib
import inspect
import itertools
import logging
import time
import typing
import weakref
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping, Sequence
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

import msgspec

from ..context import Context
from ..errors import (
    ConnectError,
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    RpcError,
    Unavailable,
    Unimplemented,
)
from ..protocol import jsonrpc2 as j2
from ..status import Status
from ..streaming import ClientStream, expire_later
from .base import URL, ClientConnection, Listener

if TYPE_CHECKING:
    from ..server import Server

__all__ = [
    "BatchCall",
    "HttpConnection",
    "HttpListener",
    "HttpService",
    "WebSocketConnection",
    "WebSocketSession",
    "batch",
    "connect",
    "current_websocket",
    "handle_body",
    "make_server_protocol",
    "serve",
]

log = logging.getLogger("wirecall.http")

TIMEOUT_HEADER = "Wirecall-Timeout"
META_PREFIX = "Wirecall-Meta-"
_META_PREFIX_L = META_PREFIX.lower().encode()
_JSON_TYPES = frozenset({b"application/json", b"application/json-rpc", b"application/jsonrequest"})

# ---------------------------------------------------------------------------------------
# JSON-RPC body -> server dispatch -> response body (shared by HTTP and WebSocket)
# ---------------------------------------------------------------------------------------

Respond = Callable[[bytes | None], None]


def _encode_reply(reply: j2.Reply) -> bytes:
    data = j2.encode(reply)
    return data if "jsonrpc" in reply else data + b"\n"


def _result_bytes(call: j2.Call, result: Any) -> bytes:
    try:
        return _encode_reply(j2.result_reply(call, result))
    except (TypeError, ValueError, msgspec.EncodeError) as exc:
        err = Internal(message=f"cannot encode the result of {call.method}: {exc}")
        return _encode_reply(j2.error_reply(call, err))


_go_json: list[Any] = []


def _go_json_module() -> Any:
    """The Go JSON-RPC transport (Go's exact argument semantics), or None if absent."""
    if not _go_json:
        try:
            _go_json.append(importlib.import_module("wirecall.transport.gojsonrpc"))
        except ImportError:
            _go_json.append(None)
    return _go_json[0]


def _serve_go(server: Server, item: Any, body: bytes, peer: str, respond: Respond) -> bool:
    """Serve a Go 1.0 request with the Go JSON-RPC transport's functions (True if it did)."""
    go = _go_json_module()
    if go is None:
        return False
    if type(item) is j2.ErrorReply and item.stream:
        if body.lstrip()[:1] != b"{":
            return False
        # several JSON values in one body: Go's ServeConn answers each, one line apiece
        task = asyncio.ensure_future(go.handle_http_body(server, body, peer))
        task.add_done_callback(lambda t: respond(None if t.cancelled() or t.exception()
                                                 else (t.result() or None)))
        return True
    if item.raw is None:
        return False
    try:
        go.start_go_json_call(server, item.raw, peer, respond, transport="http")
    except RpcError:  # what Go would drop the connection on: answer in our own words
        return False
    return True


def handle_body(
    server: Server,
    body: bytes,
    make_ctx: Callable[[], Context],
    respond: Respond,
    peer: str = "",
) -> None:
    """Run every call in a JSON-RPC body and ``respond(bytes)`` once (``None``: no body).

    Single requests answer with one object, batches with an array of the replies in
    completion order; notifications run but are not answered. A request without
    ``"jsonrpc": "2.0"`` is answered as Go's ``net/rpc/jsonrpc`` server answers it (by
    :mod:`wirecall.transport.gojsonrpc` when present, else by :mod:`~wirecall.protocol.jsonrpc2`).
    """
    items, is_batch = j2.parse(body)
    handle_items(server, items, is_batch, body, make_ctx, respond, peer)


def _call_ctx(make_ctx: Callable[[], Context], call: j2.Call) -> Context:
    ctx = make_ctx()
    if call.metadata:  # wirecall's "metadata" member adds to (overrides) the connection's
        ctx.metadata = {**ctx.metadata, **call.metadata}
    return ctx


def handle_items(
    server: Server,
    items: list[j2.Call | j2.ErrorReply],
    is_batch: bool,
    body: bytes,
    make_ctx: Callable[[], Context],
    respond: Respond,
    peer: str = "",
) -> None:
    """:func:`handle_body` for a body already parsed (:func:`~wirecall.protocol.jsonrpc2.parse`)."""
    if not is_batch:
        item = items[0]
        if (item.raw is not None or (type(item) is j2.ErrorReply and item.stream)) and _serve_go(
            server, item, body, peer, respond
        ):
            return
        if type(item) is j2.ErrorReply:
            respond(_encode_reply(item.reply))
            return
        call: j2.Call = item  # type: ignore[assignment]
        if call.notify:

            def notified(_r: Any, exc: BaseException | None) -> None:
                if exc is not None:
                    log.debug("notification %s failed: %s", call.method, exc)
                respond(None)

            server.start_call(call.method, call.params, _call_ctx(make_ctx, call), notified)
            return

        def done(result: Any, exc: BaseException | None) -> None:
            if exc is None:
                respond(_result_bytes(call, result))
            else:
                respond(_encode_reply(j2.error_reply(call, _as_rpc_error(exc))))

        server.start_call(call.method, call.params, _call_ctx(make_ctx, call), done)
        return

    replies: list[j2.Reply] = []
    left = [len(items)]

    def one_done() -> None:
        left[0] -= 1
        if left[0] == 0:
            respond(j2.encode_replies(replies, True))

    for item in items:
        if type(item) is j2.ErrorReply:
            replies.append(item.reply)
            one_done()
            continue
        c: j2.Call = item  # type: ignore[assignment]
        server.start_call(c.method, c.params, _call_ctx(make_ctx, c),
                          _batch_cb(c, replies, one_done))


def _batch_cb(
    call: j2.Call, replies: list[j2.Reply], one_done: Callable[[], None]
) -> Callable[[Any, BaseException | None], None]:
    def cb(result: Any, exc: BaseException | None) -> None:
        if not call.notify:
            if exc is None:
                reply = j2.result_reply(call, result)
                try:
                    j2.encode(result)
                except (TypeError, ValueError, msgspec.EncodeError) as e:
                    err = Internal(message=f"cannot encode the result of {call.method}: {e}")
                    reply = j2.error_reply(call, err)
            else:
                reply = j2.error_reply(call, _as_rpc_error(exc))
            replies.append(reply)
        one_done()

    return cb


def _as_rpc_error(exc: BaseException) -> RpcError:
    if isinstance(exc, RpcError):
        return exc
    return Internal(message=f"{type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------------------
# The HTTP/1.1 server protocol (httptools)
# ---------------------------------------------------------------------------------------

_REASONS = {
    200: b"OK",
    204: b"No Content",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    415: b"Unsupported Media Type",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}
_date_cache: list[Any] = [0, b""]


def _date() -> bytes:
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True).encode()
    d: bytes = _date_cache[1]
    return d


def _response(
    status: int,
    body: bytes = b"",
    content_type: bytes = b"application/json",
    close: bool = False,
    extra: bytes = b"",
) -> bytes:
    head = b"HTTP/1.1 %d %s\r\nDate: %s\r\nServer: wirecall\r\n" % (
        status,
        _REASONS.get(status, b"Unknown"),
        _date(),
    )
    if status != 204:
        head += b"Content-Type: %s\r\nContent-Length: %d\r\n" % (content_type, len(body))
    if close:
        head += b"Connection: close\r\n"
    return head + extra + b"\r\n" + body


def _text(status: int, message: str, close: bool = False, extra: bytes = b"") -> bytes:
    return _response(status, message.encode() + b"\n", b"text/plain; charset=utf-8", close, extra)


# request-reading states
_IDLE, _HEADERS, _BODY, _DONE = 0, 1, 2, 3
# routes
_R_NONE, _R_RPC, _R_HEALTH, _R_READY, _R_WS, _R_REJECT = range(6)

GO_RPC_PATH = b"/_goRPC_"


def _origin_form(target: bytes) -> bytes:
    """``http://host/path?q`` -> ``/path?q`` (absolute-form, RFC 9112 §3.2.2: servers must
    accept it); any other target is returned unchanged."""
    scheme, sep, rest = target.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https"):
        return target
    end = len(rest)
    for c in (b"/", b"?", b"#"):
        i = rest.find(c)
        if 0 <= i < end:
            end = i
    origin = rest[end:]
    if not origin.startswith(b"/"):
        origin = b"/" + origin
    return origin


class HttpService:
    """What every connection of one HTTP endpoint shares: routes, limits, the aiohttp side."""

    def __init__(
        self,
        server: Server,
        *,
        paths: Sequence[str] = ("/jsonrpc", "/rpc"),
        ws_path: str | None = "/ws",
        health_path: str = "/healthz",
        ready_path: str = "/readyz",
        go_rpc_path: str | None = "/_goRPC_",
        max_body: int | None = None,
        max_header_size: int = 64 * 1024,
        header_timeout: float = 10.0,
        body_timeout: float = 30.0,
        keepalive_timeout: float = 75.0,
        linger_timeout: float = 2.0,
        max_pipeline: int = 64,
        ws_heartbeat: float | None = 30.0,
        **_ignored: Any,
    ) -> None:
        self.server = server
        self.paths = frozenset(p.encode() for p in paths)
        self.ws_path = ws_path.encode() if ws_path else None
        self.health_path = health_path.encode()
        self.ready_path = ready_path.encode()
        self.go_rpc_path = go_rpc_path.encode() if go_rpc_path else None
        self.max_body = server.max_message_size if max_body is None else int(max_body)
        self.max_header_size = max_header_size
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.keepalive_timeout = keepalive_timeout
        self.linger_timeout = linger_timeout
        self.max_pipeline = max_pipeline
        self.ws_heartbeat = ws_heartbeat
        self.connections: set[HttpProtocol] = set()
        self.accepted = 0  # connections accepted so far (keep-alive reuse shows here)
        self.sessions: set[WebSocketSession] = set()
        self.draining = False
        self.goaway_sent = False
        self._web: Any = None  # aiohttp.web.Server, created on the first WebSocket
        from ..openrpc import register_discover

        register_discover(server)  # rpc.discover: the OpenRPC document of the registry

    def protocol(self) -> HttpProtocol:
        return HttpProtocol(self)

    @property
    def ready(self) -> bool:
        return not (self.draining or self.server.closing)

    def goaway(self) -> None:
        """No new requests on kept-alive connections: answer with ``Connection: close``."""
        self.draining = True
        self.goaway_sent = True
        for conn in list(self.connections):
            conn.goaway()
        for s in list(self.sessions):
            s.goaway()

    async def aclose(self) -> None:
        for conn in list(self.connections):
            conn.close()
        for s in list(self.sessions):
            await s.close()
        if self._web is not None:
            await self._web.shutdown(1.0)

    # -- the aiohttp side (WebSocket) --------------------------------------------------

    def web_protocol(self) -> asyncio.Protocol:
        if self._web is None:
            from aiohttp import web

            self._web = web.Server(self._web_handler, access_log=None)
        proto: asyncio.Protocol = self._web()
        return proto

    async def _web_handler(self, request: Any) -> Any:
        from aiohttp import web

        if self.ws_path is None or request.path != self.ws_path.decode():
            return web.Response(status=404, text="not found\n")
        ws = web.WebSocketResponse(
            max_msg_size=self.max_body, heartbeat=self.ws_heartbeat, autoping=True
        )
        await ws.prepare(request)
        peer = request.remote or ""
        session = WebSocketSession(self, ws, peer, dict(request.headers))
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
        return ws


class HttpProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection (keep-alive, pipelining) in front of :class:`HttpService`."""

    def __init__(self, service: HttpService) -> None:
        import httptools

        self.svc = service
        self.server = service.server
        self._parser = httptools.HttpRequestParser(self)
        self._upgrade_exc = httptools.HttpParserUpgrade
        self._parse_error = httptools.HttpParserError
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self._queue: collections.deque[list[Any]] = collections.deque()
        self._state = _IDLE
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._first = True  # no request yet
        self._connect_buf: bytes | None = b""  # until we know the first request is no CONNECT
        self._discarding = False
        self._closed = False
        self._eof = False
        self._reading_paused = False
        self._writing_paused = False
        self._header_bytes = 0
        self._reset_request()

    def _reset_request(self) -> None:
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._body_size = 0
        self._route = _R_NONE
        self._reject: bytes | None = None
        self._continue = False  # "Expect: 100-continue" not answered yet

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)  # uvloop's is no subclass
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        self.svc.connections.add(self)
        self.svc.accepted += 1
        self._set_deadline(self.svc.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.svc.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if len(self._queue) < self.svc.max_pipeline:
            self._resume_reading()

    def eof_received(self) -> bool | None:
        if self._discarding or not self._queue:
            self.close()
            return None
        self._eof = True
        return True  # keep the write side open until pending responses are written

    def data_received(self, data: bytes) -> None:
        if self._discarding or self._closed:
            return
        if self._connect_buf is not None:  # the first bytes: is it Go's CONNECT?
            buf = self._connect_buf + data
            if self.svc.go_rpc_path is not None and buf[:1] == b"C":
                self._connect_buf = buf
                if self._try_go_connect():
                    return
            self._connect_buf = None
            data = buf
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except self._upgrade_exc as exc:
            offset = exc.args[0] if exc.args else len(data)
            rest = data[offset:]
            if self._route == _R_WS:
                self._handoff_websocket(rest)
            elif rest and not self._discarding:
                self._feed(rest)  # an Upgrade we do not do: keep speaking HTTP/1.1
            return
        except self._parse_error as exc:
            if not self._discarding:
                self._fail(400, f"malformed HTTP request: {exc}")
            return
        if self._state == _HEADERS:
            self._header_bytes += len(data)
            if self._header_bytes > self.svc.max_header_size:
                self._fail(431, f"request headers over {self.svc.max_header_size} bytes")

    # -- Go's CONNECT /_goRPC_ ------------------------------------------------------------

    def _try_go_connect(self) -> bool:
        """Handle Go's ``CONNECT /_goRPC_ HTTP/1.0\\n\\n`` (bare LF: not for llhttp).

        True when the bytes were consumed here (handed off, refused, or waiting for more);
        False when this is no CONNECT and the bytes go to the HTTP parser.
        """
        buf = self._connect_buf or b""
        if len(buf) < 8:
            return b"CONNECT ".startswith(buf)
        if not buf.startswith(b"CONNECT "):
            return False
        end, end2 = buf.find(b"\n\n"), buf.find(b"\r\n\r\n")
        if end < 0 and end2 < 0:
            if len(buf) > 4096:
                self._connect_buf = None
                self._fail(431, "CONNECT request too long")
            return True
        if end2 >= 0 and (end < 0 or end2 < end):
            head, rest = buf[:end2], buf[end2 + 4 :]
        else:
            head, rest = buf[:end], buf[end + 2 :]
        self._connect_buf = None
        parts = head.split(b"\n", 1)[0].split()
        path = parts[1] if len(parts) >= 2 else b""
        if path != self.svc.go_rpc_path:
            self._fail(404, f"no CONNECT handler for {path.decode(errors='replace')}")
            return True
        self._handoff_gob(rest)
        return True

    def _handoff_gob(self, rest: bytes) -> None:
        assert self.transport is not None
        try:
            netrpc: Any = importlib.import_module("wirecall.transport.netrpc")
        except ImportError as exc:
            log.error(
                "%s: CONNECT %s needs the gob transport (wirecall.transport.netrpc), "
                "which is not available: %s",
                self.peer,
                self.svc.go_rpc_path,
                exc,
            )
            self._fail(503, "Go net/rpc over HTTP is not available on this server")
            return
        self._detach()
        # writes Go's "HTTP/1.0 200 Connected to Go RPC" and switches to the gob protocol
        netrpc.accept_http_connect(self.server, self.transport, rest)

    # -- WebSocket upgrade: hand the connection to aiohttp -------------------------------

    def _handoff_websocket(self, rest: bytes) -> None:
        assert self.transport is not None
        method = self._parser.get_method()
        head = b"%s %s HTTP/1.1\r\n" % (method, self._url)
        head += b"".join(b"%s: %s\r\n" % (n, v) for n, v in self._headers)
        raw = head + b"\r\n" + rest
        self._detach()
        transport = self.transport
        proto = self.svc.web_protocol()
        transport.set_protocol(proto)
        proto.connection_made(transport)
        proto.data_received(raw)

    def _detach(self) -> None:
        """This connection leaves HTTP/1.1 for another protocol."""
        self._closed = True
        self.svc.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._resume_reading()

    # -- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._state = _HEADERS
        self._first = False
        self._header_bytes = 0
        self._set_deadline(self.svc.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._state = _BODY
        svc = self.svc
        self._set_deadline(svc.body_timeout)
        size = len(self._url) + sum(len(n) + len(v) + 4 for n, v in self._headers)
        if size > svc.max_header_size:
            self._fail(431, f"request headers over {svc.max_header_size} bytes")
            return
        if self._url[:1] != b"/":
            self._url = _origin_form(self._url)
        path = self._url.split(b"?", 1)[0]
        method = self._parser.get_method()
        if path in svc.paths:
            if method != b"POST":
                self._route = _R_REJECT
                self._reject = _text(405, "use POST for JSON-RPC", extra=b"Allow: POST\r\n")
            else:
                self._route = _R_RPC
        elif path == svc.health_path or path == svc.ready_path:
            if method not in (b"GET", b"HEAD"):
                self._route = _R_REJECT
                self._reject = _text(405, "use GET", extra=b"Allow: GET, HEAD\r\n")
            else:
                self._route = _R_HEALTH if path == svc.health_path else _R_READY
        elif svc.ws_path is not None and path == svc.ws_path:
            if method == b"GET" and self._parser.should_upgrade():
                self._route = _R_WS
            else:
                self._route = _R_REJECT
                self._reject = _text(400, "this endpoint speaks WebSocket: send an Upgrade")
        else:
            self._route = _R_REJECT
            self._reject = _text(404, f"no such endpoint: {path.decode(errors='replace')}")
        expect = False
        length = -1
        for name, value in self._headers:
            ln = len(name)
            if ln == 14 and name.lower() == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = 0
                if length > svc.max_body:
                    self._fail(413, f"request body of {length} bytes is over the limit of "
                               f"{svc.max_body} bytes")
                    return
            elif ln == 6 and name.lower() == b"expect":
                expect = value.strip().lower() == b"100-continue"
        if expect and length != 0 and self._route != _R_WS and (
            self._parser.get_http_version() != "1.0"
        ):
            # the client waits for this before sending the body (RFC 9110 §10.1.1); behind
            # answers still pending, it goes out right after them (see _complete)
            self._continue = True
            if not self._queue:
                self._send_continue()

    def _send_continue(self) -> None:
        self._continue = False
        if self.transport is not None and not self._closed:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, data: bytes) -> None:
        if self._discarding:
            return
        self._body_size += len(data)
        if self._body_size > self.svc.max_body:
            self._fail(413, f"request body is over the limit of {self.svc.max_body} bytes")
            return
        if self._route == _R_RPC:
            self._body.append(data)

    def on_message_complete(self) -> None:
        if self._discarding:
            return
        self._state = _DONE
        route = self._route
        if route == _R_WS:
            return  # the HttpParserUpgrade that follows hands the connection over
        keep = self._parser.should_keep_alive() and not self.svc.goaway_sent
        slot: list[Any] = [None, not keep]
        self._queue.append(slot)
        if len(self._queue) >= self.svc.max_pipeline:
            self._pause_reading()
        if route == _R_RPC:
            self._handle_rpc(slot)
        elif route in (_R_HEALTH, _R_READY):
            if route == _R_HEALTH or self.svc.ready:
                resp = _text(200, "ok" if route == _R_HEALTH else "ready", close=slot[1])
            else:
                resp = _text(503, "shutting down", close=slot[1])
            if self._parser.get_method() == b"HEAD":
                resp = resp[: resp.index(b"\r\n\r\n") + 4]
            self._complete(slot, resp)
        else:
            rej = self._reject or _text(404, "not found")
            if slot[1]:
                rej = rej.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
            self._complete(slot, rej)
        self._reset_request()
        self._state = _IDLE
        if not self._queue:
            self._set_deadline(self.svc.keepalive_timeout)
        else:
            self._deadline = None

    # -- JSON-RPC ---------------------------------------------------------------------

    def _handle_rpc(self, slot: list[Any]) -> None:
        ctype = None
        metadata: dict[str, str] | None = None
        timeout: float | None = None
        for name, value in self._headers:
            ln = name.lower()
            if ln == b"content-type":
                ctype = value
            elif ln.startswith(b"wirecall-"):
                if ln.startswith(_META_PREFIX_L):
                    if metadata is None:
                        metadata = {}
                    metadata[ln[len(_META_PREFIX_L):].decode("latin-1")] = value.decode("latin-1")
                elif ln == b"wirecall-timeout":
                    try:
                        timeout = float(value)
                    except ValueError:
                        self._complete(slot, _text(400, f"bad {TIMEOUT_HEADER}: {value!r}",
                                                   close=slot[1]))
                        return
        if ctype is not None:
            mime, _, params = ctype.partition(b";")
            mime = mime.strip().lower()
            if mime not in _JSON_TYPES:
                self._complete(
                    slot,
                    _text(415, f"JSON-RPC needs Content-Type application/json, got "
                               f"{ctype.decode('latin-1')}", close=slot[1]),
                )
                return
            cs = params.strip().lower()
            if cs and cs.startswith(b"charset=") and cs[8:].strip(b'"') not in (b"utf-8", b"utf8"):
                self._complete(slot, _text(415, "JSON-RPC bodies must be UTF-8", close=slot[1]))
                return
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        deadline = None if timeout is None else time.monotonic() + timeout
        md: Mapping[str, str] = metadata if metadata is not None else {}
        peer = self.peer
        server = self.server

        def make_ctx() -> Context:
            return Context("", md, deadline, peer, "http")

        refused = server.closing  # calls arriving now are refused (UNAVAILABLE): HTTP 503

        def respond(data: bytes | None) -> None:
            # shutting down: the last answer on this connection says so, and it closes
            close = bool(slot[1]) or (
                server.closing
                and bool(self._queue)
                and self._queue[-1] is slot
                and self._state == _IDLE
            )
            slot[1] = close
            if data is None:
                self._complete(slot, _response(503 if refused else 204, close=close))
            else:
                self._complete(slot, _response(503 if refused else 200, data, close=close))

        handle_body(server, body, make_ctx, respond, peer)

    # -- responses, in request order ----------------------------------------------------

    def _complete(self, slot: list[Any], data: bytes) -> None:
        slot[0] = data
        if self._closed or self.transport is None:
            return
        q = self._queue
        if q[0] is not slot:
            return
        transport = self.transport
        while q and q[0][0] is not None:
            s = q.popleft()
            transport.write(s[0])
            if s[1]:
                q.clear()
                self._close_after_write()
                return
        if not q:
            if self._reading_paused and not self._writing_paused:
                self._resume_reading()
            if self._state == _IDLE:
                if self.svc.goaway_sent or self._eof:
                    self.close()
                    return
                self._set_deadline(self.svc.keepalive_timeout)
            elif self._state == _HEADERS:  # a pipelined request half-read: its clock runs now
                self._set_deadline(self.svc.header_timeout)
            elif self._state == _BODY:
                self._set_deadline(self.svc.body_timeout)
                if self._continue:
                    self._send_continue()

    def _close_after_write(self) -> None:
        self._closed = True
        self.svc.connections.discard(self)
        if self.transport is not None:
            self.transport.close()

    def _fail(self, status: int, message: str) -> None:
        """Refuse the current request and close (lingering: drain what the client still sends,
        so it reads the answer instead of a reset)."""
        if self._discarding or self._closed:
            return
        log.info("%s: HTTP %d: %s", self.peer, status, message)
        self._discarding = True
        self._body = []
        self._queue.append([_text(status, message, close=True), True])
        if self._queue[0][0] is not None and self.transport is not None:
            transport = self.transport
            while self._queue and self._queue[0][0] is not None:
                s = self._queue.popleft()
                transport.write(s[0])
                if s[1]:
                    break
            self._queue.clear()
            if transport.can_write_eof():
                with contextlib.suppress(OSError, RuntimeError):
                    transport.write_eof()
            self._deadline = None
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_later(self.svc.linger_timeout, self.close)

    def goaway(self) -> None:
        if not self._queue and self._state == _IDLE:
            self.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self._closed = True
        self.svc.connections.discard(self)

    # -- flow control and timeouts --------------------------------------------------------

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    def _set_deadline(self, seconds: float) -> None:
        self._deadline = self._loop.time() + seconds
        if self._timer is None and not self._closed:
            self._timer = self._loop.call_at(self._deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None or self._closed:
            return
        now = self._loop.time()
        if now < deadline:
            self._timer = self._loop.call_at(deadline, self._on_timer)
            return
        if self._queue:
            # answers still pending: a half-read pipelined request is not timed while the
            # server works; check again later (``_complete`` restarts its clock when done)
            if self._state != _IDLE:
                self._set_deadline(self.svc.header_timeout if self._state == _HEADERS
                                   else self.svc.body_timeout)
            return
        if self._state in (_HEADERS, _BODY):
            what = "headers" if self._state == _HEADERS else "body"
            self._fail(408, f"request {what} not received in time")
        elif self._state == _IDLE:
            if self._first:
                log.info("%s: closing: no request within %.1fs", self.peer,
                         self.svc.header_timeout)
            self.close()


# ---------------------------------------------------------------------------------------
# WebSocket: JSON-RPC 2.0 in both directions
# ---------------------------------------------------------------------------------------

STREAM_ITEM = "rpc.stream.item"  # {"id": <call id>, "item": <one message>}, either way
STREAM_END = "rpc.stream.end"  # {"id": <call id>}: the client sends no more items
STREAM_CANCEL = "rpc.stream.cancel"  # {"id": <call id>}: the client gives the call up
STREAM_WINDOW = "rpc.stream.window"  # {"id": <call id>, "n": k}: k more items may come
STREAM_WINDOW_INITIAL = 16  # items each side may send before the first rpc.stream.window
_GRANT_AT = STREAM_WINDOW_INITIAL // 2  # grant credit back in batches of half a window


def _window_increment(p: Any) -> int:
    n = p.get("n") if isinstance(p, dict) else None
    return n if type(n) is int and 0 < n <= 1 << 20 else 0


def _convert_arg(value: Any, tp: Any) -> Any:
    if tp is Any or tp is None or tp is inspect.Parameter.empty:
        return value
    try:
        return msgspec.convert(value, tp, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidArgument(message=f"invalid stream item: {exc}") from None


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

    def __init__(self, svc: HttpService, ws: Any, peer: str, headers: Mapping[str, str]) -> None:
        self.svc = svc
        self.server = svc.server
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
        self._inflight = 0  # calls (and streams) started and not yet answered
        self._max_inflight = max(1, int(getattr(self.server, "max_concurrent_calls", 1024)))

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
            doc = j2._decode_any(data)
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
                spec = self.server.registry.methods.get(method)
                if spec is not None and spec.mode != "unary" and "id" in doc:
                    items, _ = j2.parse_document(doc)
                    item = items[0]
                    if type(item) is j2.Call:
                        self._start_stream(spec, item)
                        return
        self._handle(j2.parse_document(doc), data)

    def _handle(self, parsed: tuple[list[j2.Call | j2.ErrorReply], bool], data: bytes) -> None:
        items, is_batch = parsed
        n = sum(1 for it in items if type(it) is j2.Call)
        if n and self._inflight and self._inflight + n > self._max_inflight:
            self._refuse(items, is_batch)
            return
        self._inflight += n

        def respond(out: bytes | None) -> None:
            self._inflight -= n
            self._respond(out)

        token = _current_ws.set(self)
        try:
            handle_items(self.server, items, is_batch, data, self._make_ctx, respond, self.peer)
        finally:
            _current_ws.reset(token)

    def _refuse(self, items: list[j2.Call | j2.ErrorReply], is_batch: bool) -> None:
        """Over ``max_concurrent_calls`` calls in flight on this WebSocket (as on the native
        protocol): answer RESOURCE_EXHAUSTED at once instead of starting more handlers."""
        err = ResourceExhausted(message=f"too many calls in flight on this WebSocket "
                                        f"(limit {self._max_inflight})")
        replies = []
        for it in items:
            if type(it) is j2.ErrorReply:
                replies.append(it.reply)
            elif not it.notify:  # type: ignore[union-attr]
                replies.append(j2.error_reply(it, err))  # type: ignore[arg-type]
        self._respond(j2.encode_replies(replies, is_batch))

    # -- streaming calls: wirecall's convention on JSON-RPC 2.0 (docs/http.md) ----------

    def _start_stream(self, spec: Any, call: j2.Call) -> None:
        from ..streaming import Inbound

        id = call.id
        if id in self._streams:
            self._respond(j2.encode(j2.error_reply(call, InvalidArgument(
                message=f"a streaming call with id {id!r} is already open"))))
            return
        if self._inflight >= self._max_inflight:
            self._refuse([call], False)
            return
        self._inflight += 1
        ctx = _call_ctx(self._make_ctx, call)
        client_streams = spec.mode in ("client_stream", "bidi_stream")
        st = _WsServerStream(ctx, None, spec.request_type)
        if client_streams:

            def consumed(_credit: int) -> None:
                st.consumed += 1
                if st.consumed >= _GRANT_AT and not st.dead:
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
            self._inflight -= 1
            if self._streams.get(id) is st:
                del self._streams[id]
            if st.dead:
                return  # already answered (refused for exceeding its window)
            st.dead = True
            if exc is None:
                self._respond(j2.encode(j2.result_reply(call, None)))
            else:
                self._respond(j2.encode(j2.error_reply(call, _as_rpc_error(exc))))

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
            n = _window_increment(p)
            if n:
                st.credit += n
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
                inbound.put(_convert_arg(p.get("item"), st.item_type), 1)
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
        return Context("", self.metadata, None, self.peer, "ws")

    def _respond(self, data: bytes | None) -> None:
        if data is None or self.ws.closed:
            return
        task = asyncio.ensure_future(self.ws.send_str(data.decode()))
        self._tasks.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("%s: WebSocket send failed: %s", self.peer, task.exception())


_NO_METHOD: Any = object()


# ---------------------------------------------------------------------------------------
# Listener
# ---------------------------------------------------------------------------------------


class HttpListener(Listener):
    def __init__(
        self, service: HttpService, url: str, aserver: asyncio.AbstractServer, drain_delay: float
    ) -> None:
        self.service = service
        self.url = url
        self._aserver = aserver
        self._drain_delay = drain_delay

    async def stop_accepting(self) -> None:
        """Readiness turns 503 now; the socket closes after ``drain_delay`` seconds (so a load
        balancer polling ``/readyz`` stops sending before connections are refused)."""
        self.service.draining = True
        if self._drain_delay > 0:
            await asyncio.sleep(self._drain_delay)
        self._aserver.close()

    def goaway(self) -> None:
        self.service.goaway()

    async def aclose(self) -> None:
        self._aserver.close()
        await self.service.aclose()


_services: weakref.WeakKeyDictionary[Any, HttpService] = weakref.WeakKeyDictionary()


def make_server_protocol(server: Server, **opts: Any) -> asyncio.Protocol:
    """An HTTP/1.1 server protocol for ``server`` (used by the one-port sniffing listener).

    The :class:`HttpService` (routes, limits, WebSocket sessions) is made once per server.
    """
    svc = opts.pop("service", None) or _services.get(server)
    if svc is None:
        svc = _services[server] = HttpService(server, **opts)
    return HttpProtocol(svc)


async def serve(server: Server, url: URL, **opts: Any) -> HttpListener:
    """Listen on ``http://host:port[/path]``; ``path`` replaces ``/jsonrpc`` (``/rpc`` stays).

    Options: ``paths``, ``ws_path``, ``max_body`` (default ``server.max_message_size``),
    ``header_timeout``, ``body_timeout``, ``keepalive_timeout``, ``max_pipeline``,
    ``drain_delay`` (seconds between readiness turning 503 and the socket closing),
    ``backlog``, ``reuse_port``.
    """
    opts = dict(opts)
    drain_delay = float(opts.pop("drain_delay", url.query.get("drain_delay", 0.0)))
    backlog = int(opts.pop("backlog", 1024))
    reuse_port = bool(opts.pop("reuse_port", False))
    if url.path and url.path != "/" and "paths" not in opts:
        opts["paths"] = (url.path, "/rpc")
    svc = HttpService(server, **opts)
    loop = asyncio.get_running_loop()
    aserver = await loop.create_server(
        svc.protocol, url.host or None, url.port, backlog=backlog, reuse_address=True,
        reuse_port=reuse_port or None,
    )
    sock = aserver.sockets[0].getsockname()
    host = url.host or sock[0]
    real = URL(url.scheme if url.scheme != "ws" else "http", host, sock[1], url.path)
    return HttpListener(svc, str(real), aserver, drain_delay)


# ---------------------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------------------


class BatchCall(msgspec.Struct, frozen=True):
    """One element of :meth:`HttpConnection.batch`: a call, or a notification (no answer)."""

    method: str
    params: Any = None
    notify: bool = False
    result_type: Any = Any


BatchItem = BatchCall | tuple[str, Any] | tuple[str, Any, Any]


def _batch_calls(calls: Iterable[BatchItem]) -> list[BatchCall]:
    out = []
    for c in calls:
        if isinstance(c, BatchCall):
            out.append(c)
        elif isinstance(c, tuple) and len(c) in (2, 3):
            out.append(BatchCall(c[0], c[1], result_type=c[2] if len(c) == 3 else Any))
        else:
            raise TypeError(f"a batch element is a BatchCall or (method, params), got {c!r}")
    return out


def _convert(result: Any, result_type: Any) -> Any:
    if result_type is Any or result_type is None:
        return result
    try:
        return msgspec.convert(result, result_type, strict=False)
    except msgspec.ValidationError as exc:
        raise Internal(message=f"cannot decode the result as {result_type!r}: {exc}") from None


def _http_error(status: int, text: str) -> RpcError:
    text = text.strip()[:500]
    if status == 413:
        return ResourceExhausted(message=f"HTTP 413: {text}")
    if status == 404:
        return NotFound(message=f"HTTP 404: {text}")
    if status in (400, 415):
        return InvalidArgument(message=f"HTTP {status}: {text}")
    if status == 405:
        return Unimplemented(message=f"HTTP 405: {text}")
    if status in (408, 504):
        return DeadlineExceeded(message=f"HTTP {status}: {text}")
    if status in (502, 503):
        return Unavailable(message=f"HTTP {status}: {text}")
    return RpcError(Status.UNKNOWN, f"HTTP {status}: {text}")


class HttpConnection(ClientConnection):
    """JSON-RPC 2.0 over pooled HTTP keep-alive connections (aiohttp ``ClientSession``).

    ``pool_size`` bounds the keep-alive connections (calls beyond it wait for one).
    """

    def __init__(
        self,
        url: URL,
        *,
        pool_size: int = 100,
        timeout: float | None = 10.0,
        headers: Mapping[str, str] | None = None,
        keepalive_timeout: float = 30.0,
    ) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        path = url.path or "/jsonrpc"
        self.url = f"http://{url.hostport}{path}"
        self._connect_timeout = timeout
        connector = aiohttp.TCPConnector(
            limit=pool_size, keepalive_timeout=keepalive_timeout, enable_cleanup_closed=False
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"Content-Type": "application/json", **dict(headers or {})},
            skip_auto_headers=("User-Agent",),
        )
        self._ids = itertools.count(1)
        self._pending = 0
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        return self._pending

    def _headers(
        self, timeout: float | None, metadata: Mapping[str, str] | None
    ) -> dict[str, str] | None:
        if timeout is None and not metadata:
            return None
        h: dict[str, str] = {}
        if timeout is not None:
            h[TIMEOUT_HEADER] = f"{max(timeout, 0.0):.6f}"
        if metadata:
            for k, v in metadata.items():
                h[META_PREFIX + k] = v
        return h

    async def _post(
        self, body: bytes, timeout: float | None, metadata: Mapping[str, str] | None
    ) -> tuple[int, bytes]:
        aiohttp = self._aiohttp
        if self._closed:
            raise Unavailable(message="connection is closed")
        ct = aiohttp.ClientTimeout(total=timeout, connect=self._connect_timeout)
        self._pending += 1
        try:
            async with self._session.post(
                self.url, data=body, headers=self._headers(timeout, metadata), timeout=ct
            ) as resp:
                data = await resp.read()
                return resp.status, data
        except TimeoutError:
            raise DeadlineExceeded(message=f"no answer from {self.url} in {timeout}s") from None
        except aiohttp.ClientConnectorError as exc:
            raise ConnectError(message=f"cannot connect to {self.url}: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise Unavailable(message=f"HTTP request to {self.url} failed: {exc}") from exc
        finally:
            self._pending -= 1

    @staticmethod
    def _decode(status: int, data: bytes) -> Any:
        if status not in (200, 503) or not data:
            raise _http_error(status, data.decode("utf-8", "replace"))
        try:
            return j2._decode_any(data)
        except (msgspec.DecodeError, RecursionError):
            if status != 200:
                raise _http_error(status, data.decode("utf-8", "replace")) from None
            raise Internal(message=f"malformed JSON-RPC response: {data[:200]!r}") from None

    async def call(
        self,
        method: str,
        params: list[Any] | dict[str, Any] | None,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        result_type: Any = Any,
    ) -> Any:
        id = next(self._ids)
        body = j2.encode(j2.request_object(method, params, id))
        status, data = await self._post(body, timeout, metadata)
        obj = self._decode(status, data)
        try:
            _rid, result, err = j2.decode_response(obj)
        except ValueError as exc:
            raise Internal(message=f"bad JSON-RPC response: {exc}") from None
        if err is not None:
            raise err
        return _convert(result, result_type)

    async def notify(
        self,
        method: str,
        params: list[Any] | dict[str, Any] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Send a notification: the server runs it and answers nothing (HTTP 204)."""
        body = j2.encode(j2.request_object(method, params))
        status, data = await self._post(body, None, metadata)
        if status not in (200, 204):
            raise _http_error(status, data.decode("utf-8", "replace"))

    async def batch(
        self,
        calls: Iterable[BatchItem],
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> list[Any]:
        """Send ``calls`` as one JSON-RPC batch; results in the order of ``calls``.

        A failed element is its :class:`RpcError` in the list (not raised); a notification's
        place holds ``None``. The batch as a whole raises only if the HTTP exchange fails.
        """
        items = _batch_calls(calls)
        if not items:
            return []
        ids: dict[int, int] = {}
        reqs = []
        for i, c in enumerate(items):
            if c.notify:
                reqs.append(j2.request_object(c.method, c.params))
            else:
                rid = next(self._ids)
                ids[rid] = i
                reqs.append(j2.request_object(c.method, c.params, rid))
        status, data = await self._post(j2.encode(reqs), timeout, metadata)
        out: list[Any] = [None] * len(items)
        if status == 204 or not data:
            if ids:
                raise Internal(message="the server sent no answer to a batch with calls")
            return out
        obj = self._decode(status, data)
        if isinstance(obj, dict):  # the batch as a whole was refused
            _rid, _res, err = j2.decode_response(obj)
            raise err if err is not None else Internal(message="unexpected batch answer")
        if not isinstance(obj, list):
            raise Internal(message="a batch answer must be an array")
        for o in obj:
            try:
                rid, result, err = j2.decode_response(o)
            except ValueError as exc:
                raise Internal(message=f"bad JSON-RPC response in batch: {exc}") from None
            i = ids.pop(rid, -1) if isinstance(rid, int) else -1
            if i < 0:
                continue
            out[i] = err if err is not None else _convert(result, items[i].result_type)
        for i in ids.values():
            out[i] = Internal(message="the server's batch answer has no reply for this call")
        return out

    async def aclose(self) -> None:
        self._closed = True
        await self._session.close()


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
        req = j2.request_object(method, None if streaming_in else params, id, metadata)
        # (owned by the connection, not the stream: a stream collected or closed at once
        # must not cancel the request half-sent, or the rpc.stream.cancel would be skipped)
        opened = self._spawn(self._ws.send_bytes(j2.encode(req)))
        st._opened = st._tail = opened
        self._streams[id] = weakref.ref(st)
        st._cancel_on_collect(lambda: self._cancel_stream(id, opened))
        if timeout is not None:
            st._timer = expire_later(st, timeout)
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
        try:
            await self._ws.send_bytes(j2.encode(j2.request_object(method, params, id, metadata)))
            result = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise DeadlineExceeded(message=f"{method}: no answer in {timeout}s") from None
        finally:
            self._pending.pop(id, None)
        return _convert(result, result_type)

    async def notify(self, method: str, params: list[Any] | dict[str, Any] | None = None) -> None:
        await self._ws.send_bytes(j2.encode(j2.request_object(method, params)))

    async def batch(
        self,
        calls: Iterable[BatchItem],
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> list[Any]:
        """A batch over the WebSocket: same contract as :meth:`HttpConnection.batch`."""
        items = _batch_calls(calls)
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
                out.append(_convert(f.result(), c.result_type))
        return out

    async def _read(self) -> None:
        from aiohttp import WSMsgType

        try:
            async for msg in self._ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
                    try:
                        obj = j2._decode_any(data)
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
                st._finish(Unavailable(message="the WebSocket closed"))
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
                if st is None or not isinstance(p, dict):
                    return
                if method == STREAM_WINDOW:
                    st._grant(_window_increment(p))
                    return
                st.received += 1
                if st.received > st.granted:
                    st._fail(ResourceExhausted(
                        message=f"{st.method}: the server sent more stream items than the "
                                f"window ({st.granted}) allows"))
                    return
                try:
                    st._feed(_convert(p.get("item"), st.result_type), 1)
                except RpcError as exc:
                    st._fail(exc)
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
                stream._finish(err)
            return
        fut = self._pending.get(id)
        if fut is not None and not fut.done():
            if err is None:
                fut.set_result(result)
            else:
                fut.set_exception(err)

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
                tasks.extend(st._tasks)
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
        self._credit_waiter: asyncio.Future[None] | None = None

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
        if self.consumed >= _GRANT_AT and not self._done:
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


async def connect(url: URL, **opts: Any) -> ClientConnection:
    """``http://host:port[/path]`` (JSON-RPC 2.0, path ``/jsonrpc`` by default),
    ``http://host:port/_goRPC_`` (Go's HTTP+gob, via the gob transport) or
    ``ws://host:port/ws`` (JSON-RPC 2.0 over a WebSocket)."""
    if url.path == GO_RPC_PATH.decode():
        netrpc: Any = importlib.import_module("wirecall.transport.netrpc")
        conn: ClientConnection = await netrpc.connect_http(url, **opts)
        return conn
    if url.scheme in ("ws", "wss"):
        return await _connect_ws(url, **opts)
    known = {"pool_size", "timeout", "headers", "keepalive_timeout"}
    return HttpConnection(url, **{k: v for k, v in opts.items() if k in known})


async def _connect_ws(url: URL, **opts: Any) -> WebSocketConnection:
    import aiohttp

    headers = dict(opts.get("headers") or {})
    for k, v in dict(opts.get("metadata") or {}).items():
        headers[META_PREFIX + k] = v
    target = f"http://{url.hostport}{url.path or '/ws'}"
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
        )
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        await session.close()
        raise ConnectError(message=f"cannot open WebSocket {target}: {exc}") from exc
    return WebSocketConnection(session, ws, target,
                               max_incoming_calls=int(opts.get("max_incoming_calls", 1024)))


async def batch(client: Any, calls: Iterable[BatchItem], timeout: float | None = None) -> list[Any]:
    """``Client``-level batch: send ``calls`` as one JSON-RPC batch over one of the client's
    connections (an ``http://`` or ``ws://`` client). See :meth:`HttpConnection.batch`."""
    conn = await client.pool.get()
    if not hasattr(conn, "batch"):
        raise Unimplemented(message=f"{type(conn).__name__} has no JSON-RPC batch support")
    result: list[Any] = await conn.batch(calls, timeout=timeout)
    return result
