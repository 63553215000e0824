"""The asyncio side every ``quic://`` connection shares: :class:`StreamWire` (what the native
protocol classes see as their transport: ``write`` sends each frame on its call's QUIC
stream) and the aioquic configuration (TLS 1.3, ALPN ``wirecall``).

The QUIC state machine is aioquic's sans-IO ``QuicConnection``; its asyncio helpers
(``QuicConnectionProtocol``, ``serve``) own the UDP socket, the timers, connection ids and
path validation (migration). wirecall uses them rather than driving ``QuicConnection`` by
hand: they are aioquic's tested datagram demultiplexer, and everything wirecall adds lives in
the stream events and in :class:`StreamWire`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from ...protocol import frames as fr
from .routing import CONTROL_STREAM, CallStreams, split_frames

__all__ = [
    "ALPN",
    "CANCELLED",
    "StreamWire",
    "address_text",
    "configuration",
    "unacked",
    "wait_acked",
]

#: the ALPN protocol id both sides must agree on
ALPN = "wirecall"
#: the application error code of a stream reset by a cancelled call
CANCELLED = 0x8
#: QUIC's own idle timeout (seconds); the native PINGs of ``keepalive`` keep it from firing
QUIC_IDLE_TIMEOUT = 120.0


def configuration(*, client: bool, **tls: Any) -> QuicConfiguration:
    """An aioquic configuration: TLS 1.3 with ALPN ``wirecall``, wirecall's idle timeout.
    ``tls`` takes ``certfile``/``keyfile`` (server), ``cafile``/``server_hostname`` (client),
    ``verify=False`` (client: accept any certificate, for tests against throwaway keys),
    ``congestion_control`` (``"reno"``, aioquic's default, or ``"cubic"``)."""
    unknown = set(tls) - {"certfile", "keyfile", "cafile", "server_hostname", "verify",
                          "max_datagram_size", "congestion_control"}
    if unknown:
        raise ValueError(f"unknown quic:// TLS option(s): {', '.join(sorted(unknown))}")
    cfg = QuicConfiguration(is_client=client, alpn_protocols=[ALPN],
                            idle_timeout=QUIC_IDLE_TIMEOUT)
    if tls.get("congestion_control"):  # aioquic's "reno" (default) or "cubic"
        cfg.congestion_control_algorithm = str(tls["congestion_control"])
    if tls.get("max_datagram_size"):
        cfg.max_datagram_size = int(tls["max_datagram_size"])
    if client:
        if tls.get("cafile"):
            cfg.load_verify_locations(cafile=tls["cafile"])
        if tls.get("verify") is False:
            import ssl

            cfg.verify_mode = ssl.CERT_NONE
        if tls.get("server_hostname"):
            cfg.server_name = tls["server_hostname"]
    else:
        if not tls.get("certfile"):
            raise ValueError("quic:// needs a certificate: serve(..., certfile=, keyfile=) "
                             "(wirecall.transport.quic.write_self_signed makes one)")
        cfg.load_cert_chain(tls["certfile"], tls.get("keyfile"))
    return cfg


def address_text(addr: Any) -> str:
    """``127.0.0.1:4433`` / ``[::1]:4433`` for a socket address (IPv4-mapped shown as IPv4)."""
    if not isinstance(addr, tuple) or len(addr) < 2:
        return str(addr)
    host = str(addr[0])
    if host.startswith("::ffff:"):
        host = host[7:]
    return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"


class StreamWire:
    """The transport the native protocol classes write to: each frame goes to its call's
    stream. A server ends a call's stream with its RESPONSE or ERROR; a client ends a unary
    call's stream with its REQUEST, and turns a CANCEL frame into a stream reset."""

    def __init__(self, proto: QuicConnectionProtocol, quic: QuicConnection, routes: CallStreams,
                 *, client: bool) -> None:
        self.proto = proto
        self.quic = quic
        self.routes = routes
        self.client = client
        self.peername: Any = None
        self.closing = False
        self._transmit_scheduled = False
        self._loop = asyncio.get_running_loop()
        #: called with the call id of each call whose stream this side reset
        self.on_reset: Callable[[int], None] = lambda _cid: None

    def write(self, data: bytes) -> None:
        if self.closing:
            return
        quic = self.quic
        routes = self.routes
        for cid, ftype, flags, frame in split_frames(data):
            if cid == 0:
                # (ValueError: a server whose client never opened its control stream)
                with contextlib.suppress(ValueError):
                    quic.send_stream_data(CONTROL_STREAM, bytes(frame))
                continue
            sid = routes.by_call.get(cid)
            fin = False
            if self.client:
                if ftype == fr.CANCEL:
                    if sid is not None:
                        self.reset(sid)
                    continue
                if ftype == fr.REQUEST and sid is None:
                    sid = quic.get_next_available_stream_id()
                    routes.bind(cid, sid)
                    fin = not flags & fr.F_STREAM
            else:
                fin = ftype == fr.RESPONSE or ftype == fr.ERROR
            if sid is None:
                continue  # the call's stream was reset: nothing more goes out for it
            try:
                quic.send_stream_data(sid, bytes(frame), end_stream=fin)
            except (ValueError, RuntimeError):  # that direction of the stream has ended
                routes.drop_stream(sid)
                continue
            if fin:
                routes.end(sid, CallStreams.SENT)
        self.transmit_soon()

    def transmit_soon(self) -> None:
        """Send what was queued at the end of this loop iteration: the replies to every
        request of one datagram (and aioquic's ACKs) share packets instead of one each."""
        if not self._transmit_scheduled:
            self._transmit_scheduled = True
            self._loop.call_soon(self._transmit)

    def _transmit(self) -> None:
        self._transmit_scheduled = False
        if not self.closing:
            self.proto.transmit()

    def finish(self, sid: int) -> None:
        """End this side of ``sid`` (a stream the peer ended: a client's streaming call)."""
        if not self.closing:
            self.quic.send_stream_data(sid, b"", end_stream=True)
            self.routes.end(sid, CallStreams.SENT)
            self.transmit_soon()

    def reset(self, sid: int) -> None:
        """Abandon a call's stream both ways (RESET_STREAM and STOP_SENDING)."""
        cid = self.routes.drop_stream(sid)
        if not self.closing:
            for op in (self.quic.reset_stream, self.quic.stop_stream):
                with contextlib.suppress(ValueError, AssertionError):  # (already ended)
                    op(sid, CANCELLED)
            self.transmit_soon()
        if cid is not None:
            self.on_reset(cid)

    # -- the rest of asyncio.Transport that the native classes use ------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self.peername
        return default

    def close(self) -> None:
        if not self.closing:
            self.proto.transmit()  # what is queued (a GOAWAY) goes before CONNECTION_CLOSE
            self.closing = True
            self.proto.close()

    def abort(self) -> None:
        if not self.closing:
            self.closing = True
            self.proto.close(error_code=0x1, reason_phrase="aborted")

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        """Bytes queued and not yet sent (aioquic's stream buffers hold what QUIC flow
        control has not let out yet; this side never pauses on them: 0)."""
        return 0

    def pause_reading(self) -> None:
        """QUIC flow control holds a slow peer back (the stream windows are not reopened
        while this side does not read): nothing more to do here."""

    def resume_reading(self) -> None:
        """See :meth:`pause_reading`."""


def unacked(quic: QuicConnection) -> int:
    """Streams whose sent data the peer has not acknowledged yet (aioquic keeps a stream
    until both directions are finished and acknowledged)."""
    streams = getattr(quic, "_streams", {})
    return sum(1 for s in streams.values() if not s.sender.is_finished)


async def wait_acked(quic: QuicConnection, timeout: float) -> bool:
    """Wait (at most ``timeout`` s) until everything sent was acknowledged: a graceful close
    loses no reply still in flight. True when it was."""
    end = time.monotonic() + timeout
    while unacked(quic):
        if time.monotonic() >= end:
            return False
        await asyncio.sleep(0.005)
    return True
