"""The ``quic://`` client: the native protocol's
:class:`~..native.client.TcpClientConnection` (pending calls, deadlines, streams, keepalive,
GOAWAY) with one QUIC stream per call.

Repeat clients resume: the session ticket a server issues is kept per address in
:data:`TICKETS` (this process only), and the next connection to it resumes the TLS session;
with ``early_data=True`` it sends its first calls in 0-RTT packets, before the handshake
completes (a replayable request: use it for idempotent calls). :meth:`QuicClientConnection.
migrate` moves the connection to a new local UDP socket (a new address: what a phone does
when it leaves Wi-Fi); the server validates the new path and the calls go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import Any

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic import events as qe
from aioquic.quic.connection import QuicConnection
from aioquic.tls import SessionTicket

from ... import codec as codecs
from ...errors import ConnectError, ProtocolError, Unavailable
from ...protocol import frames as fr
from ..base import URL
from ..native.client import TcpClientConnection
from ..sockets import dial
from .routing import CONTROL_STREAM, CallStreams, stream_parser
from .wire import StreamWire, configuration

__all__ = ["TICKETS", "QuicClientConnection", "QuicClientProtocol", "connect"]

#: session tickets by (host, port, server name): a repeat client resumes (and may use 0-RTT)
TICKETS: dict[tuple[str, int, str], SessionTicket] = {}


class QuicClientConnection(TcpClientConnection):
    """A native client connection whose calls each travel on a QUIC stream."""

    def __init__(self, codec: codecs.Codec, **opts: Any) -> None:
        super().__init__(codec, **opts)
        self.proto: QuicClientProtocol | None = None
        self.routes = CallStreams()
        #: filled when the handshake completes: (session resumed, 0-RTT accepted)
        self.resumed = False
        self.early_data_accepted = False
        #: the TLS handshake has completed (false for a while after a 0-RTT connect)
        self.handshake_done = False

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self.streams)

    def on_stream_data(self, sid: int, data: bytes, end: bool) -> None:
        if sid == CONTROL_STREAM:
            if data:
                self.data_received(data)
            return
        routes = self.routes
        if sid not in routes.by_stream:
            return  # a stream this side reset or already forgot
        parser = routes.parsers.get(sid)
        if parser is None:
            parser = routes.parsers[sid] = stream_parser(
                client=True, max_frame_size=self.conn.max_frame_size,
                peer_max_frame_size=self.conn.peer_max_frame_size)
        try:
            events = parser.receive_data(data) if data else []
        except ProtocolError as exc:
            cid = routes.by_stream.get(sid)
            if self.proto is not None:
                self.proto.wire.reset(sid)
            if cid is not None:
                self._fail_call(cid, Unavailable(message=f"protocol error from server: "
                                                         f"{exc.message}"))
            return
        if events:
            self._on_events(events)
        if end and not routes.end(sid, CallStreams.RECEIVED) and self.proto is not None:
            self.proto.wire.finish(sid)  # the call is over: end this side of its stream too

    def on_handshake(self, resumed: bool, early_data_accepted: bool) -> None:
        """TLS is up: keepalive starts now (a slow handshake is not a dead peer)."""
        self.handshake_done = True
        self.resumed = resumed
        self.early_data_accepted = early_data_accepted
        self._arm_timer()

    def _arm_timer(self) -> None:
        if self.handshake_done:  # (connection_made runs before the handshake completes)
            super()._arm_timer()

    def touch(self) -> None:
        """A datagram arrived: the peer is alive (keepalive counts every stream's traffic,
        not only the control stream's)."""
        self._last_activity = time.monotonic()

    def on_terminated(self, reason: str) -> None:
        """The QUIC connection ended (closed by either side, idle, or a handshake failure):
        every pending call fails with UNAVAILABLE naming why."""
        if self.transport is not None:
            self._close_reason = self._close_reason or Unavailable(
                message=f"QUIC connection to {self.address} closed"
                + (f": {reason}" if reason else ""))
            self.connection_lost(None)

    def on_stream_reset(self, cid: int) -> None:
        """The server reset a call's stream."""
        self._fail_call(cid, Unavailable(message="the server reset the call's stream"))

    def _fail_call(self, cid: int, err: Unavailable) -> None:
        entry = self._pending.pop(cid, None)
        if entry is not None and not entry[0].done():
            entry[0].set_exception(err)
        st = self.streams.pop(cid, None)
        if st is not None:
            st._fail(err)

    async def migrate(self, host: str = "127.0.0.1") -> tuple[str, int]:
        """Move this connection to a new local UDP socket (a new port on ``host``): the
        client's address changes mid-connection. Returns the new local address."""
        proto = self.proto
        if proto is None or self._closed:
            raise Unavailable(message="connection closed")
        return await proto.rebind(host)

    async def aclose(self) -> None:
        await super().aclose()
        if self.proto is not None:
            await self.proto.closed()


class QuicClientProtocol(QuicConnectionProtocol):
    """aioquic's protocol for one client connection; feeds :class:`QuicClientConnection`."""

    def __init__(self, quic: QuicConnection, owner: QuicClientConnection) -> None:
        super().__init__(quic)
        self.quic = quic
        self.owner = owner
        self.wire = StreamWire(self, quic, owner.routes, client=True)
        self.wire.on_reset = owner.on_stream_reset
        self.old_transports: list[asyncio.BaseTransport] = []
        self.addr: Any = None

    def quic_event_received(self, event: qe.QuicEvent) -> None:
        t = type(event)
        owner = self.owner
        if t is qe.StreamDataReceived:
            owner.on_stream_data(event.stream_id, event.data,  # type: ignore[attr-defined]
                                 event.end_stream)  # type: ignore[attr-defined]
        elif t is qe.StreamReset or t is qe.StopSendingReceived:
            self.wire.reset(event.stream_id)  # type: ignore[attr-defined]
        elif t is qe.HandshakeCompleted:
            owner.on_handshake(event.session_resumed,  # type: ignore[attr-defined]
                               event.early_data_accepted)  # type: ignore[attr-defined]
        elif t is qe.ConnectionTerminated:
            self.wire.closing = True
            owner.on_terminated(event.reason_phrase)  # type: ignore[attr-defined]

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        self.owner.touch()
        super().datagram_received(data, addr)
        # The server's CONNECTION_CLOSE: aioquic reports ConnectionTerminated only after its
        # draining period (3 PTO); the calls learn it now.
        closing = getattr(self._quic, "_close_event", None)
        if closing is not None and not self.wire.closing:
            self.wire.closing = True
            self.owner.on_terminated(closing.reason_phrase)

    async def rebind(self, host: str) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        old = self._transport
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Forward(self), local_addr=(host, 0))
        self._transport = transport
        if old is not None:
            old.close()
        self._quic.change_connection_id()  # a new id on the new path (unlinkable)
        self._quic.send_ping(0)
        self.transmit()
        addr = transport.get_extra_info("sockname")
        return str(addr[0]), int(addr[1])

    async def closed(self, timeout: float = 0.05) -> None:
        """Release the UDP socket once CONNECTION_CLOSE went out (it is sent at once; the
        peer learns of the close from it, there is nothing more to wait for)."""
        if not self._closed.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wait_closed(), timeout)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.close()


class _Forward(asyncio.DatagramProtocol):
    """A migrated connection's new socket: datagrams go to the same QUIC protocol."""

    def __init__(self, target: QuicClientProtocol) -> None:
        self.target = target

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.target.datagram_received(data, addr)


async def connect(
    url: URL,
    *,
    timeout: float | None = 10.0,
    codec: str | int | codecs.Codec = "msgpack",
    max_message_size: int = fr.DEFAULT_MAX_FRAME,
    compress_threshold: int | None = None,
    keepalive: float | None = 30.0,
    idle_timeout: float | None = None,
    early_data: bool = False,
    service_codecs: dict[str, Any] | None = None,
    **tls: Any,
) -> QuicClientConnection:
    """Dial ``quic://host:port``. TLS: ``cafile=`` (the server's certificate or its CA),
    ``server_hostname=``, ``verify=False`` (tests only). ``early_data=True``: with a session
    ticket from an earlier connection, send the first calls as 0-RTT data."""
    cfg = configuration(client=True, **tls)
    loop = asyncio.get_running_loop()
    c = codecs.get(codec)
    owner = QuicClientConnection(
        c, max_message_size=max_message_size, compress_threshold=compress_threshold,
        keepalive=keepalive, idle_timeout=idle_timeout, address=str(url),
        service_codecs=service_codecs)
    server_name = cfg.server_name or url.host
    cfg.server_name = server_name
    key = (url.host, url.port, server_name)
    cfg.session_ticket = TICKETS.get(key)
    quic = QuicConnection(configuration=cfg,
                          session_ticket_handler=lambda t: TICKETS.__setitem__(key, t))

    async def open_connection() -> None:
        infos = await loop.getaddrinfo(url.host, url.port, type=socket.SOCK_DGRAM)
        family, _, _, _, addr = infos[0]
        local = ("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0)
        if url.host.startswith("127.") or url.host in ("localhost", "::1"):
            local = (("::1" if family == socket.AF_INET6 else "127.0.0.1"), 0)
        _, proto = await loop.create_datagram_endpoint(
            lambda: QuicClientProtocol(quic, owner), local_addr=local)
        owner.proto = proto
        proto.addr = addr
        proto.connect(addr)
        owner.connection_made(proto.wire)  # type: ignore[arg-type]  # queues the preface
        if early_data and cfg.session_ticket is not None:
            return  # 0-RTT: calls go out now, with the preface, before the handshake ends
        await proto.wait_connected()
        await owner._ready

    try:
        await dial(url, open_connection, timeout)
    except ConnectError:
        if owner.proto is not None:
            owner.proto.close()
            await owner.proto.closed(0.1)
        raise
    except ConnectionError as exc:
        raise ConnectError(message=f"dial {url}: {exc}") from None
    return owner

