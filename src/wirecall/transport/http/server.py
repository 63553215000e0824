"""The HTTP/1.1 server: JSON-RPC 2.0 (and Go's 1.0) at ``POST /jsonrpc``, probes, and the
hand-offs to the WebSocket server and to Go's HTTP+gob.

``serve(server, url, **opts)`` (``http://host:port[/path]``) answers

* ``POST /jsonrpc`` (and the ``/rpc`` alias; ``url.path`` or ``paths=`` change them): JSON-RPC
  2.0 bodies (single, batch, notifications) and Go ``net/rpc/jsonrpc`` 1.0 requests, see
  :mod:`wirecall.protocol.jsonrpc2` and :mod:`.dispatch`;
* ``GET /healthz`` (liveness: 200 while the process serves) and ``GET /readyz`` (readiness:
  503 from the moment graceful shutdown starts);
* ``GET /ws`` with ``Upgrade: websocket``: handed to aiohttp, see :mod:`.websocket`;
* ``CONNECT /_goRPC_`` (Go's ``rpc.DialHTTP``): handed to the gob transport
  (:func:`wirecall.transport.gob.accept_http_connect`).

The request path is parsed by ``httptools`` (llhttp) under our own ``asyncio.Protocol``:
the body limit is enforced from ``Content-Length`` before the body is read and while a chunked
body streams in (413), headers are bounded in size (431) and time (408), idle keep-alive
connections are closed, pipelined requests are answered in order, ``Expect: 100-continue`` is
answered, absolute-form targets are routed by their path.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib
import logging
import time
import typing
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...context import Context
from ...protocol import netrpc as nr
from ..base import URL, Listener
from ..sockets import ConnectionSet
from ..tls import DEFAULT_HANDSHAKE_TIMEOUT, peer_identity, pop_server_tls
from .common import META_PREFIX, TIMEOUT_HEADER, go_dialect, origin_form
from .dispatch import CallSlots, handle_body
from .responses import response, text
from .websocket import WebSocketSession, serve_websocket

if TYPE_CHECKING:
    from ...seam import Dispatcher

__all__ = ["HttpListener", "HttpProtocol", "HttpService", "make_server_protocol", "serve"]

log = logging.getLogger("wirecall.http")

_META_PREFIX_L = META_PREFIX.lower().encode()
_JSON_TYPES = frozenset({b"application/json", b"application/json-rpc", b"application/jsonrequest"})

# request-reading states
_IDLE, _HEADERS, _BODY, _DONE = 0, 1, 2, 3
# routes
_R_NONE, _R_RPC, _R_HEALTH, _R_READY, _R_WS, _R_REJECT, _R_GO = range(7)


class HttpService:
    #: the scheme it serves ("http", "https", "ws", "wss"), for ``Context.transport``
    scheme = "http"
    """What every connection of one HTTP endpoint shares: routes, limits, the aiohttp side."""

    def __init__(
        self,
        server: Dispatcher,
        *,
        paths: Sequence[str] = ("/jsonrpc", "/rpc"),
        go_paths: Sequence[str] = ("/jsonrpc",),
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
        #: the paths answered as Go's net/rpc/jsonrpc server answers (the tutorial's
        #: ``/jsonrpc``): a single request gets ``{"id", "result", "error"}`` even when it says
        #: ``"jsonrpc": "2.0"``; the other paths speak JSON-RPC 2.0 (docs/http.md)
        self.go_paths = frozenset(p.encode() for p in go_paths) & self.paths
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
        #: bytes of responses a peer may leave unread (``Limits(max_unsent_bytes=)``)
        self.max_unsent = server.limits.max_unsent_bytes
        self.ws_heartbeat = ws_heartbeat
        self.connections: ConnectionSet = ConnectionSet()  # HttpProtocol
        self.accepted = 0  # connections accepted so far (keep-alive reuse shows here)
        self.sessions: set[WebSocketSession] = set()
        self.draining = False
        self.goaway_sent = False
        self._web: Any = None  # aiohttp.web.Server, created on the first WebSocket

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
        return await serve_websocket(
            self.server, request, path=self.ws_path.decode() if self.ws_path else None,
            max_message_size=self.max_body, heartbeat=self.ws_heartbeat, sessions=self.sessions)


class HttpProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection (keep-alive, pipelining) in front of :class:`HttpService`."""

    def __init__(self, service: HttpService) -> None:
        import httptools

        self.svc = service
        self.server = service.server
        self._parser: Any = httptools.HttpRequestParser(self)
        self._upgrade_exc = httptools.HttpParserUpgrade
        self._parse_error = httptools.HttpParserError
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.identity = ""
        #: one slot per request read, in order: [response bytes or None, close after it]
        self._queue: collections.deque[list[Any]] = collections.deque()
        #: requests read (their slots queued) but not started: past ``max_pipeline`` started
        #: or while the peer is not reading, the rest of a read waits here (see _run_deferred)
        self._deferred: collections.deque[tuple[list[Any], tuple[Any, ...]]] = (
            collections.deque())
        self._deferred_scheduled = False
        self._held = 0  # bytes of answers ready but queued behind an earlier, unanswered one
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
        #: JSON-RPC calls in flight on this connection (batches included) against the limit
        self._slots = CallSlots(self.server.max_concurrent_calls, service.max_unsent)
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
        self.identity = peer_identity(transport)
        self.svc.connections.add(self)
        self.svc.accepted += 1
        self._set_deadline(self.svc.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.svc.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # the parser holds this object's bound callbacks: drop it, so the connection (and
        # the request it was reading) is freed without the cyclic GC
        self._parser = None
        self._body = []
        self._deferred.clear()

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._deferred:
            self._schedule_deferred()
        elif len(self._queue) < self.svc.max_pipeline:
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
        started = nr.starts_connect(buf)
        if not started:
            return started is None  # (None: too few bytes to tell yet)
        head = nr.split_http_head(buf)
        if head is None:
            if len(buf) > 4096:
                self._connect_buf = None
                self._fail(431, "CONNECT request too long")
            return True
        line, rest = head
        self._connect_buf = None
        parts = line.split()
        path = parts[1] if len(parts) >= 2 else b""
        if path != self.svc.go_rpc_path:
            self._fail(404, f"no CONNECT handler for {path.decode(errors='replace')}")
            return True
        self._handoff_gob(rest)
        return True

    def _handoff_gob(self, rest: bytes) -> None:
        assert self.transport is not None
        try:
            gob: Any = importlib.import_module("wirecall.transport.gob")
        except ImportError as exc:
            log.error(
                "%s: CONNECT %s needs the gob transport (wirecall.transport.gob), "
                "which is not available: %s",
                self.peer,
                self.svc.go_rpc_path,
                exc,
            )
            self._fail(503, "Go net/rpc over HTTP is not available on this server")
            return
        self._detach()
        # writes Go's "HTTP/1.0 200 Connected to Go RPC" and switches to the gob protocol
        gob.accept_http_connect(self.server, self.transport, rest)

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
        # as in connection_lost: the parser holds our bound callbacks (a cycle that would
        # keep this object, its headers and body until the cyclic GC runs)
        self._parser = None
        self._body = []
        self._deferred.clear()

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
            self._url = origin_form(self._url)
        path = self._url.split(b"?", 1)[0]
        method = self._parser.get_method()
        if path in svc.paths:
            if method != b"POST":
                self._route = _R_REJECT
                self._reject = text(405, "use POST for JSON-RPC", extra=b"Allow: POST\r\n")
            else:
                self._route = _R_GO if path in svc.go_paths else _R_RPC
        elif path == svc.health_path or path == svc.ready_path:
            if method not in (b"GET", b"HEAD"):
                self._route = _R_REJECT
                self._reject = text(405, "use GET", extra=b"Allow: GET, HEAD\r\n")
            else:
                self._route = _R_HEALTH if path == svc.health_path else _R_READY
        elif svc.ws_path is not None and path == svc.ws_path:
            if method == b"GET" and self._parser.should_upgrade():
                self._route = _R_WS
            else:
                self._route = _R_REJECT
                self._reject = text(400, "this endpoint speaks WebSocket: send an Upgrade")
        else:
            self._route = _R_REJECT
            self._reject = text(404, f"no such endpoint: {path.decode(errors='replace')}")
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
        if self._route in (_R_RPC, _R_GO):
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
        q = self._queue
        q.append(slot)
        if len(q) >= self.svc.max_pipeline:
            self._pause_reading()
        head = route in (_R_HEALTH, _R_READY) and self._parser.get_method() == b"HEAD"
        # one read may hold thousands of pipelined requests (httptools parses all of it):
        # at most max_pipeline run at once, none while the peer leaves answers unread
        if self._deferred or self._writing_paused or len(q) > self.svc.max_pipeline:
            self._deferred.append((slot, (route, self._headers, self._body, head, self._reject)))
        else:
            self._dispatch(slot, route, self._headers, self._body, head, self._reject)
        self._reset_request()
        self._state = _IDLE
        if not self._queue:
            self._set_deadline(self.svc.keepalive_timeout)
        else:
            self._deadline = None

    def _dispatch(self, slot: list[Any], route: int, headers: list[tuple[bytes, bytes]],
                  body: list[bytes], head: bool, reject: bytes | None) -> None:
        if route in (_R_RPC, _R_GO):
            self._handle_rpc(slot, route, headers, body)
        elif route in (_R_HEALTH, _R_READY):
            if route == _R_HEALTH or self.svc.ready:
                resp = text(200, "ok" if route == _R_HEALTH else "ready", close=slot[1])
            else:
                resp = text(503, "shutting down", close=slot[1])
            if head:
                resp = resp[: resp.index(b"\r\n\r\n") + 4]
            self._complete(slot, resp)
        else:
            rej = reject or text(404, "not found")
            if slot[1]:
                rej = rej.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
            self._complete(slot, rej)

    def _schedule_deferred(self) -> None:
        if not self._deferred_scheduled:
            self._deferred_scheduled = True
            self._loop.call_soon(self._run_deferred)

    def _run_deferred(self) -> None:
        """Start the requests waiting in ``_deferred`` while there is room (on a later loop
        turn than the answers that made room, so one connection's pipeline takes turns)."""
        self._deferred_scheduled = False
        d = self._deferred
        limit = self.svc.max_pipeline
        while d and not self._closed and not self._writing_paused and (
                len(self._queue) - len(d) < limit):
            slot, req = d.popleft()
            self._dispatch(slot, *req)
        if not d and not self._writing_paused and len(self._queue) < limit:
            self._resume_reading()

    # -- JSON-RPC ---------------------------------------------------------------------

    def _handle_rpc(self, slot: list[Any], route: int, headers: list[tuple[bytes, bytes]],
                    body_parts: list[bytes]) -> None:
        ctype = None
        metadata: dict[str, str] | None = None
        timeout: float | None = None
        for name, value in headers:
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
                        self._complete(slot, text(400, f"bad {TIMEOUT_HEADER}: {value!r}",
                                                   close=slot[1]))
                        return
            elif ln in (b"traceparent", b"tracestate", b"authorization"):  # W3C trace
                if metadata is None:     # context and credentials, as other clients send them
                    metadata = {}
                metadata.setdefault(ln.decode(), value.decode("latin-1"))
        if ctype is not None:
            mime, _, params = ctype.partition(b";")
            mime = mime.strip().lower()
            if mime not in _JSON_TYPES:
                self._complete(
                    slot,
                    text(415, f"JSON-RPC needs Content-Type application/json, got "
                               f"{ctype.decode('latin-1')}", close=slot[1]),
                )
                return
            cs = params.strip().lower()
            if cs and cs.startswith(b"charset=") and cs[8:].strip(b'"') not in (b"utf-8", b"utf8"):
                self._complete(slot, text(415, "JSON-RPC bodies must be UTF-8", close=slot[1]))
                return
        body = body_parts[0] if len(body_parts) == 1 else b"".join(body_parts)
        deadline = None if timeout is None else time.monotonic() + timeout
        md: Mapping[str, str] = metadata if metadata is not None else {}
        peer = self.peer
        server = self.server
        identity = self.identity

        def make_ctx() -> Context:
            return Context("", md, deadline, peer, self.svc.scheme, identity)

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
                self._complete(slot, response(503 if refused else 204, close=close))
            else:
                self._complete(slot, response(503 if refused else 200, data, close=close))

        if route == _R_GO:
            body = go_dialect(body)
        handle_body(server, body, make_ctx, respond, peer, self._slots)

    # -- responses, in request order ----------------------------------------------------

    def _complete(self, slot: list[Any], data: bytes) -> None:
        slot[0] = data
        if self._closed or self.transport is None:
            return
        q = self._queue
        transport = self.transport
        if not q:  # the connection failed or closed meanwhile
            return
        if q[0] is not slot:  # answered out of order: held until those before it are
            self._held += len(data)
            if self._held + transport.get_write_buffer_size() > self.svc.max_unsent:
                self._over_unsent()
            return
        while q and q[0][0] is not None:
            s = q.popleft()
            data = s[0]
            if s is not slot:
                self._held -= len(data)
            if self._writing_paused and (
                    transport.get_write_buffer_size() + len(data) > self.svc.max_unsent):
                self._over_unsent()
                return
            transport.write(data)
            if s[1]:
                q.clear()
                self._close_after_write()
                return
        if self._deferred:
            self._schedule_deferred()
        elif not q:
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
        self._deferred.clear()
        self.svc.connections.discard(self)
        if self.transport is not None:
            self.transport.close()

    def _over_unsent(self) -> None:
        """The answers the peer has not read (sent, or queued behind an earlier one) would
        pass the budget: the first unanswered request gets a 503 saying why instead, and the
        connection closes once that is read, or is aborted after ``linger_timeout``."""
        assert self.transport is not None
        transport = self.transport
        msg = (f"closing: the answers not read yet would pass limits.max_unsent_bytes "
               f"({self.svc.max_unsent} bytes; {transport.get_write_buffer_size()} unread, "
               f"{self._held} queued); this request and those after it are not answered "
               f"(their calls may have run)")
        log.warning("%s: %s", self.peer, msg)
        self._queue.clear()
        self._held = 0
        transport.write(text(503, msg, close=True))
        self._close_after_write()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(self.svc.linger_timeout, transport.abort)

    def _fail(self, status: int, message: str) -> None:
        """Refuse the current request and close (lingering: drain what the client still sends,
        so it reads the answer instead of a reset)."""
        if self._discarding or self._closed:
            return
        log.info("%s: HTTP %d: %s", self.peer, status, message)
        self._discarding = True
        self._body = []
        self._queue.append([text(status, message, close=True), True])
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


def make_server_protocol(server: Dispatcher, **opts: Any) -> asyncio.Protocol:
    """An HTTP/1.1 server protocol for ``server`` (used by the one-port sniffing listener).

    The :class:`HttpService` (routes, limits, WebSocket sessions) is made once per server.
    """
    svc = opts.pop("service", None) or _services.get(server)
    if svc is None:
        svc = _services[server] = HttpService(server, **opts)
    return HttpProtocol(svc)


async def serve(server: Dispatcher, url: URL, **opts: Any) -> HttpListener:
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
    inherited = opts.pop("sock", None)  # a listening socket from wirecall serve --workers
    handshake = float(opts.pop("tls_handshake_timeout", DEFAULT_HANDSHAKE_TIMEOUT))
    tls = pop_server_tls(url.scheme, opts)
    if url.scheme in ("ws", "wss"):  # ws://host:port/ws: the path is the WebSocket's (#10)
        if url.path and url.path != "/" and "ws_path" not in opts:
            opts["ws_path"] = url.path
    elif url.path and url.path != "/" and "paths" not in opts:
        opts["paths"] = (url.path, "/rpc")
    limits = ConnectionSet()
    limits.set_limits(opts)  # max_connections, max_connections_per_peer
    svc = HttpService(server, **opts)
    svc.connections.max_total = limits.max_total
    svc.connections.max_per_peer = limits.max_per_peer
    svc.scheme = "https" if url.scheme == "wss" else "http" if url.scheme == "ws" else url.scheme
    loop = asyncio.get_running_loop()
    where: dict[str, Any] = ({"sock": inherited} if inherited is not None else {
        "host": url.host or None, "port": url.port, "backlog": backlog, "reuse_address": True,
        "reuse_port": reuse_port or None})
    aserver = await loop.create_server(
        svc.protocol, ssl=tls, ssl_handshake_timeout=handshake if tls is not None else None,
        **where)
    sock = aserver.sockets[0].getsockname()
    host = url.host or sock[0]
    if url.scheme in ("ws", "wss"):  # the address a ws:// client dials
        real = URL(url.scheme, host, sock[1], svc.ws_path.decode() if svc.ws_path else "/ws")
    else:
        real = URL(url.scheme, host, sock[1], url.path)
    return HttpListener(svc, str(real), aserver, drain_delay)
