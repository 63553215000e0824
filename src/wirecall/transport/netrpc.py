"""``gob://host:port``: Go's ``net/rpc`` (gob) on TCP, and over HTTP CONNECT, both ends.

Entry points::

    async def serve(server, url, **opts) -> Listener                # rpc.ServeConn per connection
    def make_server_protocol(server, **opts) -> asyncio.Protocol     # for the sniffing listener
    async def connect(url, **opts) -> GobClientConnection            # rpc.Dial
    async def connect_http(url, path="/_goRPC_", **opts)             # rpc.DialHTTP

    def accept_http_connect(server, transport, extra_bytes=b"") -> asyncio.Protocol
        # For an HTTP listener that has read "CONNECT /_goRPC_ HTTP/1.0" and its headers:
        # writes Go's exact reply line "HTTP/1.0 200 Connected to Go RPC\\n\\n", moves the
        # connection to the gob server protocol and feeds it ``extra_bytes`` (whatever was
        # read after the request headers). Returns the new protocol.

The ``gob://`` listener also answers ``CONNECT /_goRPC_`` itself, so Go's ``rpc.DialHTTP``
works against it as well as ``rpc.Dial``. A client URL with a path
(``gob://host:port/_goRPC_``) dials through HTTP CONNECT to that path.

Errors: a handler's :class:`~wirecall.errors.RpcError` travels as its message only (the Go
client sees exactly ``除数不能为零``); unknown methods get Go's own texts
(``rpc: can't find service Calculator.Foo``). On the client, a Go error string becomes
``RpcError(Status.UNKNOWN, text)`` (``UNIMPLEMENTED`` for Go's "can't find" texts): Go
errors carry no status code. Malformed gob closes that connection only.
"""

from __future__ import annotations

import asyncio
import logging
import typing
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..codec.gob import GobError, GoType, go_type
from ..context import EMPTY_METADATA, Context
from ..errors import (
    ConnectError,
    Internal,
    InvalidArgument,
    ProtocolError,
    RpcError,
    Unavailable,
    Unimplemented,
)
from ..protocol import netrpc as nr
from ..service import MethodSpec
from ..status import Status
from . import streams
from .base import URL, ClientConnection
from .streams import (
    CoalescedWriter,
    ConnectionListener,
    PendingCalls,
    listen,
    peer_name,
    set_nodelay,
)

if TYPE_CHECKING:
    from ..server import Server

__all__ = [
    "CONNECTED_LINE",
    "GO_RPC_PATH",
    "GobClientConnection",
    "GobServerProtocol",
    "accept_http_connect",
    "connect",
    "connect_http",
    "go_error",
    "make_server_protocol",
    "serve",
]

log = logging.getLogger("wirecall.netrpc")

GO_RPC_PATH = "/_goRPC_"
#: What Go's rpc.Server.ServeHTTP writes after hijacking a CONNECT request.
CONNECTED_LINE = b"HTTP/1.0 200 Connected to Go RPC\n\n"
_CONNECT = b"CONNECT "
_MAX_HTTP_HEADER = 8192


def go_error_for_lookup(method: str, server: Server) -> str:
    """Go's exact texts for an unknown service or method."""
    svc, dot, _ = method.rpartition(".")
    if not dot:
        return f"rpc: service/method request ill-formed: {method}"
    if svc not in server.registry.services:
        return f"rpc: can't find service {method}"
    return f"rpc: can't find method {method}"


def go_error(text: str) -> RpcError:
    """The RpcError a Go error string becomes on the client."""
    if text.startswith(("rpc: can't find ", "rpc: service/method request ill-formed")):
        return Unimplemented(message=text)
    return RpcError(Status.UNKNOWN, text)


class _MethodPlan:
    """How one method maps onto net/rpc: the argument's type and the reply's Go type."""

    __slots__ = ("arg_type", "mode", "result_gtype", "spec")

    def __init__(self, spec: MethodSpec) -> None:
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
            self.arg_type = Any  # decoded plain, then converted by spec.bind
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


def _plan(spec: MethodSpec) -> _MethodPlan:
    p = _plans.get(id(spec))
    if p is None or p.spec is not spec:
        p = _plans[id(spec)] = _MethodPlan(spec)
    return p


class GobServerProtocol(CoalescedWriter, asyncio.Protocol):
    """One connection served like ``rpc.ServeConn`` (optionally after HTTP CONNECT)."""

    conn: nr.ServerConnection

    def __init__(
        self,
        server: Server,
        listener: ConnectionListener | None = None,
        *,
        http_connect: bool = True,
        rpc_path: str = GO_RPC_PATH,
        **_: Any,
    ) -> None:
        self.server = server
        self.listener = listener
        self.conn = nr.ServerConnection(server.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.calls: dict[int, Context] = {}
        self._rpc_path = rpc_path
        # None: past the optional HTTP CONNECT preamble; else the bytes read so far.
        self._preamble: bytearray | None = bytearray() if http_connect else None
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
        calls, self.calls = self.calls, {}
        for ctx in calls.values():
            ctx.cancel()
        self.transport = None

    def close_with(self, reason: str) -> None:
        log.warning("net/rpc connection from %s closed: %s", self.peer, reason)
        if self.transport is not None:
            self._flush()
            self.transport.close()
            self.transport = None

    # -- reading ---------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._preamble is not None:
            rest = self._read_preamble(data)
            if rest is None:
                return
            data = rest
        try:
            calls = self.conn.receive(data)
        except ProtocolError as exc:
            self.close_with(exc.message)
            return
        if not calls:
            return
        self._in_read = True
        try:
            for call in calls:
                self._on_call(call)
        finally:
            self._in_read = False
        self._flush()

    def _read_preamble(self, data: bytes) -> bytes | None:
        """Pass a gob stream through; answer an HTTP CONNECT preamble like Go's ServeHTTP."""
        pre = self._preamble
        assert pre is not None
        pre += data
        n = min(len(pre), len(_CONNECT))
        if bytes(pre[:n]) != _CONNECT[:n]:
            self._preamble = None  # a plain gob stream
            return bytes(pre)
        if n < len(_CONNECT):
            return None
        end = pre.find(b"\n\n")
        end2 = pre.find(b"\r\n\r\n")
        if end2 >= 0 and (end < 0 or end2 < end):
            end, sep = end2, 4
        else:
            sep = 2
        if end < 0:
            if len(pre) > _MAX_HTTP_HEADER:
                self.close_with("HTTP CONNECT request headers too long")
            return None
        line = bytes(pre[: pre.find(b"\n")]).strip().decode("latin-1")
        parts = line.split()
        self._preamble = None
        if len(parts) != 3 or parts[1] != self._rpc_path:
            if self.transport is not None:
                self.transport.write(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            self.close_with(f"HTTP CONNECT to unknown path {line!r}")
            return None
        if self.transport is not None:
            self.transport.write(CONNECTED_LINE)
        return bytes(pre[end + sep :])

    def _on_call(self, call: nr.IncomingCall) -> None:
        seq, method = call.seq, call.method
        server = self.server
        spec = server.registry.methods.get(method)
        if spec is None:
            self.conn.send_error(seq, method, go_error_for_lookup(method, server))
            return
        plan = _plan(spec)
        try:
            arg = self.conn.decode_body(call.body, plan.arg_type)
        except GobError as exc:
            self.conn.send_error(seq, method, exc.message)
            return
        ctx = Context(method, EMPTY_METADATA, None, self.peer, "gob")
        self.calls[seq] = ctx

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
        if self.calls.get(seq) is ctx:
            del self.calls[seq]
        if self.transport is None:
            return
        conn = self.conn
        if exc is None:
            try:
                conn.send_reply(seq, method, result, plan.reply_type(result))
            except (GobError, TypeError, ValueError, AttributeError) as err:
                msg = err.message if isinstance(err, RpcError) else str(err)
                conn.send_error(seq, method, f"cannot encode the reply of {method}: {msg}")
        else:
            rerr = exc if isinstance(exc, RpcError) else self.server.error_from(exc, ctx)
            conn.send_error(seq, method, rerr.message)
        if not self._in_read:
            self._schedule_flush()

    # -- writing -------------------------------------------------------------------------

    def goaway(self) -> None:
        """net/rpc has no GOAWAY: in-flight calls finish, then the connection closes."""

    def close_connection(self) -> None:
        if self.transport is not None:
            self._flush()
            self.transport.close()


def go_argument(params: Any, method: str, dialect: str) -> Any:
    """The one argument a Go RPC method takes, from wirecall's params (a list or a dict)."""
    if isinstance(params, (list, tuple)):
        if len(params) > 1:
            raise InvalidArgument(
                message=f"{dialect} methods take one argument; {len(params)} given to {method}"
            )
        return params[0] if params else None
    return params


def make_server_protocol(server: Server, **opts: Any) -> asyncio.Protocol:
    """A net/rpc gob server protocol (for the one-port sniffing listener)."""
    listener = opts.pop("listener", None)
    return GobServerProtocol(server, listener, **opts)


def accept_http_connect(
    server: Server, transport: asyncio.BaseTransport, extra_bytes: bytes = b"", **opts: Any
) -> asyncio.Protocol:
    """Serve Go's ``rpc.DialHTTP`` on a connection whose ``CONNECT /_goRPC_`` request (with
    its headers) an HTTP listener has already read: write Go's exact reply line, switch the
    connection to the gob server protocol, feed it ``extra_bytes``; return the protocol."""
    proto = GobServerProtocol(server, opts.pop("listener", None), http_connect=False, **opts)
    transport.write(CONNECTED_LINE)  # type: ignore[attr-defined]
    transport.set_protocol(proto)
    proto.connection_made(transport)
    if extra_bytes:
        proto.data_received(extra_bytes)
    return proto


async def serve(server: Server, url: URL, **opts: Any) -> ConnectionListener:
    """Listen on ``gob://host:port`` (net/rpc gob; also answers ``CONNECT /_goRPC_``)."""
    listener = await listen(url, lambda lst: GobServerProtocol(server, lst, **opts))
    return listener


# -- client ---------------------------------------------------------------------------------


class GoClientConnection(CoalescedWriter, ClientConnection, asyncio.Protocol):
    """What Go's two RPC clients share (``rpc.Client`` over gob here, ``jsonrpc`` in
    ``gojsonrpc``): calls multiplexed by sequence number, one argument per call, frames
    coalesced per loop iteration, a pending-call table failed at once when the connection
    goes. Subclasses set ``conn`` (with ``data_to_send``), ``dialect`` and :meth:`_request`."""

    dialect = ""

    def __init__(self, address: str) -> None:
        self.address = address
        self.transport: asyncio.Transport | None = None
        self._loop = asyncio.get_event_loop()
        self._pending = PendingCalls(self._loop)
        self._seq = 0
        self._closed = False
        self._close_reason: RpcError | None = None
        self._flush_scheduled = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _request(self, seq: int, method: str, value: Any) -> None:
        """Queue the request (raise :class:`InvalidArgument` if it cannot be encoded)."""
        raise NotImplementedError

    async def call(
        self,
        method: str,
        params: list[Any] | dict[str, Any],
        timeout: float | None,
        metadata: Mapping[str, str] | None,
        result_type: Any,
    ) -> Any:
        if self._closed:
            raise self._close_reason or Unavailable(
                message=f"connection to {self.address} closed"
            )
        value = go_argument(params, method, self.dialect)
        self._seq += 1
        seq = self._seq
        self._request(seq, method, value)
        fut = self._pending.add(seq, result_type, timeout, method)
        self._schedule_flush()
        return await self._pending.wait(seq, fut)

    async def aclose(self) -> None:
        if self.transport is not None:
            self._flush()
            self.transport.close()
        self._fail_all(Unavailable(message=f"connection to {self.address} closed"))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)
        set_nodelay(transport)

    def _lost_reason(self, exc: Exception | None) -> RpcError:
        return Unavailable(
            message=f"connection to {self.address} lost" + (f": {exc}" if exc else "")
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail_all(self._lost_reason(exc))

    def _fail_all(self, reason: RpcError) -> None:
        self._closed = True
        if self._close_reason is None:
            self._close_reason = reason
        self._pending.fail_all(reason)

    def _abort(self, reason: RpcError) -> None:
        self._fail_all(reason)
        if self.transport is not None:
            self.transport.close()


class GobClientConnection(GoClientConnection):
    """One ``rpc.Client``: calls multiplexed by ``Seq`` over one gob connection."""

    conn: nr.ClientConnection
    dialect = "net/rpc"

    def __init__(
        self,
        *,
        max_message_size: int = nr.DEFAULT_MAX_MESSAGE,
        address: str = "",
        http_path: str | None = None,
    ) -> None:
        super().__init__(address)
        self.conn = nr.ClientConnection(max_message_size)
        self._ready: asyncio.Future[None] = self._loop.create_future()
        self._http_path = http_path
        self._handshake: bytearray | None = bytearray() if http_path else None

    def _request(self, seq: int, method: str, value: Any) -> None:
        try:
            self.conn.send_request(seq, method, value, nr.body_type(None, value))
        except (GobError, TypeError, ValueError) as exc:
            msg = exc.message if isinstance(exc, RpcError) else str(exc)
            raise InvalidArgument(
                message=f"cannot encode the argument of {method}: {msg}"
            ) from None

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._http_path is not None:
            assert self.transport is not None
            self.transport.write(f"CONNECT {self._http_path} HTTP/1.0\n\n".encode("latin-1"))
        elif not self._ready.done():
            self._ready.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        reason = self._lost_reason(exc)
        if not self._ready.done():
            self._ready.set_exception(reason)
        self._fail_all(reason)

    def _handshake_data(self, data: bytes) -> bytes | None:
        hs = self._handshake
        assert hs is not None
        hs += data
        end = hs.find(b"\n\n")
        sep = 2
        end2 = hs.find(b"\r\n\r\n")
        if end2 >= 0 and (end < 0 or end2 < end):
            end, sep = end2, 4
        if end < 0:
            if len(hs) > _MAX_HTTP_HEADER:
                self._abort(ProtocolError("HTTP CONNECT reply headers too long"))
            return None
        status = bytes(hs[: hs.find(b"\n")]).rstrip(b"\r").decode("latin-1")
        self._handshake = None
        if status != CONNECTED_LINE.rstrip(b"\n").decode():
            err = ConnectError(message=f"unexpected HTTP response: {status}")
            if not self._ready.done():
                self._ready.set_exception(err)
            self._abort(err)
            return None
        if not self._ready.done():
            self._ready.set_result(None)
        return bytes(hs[end + sep :])

    def data_received(self, data: bytes) -> None:
        if self._handshake is not None:
            rest = self._handshake_data(data)
            if not rest:
                return
            data = rest
        try:
            replies = self.conn.receive(data)
        except ProtocolError as exc:
            log.warning("net/rpc connection to %s: %s", self.address, exc.message)
            self._abort(ProtocolError(f"bad reply from {self.address}: {exc.message}"))
            return
        for r in replies:
            entry = self._pending.pop(r.seq)
            if entry is None:
                continue  # expired or abandoned; its body was read with the message
            fut, result_type = entry
            if r.error:
                fut.set_exception(go_error(r.error))
                continue
            try:
                value = self.conn.decode_body(r.body, result_type if result_type else Any)
            except GobError as exc:
                fut.set_exception(Internal(message=f"reading body {exc.message}"))
                continue
            fut.set_result(value)


async def connect(
    url: URL,
    *,
    timeout: float | None = 10.0,
    max_message_size: int = nr.DEFAULT_MAX_MESSAGE,
    http_path: str | None = None,
    **_: Any,
) -> GobClientConnection:
    """Dial a Go net/rpc server (``rpc.Dial``); a URL path means ``rpc.DialHTTP`` there."""
    path = http_path if http_path is not None else (url.path or None)
    loop = asyncio.get_running_loop()
    proto = GobClientConnection(
        max_message_size=max_message_size, address=str(url), http_path=path
    )
    factory: Callable[[], GobClientConnection] = lambda: proto  # noqa: E731

    async def dial() -> None:
        await loop.create_connection(factory, url.host, url.port)
        await proto._ready

    await streams.dial(url, dial, timeout, lambda: proto.transport)
    return proto


async def connect_http(
    url: URL | str, path: str = GO_RPC_PATH, **opts: Any
) -> GobClientConnection:
    """``rpc.DialHTTP``: ``CONNECT /_goRPC_ HTTP/1.0``, expect ``200 Connected to Go RPC``."""
    from .base import parse_url

    u = parse_url(url, "gob") if isinstance(url, str) else url
    return await connect(u, http_path=path, **opts)
