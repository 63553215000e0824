"""The ``quic://`` server: the native protocol's :class:`~..native.server.ServerProtocol`
(fast lane, deadlines, streams, keepalive, GOAWAY) with one QUIC stream per call.

Each accepted QUIC connection gets a :class:`QuicServerProtocol` (aioquic's asyncio protocol)
and, inside it, a :class:`QuicSession`: the native server protocol whose transport is a
:class:`~.wire.StreamWire`. Control-stream bytes go through the native parser as on TCP;
each call stream has a parser of its own, whose events the session handles exactly as the
native server does. A stream reset by the client cancels its call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import serve as quic_serve
from aioquic.quic import events as qe
from aioquic.quic.connection import QuicConnection
from aioquic.tls import SessionTicket

from ...errors import ProtocolError
from ...protocol import frames as fr
from ...seam import Dispatcher
from ...status import Status
from ..base import URL
from ..native.server import ServerProtocol
from ..sockets import ConnectionListener
from .routing import CONTROL_STREAM, CallStreams, stream_parser
from .wire import StreamWire, address_text, configuration, wait_acked

__all__ = ["QuicListener", "QuicServerProtocol", "QuicSession", "serve"]

log = logging.getLogger("wirecall.quic")

#: seconds a closing connection waits for the client to acknowledge the last replies
CLOSE_GRACE = 2.0


class QuicSession(ServerProtocol):
    """The native server protocol over one QUIC connection (see the module docstring)."""

    scheme = "quic"

    def __init__(self, server: Dispatcher, listener: ConnectionListener | None,
                 wire: StreamWire, **opts: Any) -> None:
        super().__init__(server, listener, **opts)
        self.wire = wire
        self.routes = wire.routes
        #: call-stream events that arrived before the control stream's preface (0-RTT, loss)
        self._early: list[fr.Event] = []
        # call frames belong on call streams: on the control stream they are refused
        # (events, not the fast lane's callback, so _on_request sees them)
        self.conn.set_fast_callbacks()
        self._in_control = False
        self._closer: asyncio.Future[None] | None = None

    def on_stream_data(self, sid: int, data: bytes, end: bool) -> None:
        if sid == CONTROL_STREAM:
            if data:
                self._in_control = True
                try:
                    self.data_received(data)
                finally:
                    self._in_control = False
            if self._early and self.conn.preface_received:
                early, self._early = self._early, []
                self._process(early)
            return
        if sid % 4 != 0:  # calls travel only on client-initiated bidirectional streams
            self.wire.reset(sid)
            return
        routes = self.routes
        parser = routes.parsers.get(sid)
        if parser is None:
            parser = routes.parsers[sid] = stream_parser(
                client=False, max_frame_size=self.conn.max_frame_size,
                peer_max_frame_size=self.conn.peer_max_frame_size)
        try:
            events = parser.receive_data(data) if data else []
            for ev in events:
                cid = getattr(ev, "call_id", None)
                if cid is not None:
                    routes.bind(cid, sid)
        except ProtocolError as exc:
            log.info("%s: stream %d reset: %s", self.peer, sid, exc.message)
            self.wire.reset(sid)
            return
        if end:
            routes.end(sid, CallStreams.RECEIVED)
        if not events:
            return
        if not self.conn.preface_received:
            self._early.extend(events)
            return
        self._process(events)

    def touch(self) -> None:
        """A datagram arrived: the client is alive (whatever stream it was for)."""
        self._last_activity = time.monotonic()

    def _on_request(self, ev: fr.RequestReceived) -> None:
        if self._in_control:
            log.info("%s: a REQUEST on the control stream, closing", self.peer)
            self.close_with(Status.INVALID_ARGUMENT,
                            "REQUEST on the control stream (each call has a stream of its own)")
            return
        super()._on_request(ev)

    def on_stream_reset(self, cid: int) -> None:
        """The client reset a call's stream (or this side did): cancel the call."""
        if self.transport is not None:
            self._process_one(fr.CancelReceived(cid))

    def close_connection(self) -> None:
        if self.transport is not None:
            self._flush()
            self._closer = asyncio.ensure_future(self._close_when_acked())

    def connection_lost(self, exc: Exception | None) -> None:
        closer = self._closer
        if closer is not None and not closer.done():
            closer.cancel()  # the connection ended first: nothing left to wait for
        super().connection_lost(exc)

    async def _close_when_acked(self) -> None:
        await wait_acked(self.wire.quic, CLOSE_GRACE)
        self.wire.close()


class QuicServerProtocol(QuicConnectionProtocol):
    """One accepted QUIC connection (aioquic's protocol) carrying a :class:`QuicSession`."""

    def __init__(self, quic: QuicConnection, stream_handler: Any = None, *,
                 server: Dispatcher, listener: QuicListener, opts: dict[str, Any]) -> None:
        super().__init__(quic, stream_handler)
        self.wire = StreamWire(self, quic, CallStreams(), client=False)
        self.session = QuicSession(server, listener, self.wire, **opts)
        self.wire.on_reset = self.session.on_stream_reset
        self._addr: Any = None
        self.refused = not listener.accepting
        self.session.connection_made(self.wire)  # type: ignore[arg-type]

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        self.session.touch()
        if addr != self._addr:  # the first datagram, or the client's address changed
            self._addr = addr
            self.wire.peername = addr
            self.session.peer = address_text(addr)
        super().datagram_received(data, addr)

    def quic_event_received(self, event: qe.QuicEvent) -> None:
        t = type(event)
        if t is qe.StreamDataReceived:
            if self.refused:
                return  # not accepting: nothing is answered, the handshake ends in a close
            self.session.on_stream_data(
                event.stream_id, event.data, event.end_stream)  # type: ignore[attr-defined]
        elif t is qe.StreamReset or t is qe.StopSendingReceived:
            self.wire.reset(event.stream_id)  # type: ignore[attr-defined]
        elif t is qe.HandshakeCompleted:
            if self.refused:
                self.close(error_code=0x2, reason_phrase="server is not accepting connections")
        elif t is qe.ConnectionTerminated:
            self.wire.closing = True
            self.session.connection_lost(None)


class QuicListener(ConnectionListener):
    """A UDP socket serving QUIC connections (aioquic's ``QuicServer``)."""

    def __init__(self, url: str = "") -> None:
        super().__init__(url)
        self.accepting = True
        self.quic_server: Any = None
        #: session tickets issued by this listener (resumption and 0-RTT of repeat clients)
        self.tickets: dict[bytes, SessionTicket] = {}

    async def stop_accepting(self) -> None:
        self.accepting = False  # new handshakes are closed once they complete

    async def aclose(self) -> None:
        for c in list(self.connections):
            c.close_connection()
        deadline = asyncio.get_running_loop().time() + CLOSE_GRACE + 0.5
        while self.connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        if self.quic_server is not None:
            self.quic_server.close()


async def serve(server: Dispatcher, url: URL, **opts: Any) -> QuicListener:
    """Listen on ``quic://host:port`` (UDP). Options: ``certfile``/``keyfile`` (required),
    ``session_tickets`` (default True: repeat clients resume, and may send 0-RTT calls),
    ``compress_threshold``."""
    tls = {k: opts.pop(k) for k in ("certfile", "keyfile", "max_datagram_size",
                                    "congestion_control") if k in opts}
    tickets_on = bool(opts.pop("session_tickets", True))
    unknown = set(opts) - {"compress_threshold"}
    if unknown:
        raise ValueError(f"unknown quic:// server option(s): {', '.join(sorted(unknown))}")
    cfg = configuration(client=False, **tls)
    listener = QuicListener()

    def create(quic: QuicConnection, stream_handler: Any = None) -> QuicServerProtocol:
        return QuicServerProtocol(quic, stream_handler, server=server, listener=listener,
                                  opts=opts)

    tickets = listener.tickets
    listener.quic_server = await quic_serve(
        url.host, url.port, configuration=cfg, create_protocol=create,
        session_ticket_fetcher=(lambda k: tickets.pop(k, None)) if tickets_on else None,
        session_ticket_handler=(lambda t: tickets.__setitem__(t.ticket, t))
        if tickets_on else None,
    )
    host, port = listener.quic_server._transport.get_extra_info("sockname")[:2]
    listener.url = f"quic://{address_text((host, port))}"
    return listener
