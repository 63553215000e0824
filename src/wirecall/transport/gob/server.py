"""The server side of ``gob://``: Go's ``net/rpc`` (``rpc.ServeConn``) on one connection.

The listener also answers Go's ``rpc.DialHTTP`` preamble (``CONNECT /_goRPC_ HTTP/1.0``)
itself; an HTTP listener that read that request hands the connection over with
:func:`wirecall.transport.gob.http_connect.accept_http_connect`.

Errors: a handler's :class:`~wirecall.errors.RpcError` travels as its message only (the Go
client sees exactly ``除数不能为零``); unknown methods get Go's own texts
(``rpc: can't find service Calculator.Foo``). Malformed gob closes that connection only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ...codec.gob import GobError, GoType, go_type
from ...context import EMPTY_METADATA, Context
from ...errors import ProtocolError, RpcError
from ...protocol import netrpc as nr
from ..base import URL
from ..sockets import ConnectionListener, listen, socket_options
from .go_rpc import GoServerProtocol, go_error_for_lookup

if TYPE_CHECKING:
    from ...seam import Dispatcher, MethodInfo

__all__ = ["GobServerProtocol", "make_server_protocol", "serve"]

log = logging.getLogger("wirecall.netrpc")

#: the longest CONNECT request head read before giving up on it
MAX_HTTP_HEADER = 8192


class _MethodPlan:
    """How one method maps onto net/rpc: the argument's type and the reply's Go type."""

    __slots__ = ("arg_type", "mode", "result_gtype", "spec")

    def __init__(self, spec: MethodInfo) -> None:
        self.spec = spec
        params = spec.params
        if spec.single:
            self.arg_type: Any = params[0].type
            self.mode = "single"
        else:
            self.arg_type = Any
            self.mode = "none" if not params else "named"
        try:
            go_type(self.arg_type)
        except TypeError:
            self.arg_type = Any  # decoded plain, then converted by the server's binding
        rt = spec.result_type
        self.result_gtype: GoType | None = None
        if rt is not Any and rt is not None and rt is not type(None):
            try:
                self.result_gtype = go_type(rt)
            except TypeError:
                self.result_gtype = None

    def reply_type(self, result: Any) -> GoType:
        if self.result_gtype is not None:
            return self.result_gtype
        return nr.body_type(None, result)

    def params(self, arg: Any) -> Any:
        if self.mode == "single":
            return [arg]
        if self.mode == "none":
            return []
        return arg if isinstance(arg, dict) else [arg]


_plans: dict[int, _MethodPlan] = {}


def _plan(spec: MethodInfo) -> _MethodPlan:
    p = _plans.get(id(spec))
    if p is None or p.spec is not spec:
        p = _plans[id(spec)] = _MethodPlan(spec)
    return p


class GobServerProtocol(GoServerProtocol):
    """One connection served like ``rpc.ServeConn`` (optionally after HTTP CONNECT)."""

    #: the scheme it was reached by ("gob", or "gobs": over TLS), for ``Context.transport``
    scheme = "gob"

    conn: nr.ServerConnection
    log = log
    wire = "net/rpc"

    def __init__(
        self,
        server: Dispatcher,
        listener: ConnectionListener | None = None,
        *,
        http_connect: bool = True,
        rpc_path: str = nr.GO_RPC_PATH,
        **_: Any,
    ) -> None:
        super().__init__(server, listener)
        lim = self.limits
        self.conn = nr.ServerConnection(
            server.max_message_size, max_types=lim.max_type_definitions,
            max_type_bytes=lim.max_type_definition_bytes)
        self._rpc_path = rpc_path
        # None: past the optional HTTP CONNECT preamble; else the bytes read so far.
        self._preamble: bytearray | None = bytearray() if http_connect else None

    # -- reading ---------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._preamble is not None:
            rest = self._read_preamble(data)
            if rest is None:
                if self._preamble is not None:
                    self._serve([])  # (arms the unfinished-value clock)
                return
            data = rest
        try:
            calls = self.conn.receive(data)
        except ProtocolError as exc:
            self.close_with(exc.message)
            return
        self._serve(calls)

    def _unfinished(self) -> bool:
        return bool(self._preamble) or self.conn.unfinished

    def _start(self, item: Any) -> None:
        self._on_call(item)

    def _read_preamble(self, data: bytes) -> bytes | None:
        """Pass a gob stream through; answer an HTTP CONNECT preamble like Go's ServeHTTP."""
        pre = self._preamble
        assert pre is not None
        pre += data
        started = nr.starts_connect(pre)
        if started is False:
            self._preamble = None  # a plain gob stream
            return bytes(pre)
        head = nr.split_http_head(pre) if started else None
        if head is None:
            if len(pre) > MAX_HTTP_HEADER:
                self.close_with("HTTP CONNECT request headers too long")
            return None
        line, rest = head[0].strip().decode("latin-1"), head[1]
        parts = line.split()
        self._preamble = None
        if len(parts) != 3 or parts[1] != self._rpc_path:
            if self.transport is not None:
                self.transport.write(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            self.close_with(f"HTTP CONNECT to unknown path {line!r}")
            return None
        if self.transport is not None:
            self.transport.write(nr.CONNECTED_LINE)
        return rest

    def _on_call(self, call: nr.IncomingCall) -> None:
        seq, method = call.seq, call.method
        server = self.server
        spec = server.find(method)
        if spec is None:
            self.conn.send_error(seq, method, go_error_for_lookup(method, server))
            return
        plan = _plan(spec)
        try:
            arg = self.conn.decode_body(call.body, plan.arg_type)
        except GobError as exc:
            self.conn.send_error(seq, method, exc.message)
            return
        over = self._over_limit()
        if over is not None:
            self.conn.send_error(seq, method, over)
            return
        ctx = Context(method, EMPTY_METADATA, None, self.peer, self.scheme,
                      self.identity, len(call.body.data))
        self.calls[ctx] = ctx

        def done(result: Any, exc: BaseException | None) -> None:
            self._done(seq, method, plan, ctx, result, exc)

        server.start_call(spec, plan.params(arg), ctx, done)

    def _done(
        self,
        seq: int,
        method: str,
        plan: _MethodPlan,
        ctx: Context,
        result: Any,
        exc: BaseException | None,
    ) -> None:
        self.calls.pop(ctx, None)
        if self.transport is None:
            return
        conn = self.conn
        if exc is None:
            try:
                before = conn.queued
                conn.send_reply(seq, method, result, plan.reply_type(result))
                ctx.response_size = conn.queued - before
            except (GobError, TypeError, ValueError, AttributeError) as err:
                msg = err.message if isinstance(err, RpcError) else str(err)
                conn.send_error(seq, method, f"cannot encode the reply of {method}: {msg}")
        else:
            rerr = exc if isinstance(exc, RpcError) else self.server.error_from(exc, ctx)
            conn.send_error(seq, method, rerr.message)
        self._answered()


def make_server_protocol(server: Dispatcher, **opts: Any) -> asyncio.Protocol:
    """A net/rpc gob server protocol (for the one-port sniffing listener)."""
    listener = opts.pop("listener", None)
    return GobServerProtocol(server, listener, **opts)


async def serve(server: Dispatcher, url: URL, **opts: Any) -> ConnectionListener:
    """Listen on ``gob://host:port`` (net/rpc gob; also answers ``CONNECT /_goRPC_``)."""
    sock = socket_options(opts, url.scheme)

    def make(lst: ConnectionListener) -> GobServerProtocol:
        proto = GobServerProtocol(server, lst, **opts)
        proto.scheme = url.scheme  # "gob", or "gobs" over TLS
        return proto

    return await listen(url, make, **sock)
