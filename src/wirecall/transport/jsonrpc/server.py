"""The server side of ``jsonrpc://``: Go's ``net/rpc/jsonrpc`` (``jsonrpc.ServeConn``) on one
connection, and the same semantics for the HTTP listener's Go 1.0 requests.

Errors travel as Go does: the handler's RpcError message as the ``error`` string, ``result``
null; unknown methods get Go's own texts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from ...context import EMPTY_METADATA, Context
from ...errors import ProtocolError, RpcError
from ...protocol import gojsonrpc as gj
from ..base import URL
from ..gob.go_rpc import EncodedParts, GoServerProtocol, go_error_for_lookup
from ..sockets import ConnectionListener, listen, socket_options

if TYPE_CHECKING:
    from ...seam import Dispatcher

__all__ = [
    "GoJsonServerProtocol",
    "handle_http_body",
    "make_server_protocol",
    "serve",
    "start_go_json_call",
]

log = logging.getLogger("wirecall.gojsonrpc")

Reply = Callable[[bytes], None]


def start_go_json_call(
    server: Dispatcher,
    obj: Any,
    peer: str,
    reply: Reply,
    transport: str = "jsonrpc",
    calls: dict[Any, Context] | None = None,
    identity: str = "",
    size: int = -1,
) -> Context | None:
    """Serve one decoded Go JSON-RPC request object (``size``: its bytes on the wire);
    ``reply`` gets the response line.

    Raises :class:`ProtocolError` for input Go would drop the connection on. Returns the
    call's context (None if the call was answered without running a handler). A call that
    runs is in ``calls`` (keyed by its context) until it is answered.
    """
    call = gj.parse_request(obj)
    rid = call.id
    spec = server.find(call.method)
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
    ctx = Context(spec.name, EMPTY_METADATA, None, peer, transport, identity, size)

    def done(result: Any, exc: BaseException | None) -> None:
        if calls is not None:
            calls.pop(ctx, None)
        if exc is None:
            try:
                data = gj.encode_response(rid, result)
            except (TypeError, ValueError, msgspec.EncodeError) as err:
                data = gj.encode_response(rid, error=str(err))
        else:
            rerr = exc if isinstance(exc, RpcError) else server.error_from(exc, ctx)
            data = gj.encode_response(rid, error=rerr.message)
        ctx.response_size = len(data)
        reply(data)

    if calls is not None:
        calls[ctx] = ctx
    server.start_call(spec, params, ctx, done)
    return ctx


async def handle_http_body(
    server: Dispatcher, body: bytes, peer: str = "", slots: Slots | None = None
) -> bytes:
    """The tutorial's ``/jsonrpc`` handler: ``jsonrpc.ServeConn`` over one request body.

    Every request in the body is served (concurrently); the response body holds one JSON
    line per request in completion order. A body Go cannot parse ends the output there,
    as Go's ServeConn stops reading. ``slots``: the HTTP connection's calls in flight; a
    request over its limit is answered with Go's error text at once.
    """
    splitter = gj.JsonValueSplitter(server.max_message_size)
    out: list[bytes] = []
    pending = 0
    loop = asyncio.get_running_loop()
    all_done: asyncio.Future[None] = loop.create_future()

    budget = server.limits.max_unsent_bytes
    full = False  # a result did not fit: the calls not started yet are not run
    total = 0  # bytes of the answer so far: past the budget a result is replaced by an error

    def reply_to(rid: Any) -> Reply:
        def reply(data: bytes) -> None:
            nonlocal pending, total, full
            if total + len(data) > budget:
                full = True
                data = gj.encode_response(rid, error=(
                    f"rpc: the answer passed limits.max_unsent_bytes ({budget} bytes): "
                    "this call's result was dropped"))
            total += len(data)
            out.append(data)
            pending -= 1
            if pending == 0 and not all_done.done():
                all_done.set_result(None)
        return reply

    try:
        objs = splitter.feed(body + b"\n")
    except ProtocolError:
        objs = []
    for n, (obj, size) in enumerate(zip(objs, splitter.sizes, strict=True)):
        if n and not n % 16:
            await asyncio.sleep(0)  # a long body does not hold the loop: others are served
        if full:  # the answer is full: the rest are not run (as a JSON-RPC batch)
            rid = obj.get("id") if isinstance(obj, dict) else None
            out.append(gj.encode_response(rid, error=(
                f"rpc: not run: the answer passed limits.max_unsent_bytes ({budget} bytes)")))
            continue
        if slots is not None and not slots.take():
            rid = obj.get("id") if isinstance(obj, dict) else None
            out.append(gj.encode_response(rid, error=(
                f"rpc: too many calls in flight on this connection (limit {slots.limit})")))
            continue
        pending += 1
        reply = reply_to(obj.get("id") if isinstance(obj, dict) else None)
        counted = reply if slots is None else _given_back(slots, reply)
        try:
            start_go_json_call(server, obj, peer, counted, transport="http", size=size)
        except ProtocolError:
            pending -= 1
            if slots is not None:
                slots.give()
            break
    if pending > 0:
        await all_done
    return b"".join(out)


class Slots(Protocol):
    """A connection's count of calls in flight (``transport.http.dispatch.CallSlots``)."""

    limit: int

    def take(self) -> bool: ...

    def give(self) -> None: ...


def _given_back(slots: Slots, reply: Reply) -> Reply:
    def counted(data: bytes) -> None:
        slots.give()
        reply(data)

    return counted


class GoJsonServerProtocol(GoServerProtocol):
    """One connection served like ``jsonrpc.ServeConn``."""

    conn: EncodedParts
    log = log
    wire = "jsonrpc"
    #: the wire's name in Context.transport ("jsonrpcs" over TLS)
    scheme = "jsonrpc"

    def __init__(
        self, server: Dispatcher, listener: ConnectionListener | None = None, **_: Any
    ) -> None:
        super().__init__(server, listener)
        self.splitter = gj.JsonValueSplitter(server.max_message_size)
        self.conn = EncodedParts()

    def data_received(self, data: bytes) -> None:
        try:
            objs = self.splitter.feed(data)
        except ProtocolError as exc:
            self.close_with(exc.message)
            return
        self._serve(list(zip(objs, self.splitter.sizes, strict=True)))

    def _unfinished(self) -> bool:
        return self.splitter.buffered > 0

    def _start(self, sized: Any) -> None:
        item, size = sized
        over = self._over_limit()
        if over is not None:
            rid = item.get("id") if isinstance(item, dict) else None
            self._reply(gj.encode_response(rid, error=over))
            return
        try:
            start_go_json_call(self.server, item, self.peer, self._reply, calls=self.calls,
                               transport=self.scheme, identity=self.identity, size=size)
        except ProtocolError as exc:
            self.close_with(exc.message)

    def _reply(self, data: bytes) -> None:
        self.conn.add(data)
        self._answered()


def make_server_protocol(server: Dispatcher, **opts: Any) -> asyncio.Protocol:
    """A Go JSON-RPC server protocol (for the one-port sniffing listener)."""
    listener = opts.pop("listener", None)
    return GoJsonServerProtocol(server, listener, **opts)


async def serve(server: Dispatcher, url: URL, **opts: Any) -> ConnectionListener:
    """Listen on ``jsonrpc://host:port`` (Go's ``jsonrpc.ServeConn`` per connection), or
    ``jsonrpcs://`` over TLS (Go: ``jsonrpc.NewClient(tls.Dial(...))``)."""
    sock = socket_options(opts, url.scheme)

    def make(lst: ConnectionListener) -> GoJsonServerProtocol:
        proto = GoJsonServerProtocol(server, lst, **opts)
        proto.scheme = url.scheme  # "jsonrpc", or "jsonrpcs" over TLS
        return proto

    return await listen(url, make, **sock)
