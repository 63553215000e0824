"""gRPC client calls in flight: :class:`UnaryCall` (a unary call's record) and
:class:`GrpcClientStream` (a streaming call), both on a
:class:`~wirecall.transport.grpc.client.GrpcClientConnection`."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping
from typing import Any, Protocol

import msgspec

from ...codec.protobuf import MessageWire
from ...errors import InvalidArgument, RpcError, Unavailable
from ...protocol import grpc as gp
from ...streaming.model import ClientStream
from .common import HIGH_WATER

__all__ = ["GrpcClientStream", "StreamOwner", "UnaryCall", "live_call"]


class StreamOwner(Protocol):
    """What a client stream needs of its connection (a
    :class:`~wirecall.transport.grpc.client.GrpcClientConnection`)."""

    conn: gp.GrpcConnection
    #: the write buffer is over its high-water mark: senders wait
    paused: bool
    _loop: asyncio.AbstractEventLoop  # (``sockets.CoalescedWriter``'s)

    def _schedule_flush(self) -> None:
        """Write what is queued at the end of this loop iteration (``CoalescedWriter``)."""

    def check_size(self, payload: bytes) -> None:
        """Raise RESOURCE_EXHAUSTED for a message over the size limit."""

    def drop(self, sid: int) -> None:
        """Forget the call on stream ``sid``."""

    def unqueue(self, entry: Any) -> None:
        """Take a call off the queue of calls waiting for a stream."""

    def admit(self) -> None:
        """Open the streams of queued calls while the server's limit allows."""


class UnaryCall:
    """A unary call in flight (held strongly in the call table, unlike streams)."""

    __slots__ = (
        "fut", "metadata", "method", "payload", "request", "result_type", "retries", "sid",
        "timer", "wire",
    )

    def __init__(self, fut: asyncio.Future[Any], wire: MessageWire, result_type: Any) -> None:
        self.fut = fut
        self.wire = wire
        self.result_type = result_type
        self.payload: bytes | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.sid = 0  # 0 while it waits for a stream (see GrpcClientConnection._queue)
        # what opening the stream takes (again, if the server refuses it: ``_retry_refused``)
        self.method = ""
        self.request = b""
        self.metadata: Mapping[str, Any] | None = None
        self.retries = 0


def live_call(c: UnaryCall | weakref.ref[GrpcClientStream] | None,
          ) -> UnaryCall | GrpcClientStream | None:
    """A call table entry: unary calls are held, streams weakly (see ``_collected``)."""
    return c() if isinstance(c, weakref.ref) else c


class GrpcClientStream(ClientStream[Any]):
    """A streaming call on a :class:`GrpcClientConnection`."""

    def __init__(self, owner: StreamOwner, method: str, wire: MessageWire,
                 result_type: Any) -> None:
        super().__init__(method)
        self.owner = owner
        self.wire = wire
        self.result_type = result_type
        self.sid = 0  # 0 while it waits for a stream (see GrpcClientConnection._queue)
        self.timer: asyncio.TimerHandle | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.ref = weakref.ref(self)
        # while it waits for a stream: resolved once it is open (or ended)
        self.opened: asyncio.Future[None] | None = None
        # what opening the stream takes (again, if the server refuses it: ``_retry_refused``)
        self.first: bytes | None = None  # the request of a server stream
        self.metadata: Mapping[str, Any] | None = None
        self.sent = False  # a message went out (send / send_all): it cannot be sent again
        self.ended = False  # half-closed with done_writing
        self.retries = 0

    async def _wait_open(self) -> None:
        """A queued stream: wait until it has its HTTP/2 stream (raise if it ended first)."""
        while self.sid == 0 and not self._done and self.opened is not None:
            await asyncio.shield(self.opened)  # (one cancelled writer leaves it to the others)
        if self._done:
            raise self._error or Unavailable(message=f"{self.method}: stream is closed")

    def _encode_item(self, item: Any) -> bytes:
        try:
            return self.wire.encode(item, None)
        except (TypeError, ValueError, msgspec.EncodeError) as exc:  # as on tcp and ws
            raise InvalidArgument(message=f"cannot encode a message of {self.method}: "
                                  f"{exc}") from None

    async def _write(self, item: Any) -> None:
        o = self.owner
        payload = self._encode_item(item)
        o.check_size(payload)
        if self.sid == 0:
            await self._wait_open()
        self.sent = True
        o.conn.send_message(self.sid, payload)
        o._schedule_flush()
        while (o.conn.pending(self.sid) > HIGH_WATER or o.paused) and not self._done:
            self.waiter = o._loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        if self._done and self._error is not None:
            raise self._error

    async def _write_end(self) -> None:
        if self.sid == 0:
            await self._wait_open()
        self.ended = True
        self.owner.conn.end_request(self.sid)
        self.owner._schedule_flush()

    def _abort(self, error: RpcError) -> None:
        o = self.owner
        if self.sid == 0:  # still queued: nothing was sent
            o.unqueue(self.ref)
            return
        o.drop(self.sid)
        o.conn.reset(self.sid)
        o._schedule_flush()
        o.admit()  # the reset freed a stream

    def _consumed(self, credit: int) -> None:
        self.owner.conn.consumed(self.sid, credit)
        self.owner._schedule_flush()

    def _finish(self, error: RpcError | None, trailing: Mapping[str, Any] | None = None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)
        super()._finish(error, trailing)
        if self.opened is not None and not self.opened.done():
            self.opened.set_result(None)  # writers waiting for the stream see the end

    # the background sender (``send_all``, see ``streaming._pump``) waits on ``_write_gate``
    # holding the stream only weakly, then writes with ``_put`` without waiting
    def _write_gate(self) -> asyncio.Future[Any] | None:
        if self._done:
            return None
        o = self.owner
        if self.sid == 0:  # queued: wait for its HTTP/2 stream
            return None if self.opened is None else asyncio.shield(self.opened)
        if o.conn.pending(self.sid) <= HIGH_WATER and not o.paused:
            return None
        w = self.waiter
        if w is None or w.done():
            w = self.waiter = o._loop.create_future()
        return w

    def _put(self, item: Any) -> None:
        o = self.owner
        payload = self._encode_item(item)
        o.check_size(payload)
        self.sent = True
        o.conn.send_message(self.sid, payload)
        o._schedule_flush()
