"""What Go's two RPC wires share: ``net/rpc`` over gob (``gob://``) and its JSON-RPC 1.0 codec
(``net/rpc/jsonrpc``, ``jsonrpc://``).

Both carry one argument per call, multiplex calls by a sequence number, answer in completion
order and report failures as bare Go error strings. Here: Go's error texts, the one-argument
rule, the server connection base (:class:`GoServerProtocol`) and the client connection base
(:class:`GoClientConnection`). Each wire's modules add only their encoding.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ...context import Context
from ...errors import InvalidArgument, RpcError, Unavailable, Unimplemented
from ...status import Status
from ..base import ClientConnection
from ..sockets import (
    CoalescedWriter,
    ConnectionListener,
    PendingCalls,
    peer_identity,
    peer_name,
    set_nodelay,
)

if TYPE_CHECKING:
    from ...seam import Dispatcher

__all__ = [
    "EncodedParts",
    "GoClientConnection",
    "GoServerProtocol",
    "go_argument",
    "go_error",
    "go_error_for_lookup",
]


def go_error_for_lookup(method: str, server: Dispatcher) -> str:
    """Go's exact texts for an unknown service or method."""
    svc, dot, _ = method.rpartition(".")
    if not dot:
        return f"rpc: service/method request ill-formed: {method}"
    if not server.has_service(svc):
        return f"rpc: can't find service {method}"
    return f"rpc: can't find method {method}"


def go_error(text: str) -> RpcError:
    """The RpcError a Go error string becomes on the client."""
    if text.startswith(("rpc: can't find ", "rpc: service/method request ill-formed")):
        return Unimplemented(message=text)
    if text.startswith("method ") and (text.endswith(": call it with client.stream()")
                                       or text.endswith(": call it with client.call()")):
        return Unimplemented(message=text)  # a wirecall server's mode mismatch (errors.wrong_mode)
    if text.startswith("unauthenticated: "):  # wirecall.auth's texts (Go errors carry no code)
        return RpcError(Status.UNAUTHENTICATED, text)
    if text.startswith("permission denied: "):
        return RpcError(Status.PERMISSION_DENIED, text)
    return RpcError(Status.UNKNOWN, text)


def go_argument(params: Any, method: str, dialect: str) -> Any:
    """The one argument a Go RPC method takes, from wirecall's params (a list or a dict)."""
    if isinstance(params, (list, tuple)):
        if len(params) > 1:
            raise InvalidArgument(
                message=f"{dialect} methods take one argument; {len(params)} given to {method}"
            )
        return params[0] if params else None
    return params


class EncodedParts:
    """The outgoing side of a connection whose messages are encoded one by one (Go JSON-RPC):
    the encoded messages queued, joined per write."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        #: bytes queued to send
        self.queued = 0

    def add(self, data: bytes) -> None:
        self.parts.append(data)
        self.queued += len(data)

    def data_to_send(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        self.queued = 0
        return out


class _Queued(Protocol):
    @property
    def queued(self) -> int: ...

    def data_to_send(self) -> bytes: ...


class GoServerProtocol(CoalescedWriter, asyncio.Protocol):
    """What a server connection of either Go wire does besides its encoding: registers with
    its listener, tracks the calls it started (``calls``: cancelled when the connection
    goes), queues answers written in one go per read (or per loop iteration), and has no
    GOAWAY (in-flight calls finish, then the connection closes). Subclasses set ``conn``
    (with ``data_to_send``) and ``log``, and implement ``data_received``."""

    log: logging.Logger
    conn: _Queued
    #: how the log names this wire ("net/rpc connection from ... closed")
    wire = ""
    #: once a read's answers pass this many bytes they are written (and may pause reading)
    FLUSH_AT = 256 * 1024

    def __init__(self, server: Dispatcher, listener: ConnectionListener | None = None) -> None:
        self.server = server
        self.listener = listener
        self.limits = server.limits
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.identity = ""
        #: the calls in flight, keyed by their Context (a peer's ids may repeat)
        self.calls: dict[Any, Context] = {}
        self._in_read = False
        self._flush_scheduled = False
        self._loop = asyncio.get_event_loop()
        self._max_unsent = self.limits.max_unsent_bytes
        self._writable = True
        #: requests read but not started while the peer does not read its answers
        self._backlog: collections.deque[Any] = collections.deque()
        self._frame_timer: asyncio.TimerHandle | None = None
        self._values_in = 0  # reads that completed a value (the unfinished-value clock)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)
        set_nodelay(transport)
        self.peer = peer_name(transport)
        self.identity = peer_identity(transport)
        if self.listener is not None:
            self.listener.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.listener is not None:
            self.listener.connections.discard(self)
        calls, self.calls = self.calls, {}
        for ctx in calls.values():
            ctx.cancel()
        self.transport = None
        self._backlog.clear()
        if self._frame_timer is not None:
            self._frame_timer.cancel()
            self._frame_timer = None

    # -- serving what a read completed: one call at a time, stopping for a peer that does
    #    not read (its answers stay under the transport's high-water mark plus one reply)

    def _start(self, item: Any) -> None:
        """Start one request read from the wire (each wire's own)."""
        raise NotImplementedError

    def _unfinished(self) -> bool:
        """A value has started arriving and is not complete yet (each wire's own)."""
        raise NotImplementedError

    def _serve(self, items: list[Any]) -> None:
        if items:
            self._values_in += 1
        if self._backlog:
            self._backlog.extend(items)
            items = []
        self._in_read = True
        try:
            for i, item in enumerate(items):
                if not self._writable or self.transport is None:
                    self._backlog.extend(items[i:])
                    break
                self._start(item)
                if self.conn.queued >= self.FLUSH_AT:
                    self._flush()  # may call pause_writing()
        finally:
            self._in_read = False
        self._flush()
        if self._frame_timer is None and self.transport is not None and self._unfinished():
            self._frame_timer = self._loop.call_later(
                self.limits.frame_timeout, self._on_frame_timer, self._values_in)

    def _over_limit(self) -> str | None:
        """The Go error for a call over the per-connection limit, or None."""
        limit = self.server.max_concurrent_calls
        if len(self.calls) >= limit:
            return f"rpc: too many calls in flight on this connection (limit {limit})"
        return None

    def pause_writing(self) -> None:
        self._writable = False
        self._paused_out = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._writable = True
        self._paused_out = False
        backlog = list(self._backlog)
        self._backlog.clear()
        self._serve(backlog)
        if self._writable and not self._backlog and self.transport is not None:
            self.transport.resume_reading()

    def _on_frame_timer(self, mark: int) -> None:
        self._frame_timer = None
        if self.transport is None or not self._unfinished():
            return
        if self._values_in != mark:  # values completed since: the clock restarts
            self._frame_timer = self._loop.call_later(
                self.limits.frame_timeout, self._on_frame_timer, self._values_in)
            return
        self.close_with(f"value not completed within {self.limits.frame_timeout:g}s "
                        "(limits.frame_timeout)")

    def close_with(self, reason: str) -> None:
        """Close the connection on input Go would drop it on (what was answered goes out)."""
        self.log.warning("%s connection from %s closed: %s", self.wire, self.peer, reason)
        if self.transport is not None:
            self._flush()
            self.transport.close()
            self.transport = None

    def _answered(self) -> None:
        """An answer was queued: it goes out at the end of the read it came from, or (for a
        call that finished later) at the end of this loop iteration."""
        if not self._in_read:
            self._schedule_flush()

    def goaway(self) -> None:
        """Go's RPC wires have no GOAWAY: in-flight calls finish, then the connection closes."""

    def close_connection(self) -> None:
        if self.transport is not None:
            self._flush()
            self.transport.close()


class GoClientConnection(CoalescedWriter, ClientConnection, asyncio.Protocol):
    """What Go's two RPC clients share (``rpc.Client`` over gob, ``jsonrpc`` over JSON):
    calls multiplexed by sequence number, one argument per call, frames coalesced per loop
    iteration, a pending-call table failed at once when the connection goes. Subclasses set
    ``conn`` (with ``data_to_send``), ``dialect`` and :meth:`_request`."""

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
