"""``jsonrpc://host:port``: Go's ``net/rpc/jsonrpc`` over TCP (``jsonrpc.ServeConn`` /
``jsonrpc.Dial``), both ends; and the tutorial's HTTP+JSON handler body semantics.

Entry points::

    async def serve(server, url, **opts) -> Listener
    def make_server_protocol(server, **opts) -> asyncio.Protocol    # for the sniffing listener
    async def connect(url, **opts) -> GoJsonClientConnection
    async def handle_http_body(server, body, peer="") -> bytes
        # the tutorial's 2.2.1 handler: jsonrpc.ServeConn over one POST body; returns the
        # response body (one JSON line per request, in completion order)
    def start_go_json_call(server, obj, peer, reply) -> None
        # one decoded request object -> reply(bytes of the response line), Go's semantics

Errors travel as Go does: the handler's RpcError message as the ``error`` string, ``result``
null. On the client a Go error string becomes ``RpcError(Status.UNKNOWN, text)``
(``UNIMPLEMENTED`` for Go's "can't find" texts), as on ``gob://``.
"""

from __future__ import annotations

import asyncio
import logging
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from ..context import EMPTY_METADATA, Context
from ..errors import (
    Internal,
    InvalidArgument,
    ProtocolError,
    RpcError,
)
from ..protocol import gojsonrpc as gj
from . import streams
from .base import URL
from .netrpc import GoClientConnection, go_error, go_error_for_lookup
from .streams import ConnectionListener, listen, peer_name, set_nodelay

if TYPE_CHECKING:
    from ..server import Server

__all__ = [
    "GoJsonClientConnection",
    "GoJsonServerProtocol",
    "connect",
    "handle_http_body",
    "make_server_protocol",
    "serve",
    "start_go_json_call",
]

log = logging.getLogger("wirecall.gojsonrpc")

Reply = Callable[[bytes], None]


def start_go_json_call(
    server: Server, obj: Any, peer: str, reply: Reply, transport: str = "jsonrpc"
) -> Context | None:
    """Serve one decoded Go JSON-RPC request object; ``reply`` gets the response line.

    Raises :class:`ProtocolError` for input Go would drop the connection on. Returns the
    call's context (None if the call was answered without running a handler).
    """
    call = gj.parse_request(obj)
    rid = call.id
    spec = server.registry.methods.get(call.method)
    if spec is None:
        reply(gj.encode_response(rid, error=go_error_for_lookup(call.method, server)))
        return None
    if call.error is not None:
        reply(gj.encode_response(rid, error=call.error))
        return None
    arg = call.arg
    try:
        if spec.single:
            params: Any = [gj.go_json_convert(arg, spec.params[0].type)]
        elif not spec.params:
            params = []
        else:
            params = arg if isinstance(arg, (dict, list)) else [arg]
    except (msgspec.ValidationError, TypeError, ValueError) as exc:
        reply(gj.encode_response(rid, error=f"json: {exc}"))
        return None
    ctx = Context(spec.name, EMPTY_METADATA, None, peer, transport)

    def done(result: Any, exc: BaseException | None) -> None:
        if exc is None:
            try:
                data = gj.encode_response(rid, result)
            except (TypeError, ValueError, msgspec.EncodeError) as err:
                data = gj.encode_response(rid, error=str(err))
        else:
            rerr = exc if isinstance(exc, RpcError) else server.error_from(exc, ctx)
            data = gj.encode_response(rid, error=rerr.message)
        reply(data)

    server.start_call(spec, params, ctx, done)
    return ctx


async def handle_http_body(server: Server, body: bytes, peer: str = "") -> bytes:
    """The tutorial's ``/jsonrpc`` handler: ``jsonrpc.ServeConn`` over one request body.

    Every request in the body is served (concurrently); the response body holds one JSON
    line per request in completion order. A body Go cannot parse ends the output there,
    as Go's ServeConn stops reading.
    """
    splitter = gj.JsonValueSplitter(server.max_message_size)
    out: list[bytes] = []
    pending = 0
    loop = asyncio.get_running_loop()
    all_done: asyncio.Future[None] = loop.create_future()

    def reply(data: bytes) -> None:
        nonlocal pending
        out.append(data)
        pending -= 1
        if pending == 0 and not all_done.done():
            all_done.set_result(None)

    try:
        objs = splitter.feed(body + b"\n")
    except ProtocolError:
        objs = []
    for obj in objs:
        pending += 1
        try:
            start_go_json_call(server, obj, peer, reply, transport="http")
        except ProtocolError:
            pending -= 1
            break
    if pending > 0:
        await all_done
    return b"".join(out)


class GoJsonServerProtocol(asyncio.Protocol):
    """One connection served like ``jsonrpc.ServeConn``."""

    def __init__(
        self, server: Server, listener: ConnectionListener | None = None, **_: Any
    ) -> None:
        self.server = server
        self.listener = listener
        self.splitter = gj.JsonValueSplitter(server.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.calls: set[Context] = set()
        self._out: list[bytes] = []
        self._in_read = False
        self._flush_scheduled = False
        self._loop = asyncio.get_event_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)
        set_nodelay(transport)
        self.peer = peer_name(transport)
        if self.listener is not None:
            self.listener.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.listener is not None:
            self.listener.connections.discard(self)
        calls, self.calls = self.calls, set()
        for ctx in calls:
            ctx.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            objs = self.splitter.feed(data)
        except ProtocolError as exc:
            self._close(exc.message)
            return
        self._in_read = True
        try:
            for obj in objs:
                try:
                    ctx = start_go_json_call(self.server, obj, self.peer, self._reply)
                except ProtocolError as exc:
                    self._close(exc.message)
                    return
                if ctx is not None and ctx._task is not None:  # still running: track it
                    self._track(ctx)
        finally:
            self._in_read = False
        self._flush()

    def _track(self, ctx: Context) -> None:
        self.calls.add(ctx)
        ctx._task.add_done_callback(lambda _t: self.calls.discard(ctx))

    def _reply(self, data: bytes) -> None:
        self._out.append(data)
        if not self._in_read and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def goaway(self) -> None:
        """Go's JSON-RPC has no GOAWAY: in-flight calls finish, then the connection closes."""

    def close_connection(self) -> None:
        if self.transport is not None:
            self._flush()
            self.transport.close()

    def _flush(self) -> None:
        self._flush_scheduled = False
        out = self._out
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
        out.clear()

    def _close(self, reason: str) -> None:
        log.warning("jsonrpc connection from %s closed: %s", self.peer, reason)
        if self.transport is not None:
            self._flush()
            self.transport.close()
            self.transport = None


def make_server_protocol(server: Server, **opts: Any) -> asyncio.Protocol:
    """A Go JSON-RPC server protocol (for the one-port sniffing listener)."""
    listener = opts.pop("listener", None)
    return GoJsonServerProtocol(server, listener, **opts)


async def serve(server: Server, url: URL, **opts: Any) -> ConnectionListener:
    """Listen on ``jsonrpc://host:port`` (Go's ``jsonrpc.ServeConn`` per connection)."""
    return await listen(url, lambda lst: GoJsonServerProtocol(server, lst, **opts))


# -- client ----------------------------------------------------------------------------------


class _Lines:
    """The outgoing side of a Go JSON-RPC client: encoded requests, joined per write."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def data_to_send(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


class GoJsonClientConnection(GoClientConnection):
    """``jsonrpc.Dial``: calls multiplexed by ``id`` over one connection."""

    conn: _Lines
    dialect = "Go JSON-RPC"

    def __init__(self, *, max_message_size: int = 4 * 1024 * 1024, address: str = "") -> None:
        super().__init__(address)
        self.splitter = gj.JsonValueSplitter(max_message_size)
        self.conn = _Lines()

    def _request(self, seq: int, method: str, value: Any) -> None:
        try:
            self.conn.parts.append(gj.encode_request(seq, method, value))
        except (TypeError, ValueError, msgspec.EncodeError) as exc:
            raise InvalidArgument(
                message=f"cannot encode the argument of {method}: {exc}"
            ) from None

    def data_received(self, data: bytes) -> None:
        try:
            objs = self.splitter.feed(data)
        except ProtocolError as exc:
            self._abort(ProtocolError(f"bad reply from {self.address}: {exc.message}"))
            return
        for obj in objs:
            if not isinstance(obj, dict):
                continue
            rid = obj.get("id")
            entry = self._pending.pop(rid) if isinstance(rid, int) else None
            if entry is None:
                continue
            fut, result_type = entry
            err = obj.get("error")
            if err is not None:
                fut.set_exception(go_error(err if isinstance(err, str) else str(err)))
                continue
            result = obj.get("result")
            if result_type is None or result_type is Any:
                fut.set_result(result)
                continue
            try:
                fut.set_result(gj.go_json_convert(result, result_type))
            except (msgspec.ValidationError, TypeError, ValueError) as exc:
                fut.set_exception(Internal(message=f"reading body: {exc}"))


async def connect(
    url: URL,
    *,
    timeout: float | None = 10.0,
    max_message_size: int = 4 * 1024 * 1024,
    **_: Any,
) -> GoJsonClientConnection:
    """Dial a Go JSON-RPC server (``jsonrpc.Dial``) within ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    proto = GoJsonClientConnection(max_message_size=max_message_size, address=str(url))
    await streams.dial(
        url, lambda: loop.create_connection(lambda: proto, url.host, url.port), timeout,
        lambda: proto.transport,
    )
    return proto
