"""The native protocol's async client (``tcp://``, ``unix://``): :class:`TcpClientConnection`
multiplexes calls by id over one socket, coalescing the frames queued in one loop iteration
into one write; :func:`connect` dials it. Streams: :mod:`.client_streams`. The blocking
client of ``wirecall.sync`` is :mod:`.blocking`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import typing
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from ... import codec as codecs
from ...codec.negotiate import CODEC_KEY, CallCodecs
from ...errors import (
    DeadlineExceeded,
    FrameTooLarge,
    InvalidArgument,
    ProtocolError,
    RpcError,
    Unavailable,
)
from ...protocol import frames as fr
from ...status import Status
from ..base import URL, ClientConnection
from ..sockets import WRITE_BATCH, CoalescedWriter, dial, set_nodelay
from ..tls import pop_client_tls
from .client_streams import TcpClientStream, open_stream
from .messages import error_from_frame

__all__ = ["TcpClientConnection", "connect", "error_from_frame"]

log = logging.getLogger("wirecall.tcp")

COMPRESS_THRESHOLD_DEFAULT: int | None = None  # bytes; None: never compress
#: sockets.WRITE_BATCH messages, counted in queued frame parts (a request is 3)
CLIENT_WRITE_PARTS = 3 * WRITE_BATCH


class TcpClientConnection(CoalescedWriter, ClientConnection, asyncio.Protocol):
    """One multiplexed native-protocol connection: many calls in flight, answered by id."""

    conn: fr.FrameConnection

    def __init__(
        self,
        codec: codecs.Codec,
        *,
        max_message_size: int = fr.DEFAULT_MAX_FRAME,
        compress_threshold: int | None = COMPRESS_THRESHOLD_DEFAULT,
        keepalive: float | None = None,
        idle_timeout: float | None = None,
        address: str = "",
        service_codecs: Mapping[str, Any] | None = None,
    ) -> None:
        self.codec = codec
        #: per-call and per-service codecs (``wirecall-codec`` metadata: codec/negotiate.py)
        self.call_codecs = CallCodecs(codec, service_codecs)
        self._coded = self.call_codecs.active
        self._encode = codec.encode
        self._decode_any = getattr(codec, "decode_any", codec.decode)
        self._idle_timeout = idle_timeout
        self._idle_mark = (1, time.monotonic())  # (_next_id, since when): idle from the start
        self.address = address
        self.conn = fr.FrameConnection(
            client=True, codec_id=codec.id, max_frame_size=max_message_size
        )
        self.transport: asyncio.Transport | None = None
        self._pending: dict[int, tuple[asyncio.Future[Any], Any]] = {}
        self._next_id = 1
        self._closed = False
        self._goaway = False
        self._close_reason: RpcError | None = None
        self._flush_scheduled = False
        self._loop = asyncio.get_event_loop()
        self._ready: asyncio.Future[None] = self._loop.create_future()
        self._compress_threshold = compress_threshold
        self._pings: dict[bytes, asyncio.Future[None]] = {}
        self._keepalive = keepalive
        self._ka_handle: asyncio.TimerHandle | None = None
        self._last_activity = time.monotonic()
        self.streams: dict[int, Any] = {}
        self.conn.set_fast_callbacks(on_response=self._on_plain_response)

    # -- ClientConnection API -------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed or self._goaway

    @property
    def pending(self) -> int:
        return len(self._pending)

    def new_id(self) -> int:
        """A fresh call id (streams take theirs here)."""
        cid = self._next_id
        self._next_id = cid + 1 if cid < 0xFFFFFFFF else 1
        return cid

    @property
    def wire_open(self) -> bool:
        """The socket is still up (a GOAWAY may have been received: see :attr:`closed`)."""
        return not self._closed

    def check_open(self) -> None:
        """Raise the reason this connection takes no new call, if it does not."""
        if self._closed or self._goaway:
            raise self._close_reason or Unavailable(message=f"connection to {self.address} closed")

    def flush_soon(self) -> None:
        """Write what is queued at the end of this loop iteration."""
        self._schedule_flush()

    fast_start = True  # Client.call may use start() + await (one coroutine frame less)

    def start(
        self,
        method: str,
        params: Any,
        timeout: float | None,
        metadata: Mapping[str, str] | None,
        result_type: Any,
    ) -> tuple[int, asyncio.Future[Any]]:
        """Queue a call and return its id and the future its reply will complete."""
        if self._closed or self._goaway:
            raise self._close_reason or Unavailable(message=f"connection to {self.address} closed")
        if self._coded or (metadata and CODEC_KEY in metadata):
            coded = self._start_coded(method, params, timeout, metadata, result_type)
            if coded is not None:
                return coded
        cid = self._next_id
        self._next_id = cid + 1 if cid < 0xFFFFFFFF else 1
        try:
            body = self._encode(params)
        except (TypeError, msgspec.EncodeError) as exc:
            raise InvalidArgument(message=f"cannot encode arguments of {method}: {exc}") from None
        th = self._compress_threshold
        try:
            if th is not None and len(body) >= th and self.conn.peer_accepts_compression:
                self.conn.send_request(
                    cid, method, zlib.compress(body, 1), timeout, metadata or None,
                    compressed=True,
                )
            else:
                self.conn.send_request(cid, method, body, timeout, metadata or None)
        except FrameTooLarge as exc:
            raise FrameTooLarge(f"request for {method}: {exc.message}") from None
        fut = self._loop.create_future()
        pending = self._pending
        if not pending and not self._flush_scheduled and self.transport is not None:
            # Nothing else in flight (a sequential caller): no batch to wait for, write now.
            self.transport.write(self.conn.data_to_send())
        elif len(self.conn.queued_parts) >= CLIENT_WRITE_PARTS and self.transport is not None:
            self.transport.write(self.conn.data_to_send())
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        pending[cid] = (fut, result_type)
        if timeout is not None:
            handle = self._loop.call_later(timeout, self._expire, cid, method, timeout)
            fut.add_done_callback(lambda _f: handle.cancel())
        return cid, fut

    def _start_coded(self, method: str, params: Any, timeout: float | None,
                     metadata: Mapping[str, str] | None, result_type: Any,
                     ) -> tuple[int, asyncio.Future[Any]] | None:
        """A call with its own codec (codec/negotiate.py); None: the connection's codec."""
        codec = self.call_codecs.for_call(method, metadata)
        if codec is None:
            return None
        session = self.call_codecs.session(codec)
        try:
            body, md = session.encode(params)
        except (TypeError, ValueError, msgspec.EncodeError) as exc:
            raise InvalidArgument(
                message=f"cannot encode arguments of {method} with {codec.name}: {exc}") from None
        cid = self.new_id()
        self.conn.send_request(cid, method, body, timeout, {**(metadata or {}), **md})
        fut = self._loop.create_future()
        self._pending[cid] = (fut, result_type)
        self.call_codecs.calls[cid] = session
        self._schedule_flush()
        if timeout is not None:
            handle = self._loop.call_later(timeout, self._expire, cid, method, timeout)
            fut.add_done_callback(lambda _f: handle.cancel())
        return cid, fut

    def _coded_reply(self, cid: int, ev: fr.ResponseReceived, body: bytes | memoryview) -> None:
        session = self.call_codecs.calls.pop(cid)
        entry = self._pending.pop(cid, None)
        if entry is None or entry[0].done():
            return
        fut, rtype = entry
        md = ev.metadata or {}
        if CODEC_KEY not in md:
            fut.set_exception(InvalidArgument(
                message="the server answered without a codec: it does not support per-call codecs"))
            return
        try:
            fut.set_result(session.decode(body, rtype, md))
        except (ValueError, TypeError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            fut.set_exception(InvalidArgument(message=f"cannot decode the reply: {exc}"))

    async def call(
        self,
        method: str,
        params: list[Any] | dict[str, Any],
        timeout: float | None,
        metadata: Mapping[str, str] | None,
        result_type: Any,
    ) -> Any:
        cid, fut = self.start(method, params, timeout, metadata, result_type)
        try:
            return await fut
        except asyncio.CancelledError:
            self._abandon(cid)
            raise

    def abandon(self, cid: int) -> None:
        """The caller gave up (task cancelled): tell the server to cancel the handler."""
        self._abandon(cid)

    def _abandon(self, cid: int) -> None:
        """The caller gave up (task cancelled): tell the server to cancel the handler."""
        self.call_codecs.calls.pop(cid, None)
        if self._pending.pop(cid, None) is not None and self.transport is not None:
            self.conn.send_cancel(cid)
            self._schedule_flush()

    def _expire(self, cid: int, method: str, timeout: float) -> None:
        self.call_codecs.calls.pop(cid, None)
        entry = self._pending.pop(cid, None)
        if entry is None:
            return
        fut = entry[0]
        if not fut.done():
            fut.set_exception(
                DeadlineExceeded(message=f"{method}: no reply within {timeout:g}s")
            )
        if self.transport is not None:
            self.conn.send_cancel(cid)
            self._schedule_flush()

    def open_stream(
        self,
        method: str,
        params: Any,
        timeout: float | None,
        metadata: Mapping[str, str] | None,
        result_type: Any,
    ) -> TcpClientStream:
        """Open a streaming call (see :mod:`.client_streams`)."""
        return open_stream(self, method, params, timeout, metadata, result_type)

    async def ping(self, timeout: float | None = None) -> float:
        if self._closed:
            raise Unavailable(message="connection closed")
        opaque = os.urandom(8)
        fut: asyncio.Future[None] = self._loop.create_future()
        self._pings[opaque] = fut
        t0 = time.monotonic()
        self.conn.send_ping(opaque)
        self._schedule_flush()
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise DeadlineExceeded(message="ping timed out") from None
        finally:
            self._pings.pop(opaque, None)
        return time.monotonic() - t0

    async def aclose(self) -> None:
        if self.transport is not None:
            self._flush()
            self.transport.close()
        self._fail_all(Unavailable(message=f"connection to {self.address} closed by the client"))
        self._closed = True

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)  # uvloop's is no subclass
        set_nodelay(transport)
        self.conn.initiate()
        self._flush()
        self._arm_timer()

    def _arm_timer(self) -> None:
        period = min(x for x in (self._keepalive, self._idle_timeout, 3600.0) if x)
        self._ka_handle = self._loop.call_later(period, self._on_keepalive)

    def _on_keepalive(self) -> None:
        if self._closed or self.transport is None:
            return
        now = time.monotonic()
        idle = self._idle_timeout
        if idle:
            if self._next_id != self._idle_mark[0] or self._pending:  # a call since last time
                self._idle_mark = (self._next_id, now)
            elif now - self._idle_mark[1] >= idle:
                log.debug("%s: idle for %.1fs, closing", self.address, now - self._idle_mark[1])
                self._closed = True
                self._close_reason = Unavailable(message=f"connection to {self.address} idle")
                self.transport.close()
                return
        if self._keepalive and now - self._last_activity >= self._keepalive:
            if any(not f.done() for f in self._pings.values()):
                log.info("%s: keepalive ping unanswered, closing", self.address)
                self.transport.abort()
                return
            opaque = os.urandom(8)
            self._pings[opaque] = self._loop.create_future()
            self.conn.send_ping(opaque)
            self._flush()
        self._arm_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.transport = None
        if self._ka_handle is not None:
            self._ka_handle.cancel()
        reason = self._close_reason or Unavailable(
            message=f"connection to {self.address} lost" + (f": {exc}" if exc else "")
        )
        if not self._ready.done():
            self._ready.set_exception(reason)
            self._ready.exception()  # mark retrieved
        self._fail_all(reason)

    def _fail_all(self, reason: RpcError) -> None:
        pending, self._pending = self._pending, {}
        for fut, _ in pending.values():
            if not fut.done():
                fut.set_exception(reason)
        for f in self._pings.values():
            if not f.done():
                f.set_exception(reason)
                f.exception()  # keepalive pings have no awaiter: mark the error retrieved
        for st in list(self.streams.values()):
            fail = getattr(st, "_fail", None)
            if fail is not None:
                fail(reason)

    def _on_plain_response(self, cid: int, body: bytes | memoryview) -> None:
        """A RESPONSE with no flags, straight from the parser (see ``set_fast_callbacks``)."""
        entry = self._pending.pop(cid, None)
        if entry is None:
            st = self.streams.get(cid)
            if st is not None:
                st._on_response(fr.ResponseReceived(cid, body, None, False))
            return
        fut, rtype = entry
        if fut.done():
            return
        try:
            fut.set_result(
                self._decode_any(body) if rtype is Any else self.codec.decode(body, rtype)
            )
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            fut.set_exception(InvalidArgument(message=f"cannot decode the reply: {exc}"))
        except RpcError as exc:
            fut.set_exception(exc)

    def data_received(self, data: bytes) -> None:
        self._last_activity = time.monotonic()
        try:
            events = self.conn.receive_data(data)
        except ProtocolError as exc:
            log.warning("closing connection to %s: %s", self.address, exc.message)
            self._close_reason = Unavailable(message=f"protocol error from server: {exc.message}")
            if self.transport is not None:
                self.transport.abort()
            return
        if events:  # plain replies were resolved by the parser's callback already
            self._on_events(events)

    def _on_events(self, events: list[fr.Event]) -> None:
        pending = self._pending
        for ev in events:
            t = type(ev)
            if t is fr.ResponseReceived:
                cid = ev.call_id  # type: ignore[attr-defined]
                body = ev.body  # type: ignore[attr-defined]
                if ev.compressed and cid in pending:  # type: ignore[attr-defined]
                    try:
                        body = fr.decompress(body, self.conn.max_frame_size)
                    except RpcError as exc:
                        fut = pending.pop(cid)[0]
                        if not fut.done():
                            fut.set_exception(exc)
                        continue
                if cid in self.call_codecs.calls:
                    self._coded_reply(cid, ev, body)  # type: ignore[arg-type]
                elif cid in pending:
                    self._on_plain_response(cid, body)
                else:
                    st = self.streams.get(cid)
                    if st is not None:
                        st._on_response(ev)
            elif t is fr.ErrorReceived:
                self.call_codecs.calls.pop(ev.call_id, None)  # type: ignore[attr-defined]
                entry = pending.pop(ev.call_id, None)  # type: ignore[attr-defined]
                if entry is not None and not entry[0].done():
                    entry[0].set_exception(self._error(ev))  # type: ignore[arg-type]
                else:
                    st = self.streams.get(ev.call_id)  # type: ignore[attr-defined]
                    if st is not None:
                        st._on_error(self._error(ev))  # type: ignore[arg-type]
            elif t is fr.PrefaceReceived:
                if not self._ready.done():
                    self._ready.set_result(None)
            elif t is fr.PongReceived:
                f = self._pings.pop(ev.opaque, None)  # type: ignore[attr-defined]
                if f is not None and not f.done():
                    f.set_result(None)
            elif t is fr.GoAwayReceived:
                self._on_goaway(ev)  # type: ignore[arg-type]
            elif t is fr.FrameRefused:
                entry = pending.pop(ev.call_id, None)  # type: ignore[attr-defined]
                if entry is not None and not entry[0].done():
                    entry[0].set_exception(
                        RpcError(
                            Status.RESOURCE_EXHAUSTED,
                            f"reply of {ev.size} bytes exceeds the client limit of "  # type: ignore[attr-defined]
                            f"{self.conn.max_frame_size} bytes",
                        )
                    )
            elif t is fr.MessageReceived or t is fr.WindowUpdated:
                st = self.streams.get(ev.call_id)  # type: ignore[attr-defined]
                if st is not None:
                    st._on_frame(ev)
        if self.conn.has_data_to_send():
            self._flush()

    def _error(self, ev: fr.ErrorReceived) -> RpcError:
        return error_from_frame(self.codec, ev)

    def _on_goaway(self, ev: fr.GoAwayReceived) -> None:
        self._goaway = True
        reason = Unavailable(message=f"server sent GOAWAY: {ev.message or 'going away'}")
        if not self._ready.done():
            self._close_reason = (
                RpcError(ev.status, ev.message) if ev.status else reason
            )
        # calls the server never saw will never be answered: fail them now
        for cid in [c for c in self._pending if c > ev.last_call_id]:
            fut, _ = self._pending.pop(cid)
            if not fut.done():
                fut.set_exception(reason)


async def connect(
    url: URL,
    *,
    timeout: float | None = 10.0,
    codec: str | int | codecs.Codec = "msgpack",
    max_message_size: int = fr.DEFAULT_MAX_FRAME,
    compress_threshold: int | None = None,
    keepalive: float | None = 30.0,
    idle_timeout: float | None = None,
    service_codecs: Mapping[str, Any] | None = None,
    **tls_opts: Any,
) -> TcpClientConnection:
    """Dial ``url`` (``tcp://`` or ``unix://``) within ``timeout`` seconds (DialTimeout).

    ``keepalive``: seconds of silence before a PING (an unanswered PING closes the connection);
    ``idle_timeout``: close the connection after this long with no call (the pool redials).
    """
    c = codecs.get(codec)
    loop = asyncio.get_running_loop()
    proto = TcpClientConnection(
        c,
        max_message_size=max_message_size,
        compress_threshold=compress_threshold,
        keepalive=keepalive,
        idle_timeout=idle_timeout,
        address=str(url),
        service_codecs=service_codecs,
    )
    factory: Callable[[], TcpClientConnection] = lambda: proto  # noqa: E731
    tls = pop_client_tls(url.scheme, url.host, tls_opts)  # tls://: ssl, server_hostname

    async def open_connection() -> None:
        if url.scheme == "unix":
            await loop.create_unix_connection(factory, url.path)
        else:
            await loop.create_connection(factory, url.host, url.port, **tls)
        await proto._ready

    await dial(url, open_connection, timeout, lambda: proto.transport)
    return proto
