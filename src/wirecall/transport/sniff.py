"""One port, every protocol: ``any://host:port`` looks at the first bytes of each connection.

=============================  ==========================================  =====================
first bytes                    protocol                                    handed to
=============================  ==========================================  =====================
``WRPC``                       wirecall's native framed protocol            ``transport.native``
``PRI * HTTP/2.0\\r\\n``         HTTP/2 with prior knowledge (gRPC)           ``transport.grpc``
``GET `` ``POST `` ... token   HTTP/1.1: JSON-RPC 2.0, Go JSON-RPC 1.0,     ``transport.http``
                               ``/healthz``, WebSocket, ``CONNECT
                               /_goRPC_`` (Go's HTTP+gob)
a gob message defining         Go ``net/rpc`` with gob (``rpc.Dial``)      ``transport.gob``
type 65 (``<len> ff 81``)
``{`` (after whitespace)       Go ``net/rpc/jsonrpc`` (``jsonrpc.Dial``)    ``transport.jsonrpc``
=============================  ==========================================  =====================

Each transport module exposes ``make_server_protocol(server, **opts)``; the sniffer imports it
lazily, switches the connection to it and replays the bytes it read. A connection whose first
bytes match nothing (or nothing within ``sniff_timeout`` seconds), or whose protocol's module
is not available, is closed with a log line saying why.

Options: ``sniff_timeout`` (10 s); everything else goes to the HTTP side (``max_body``,
``header_timeout``, ``paths``... see :func:`wirecall.transport.http.serve`).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import ssl
import typing
from asyncio import sslproto
from typing import TYPE_CHECKING, Any, Final

from .base import URL, Listener
from .sockets import ConnectionSet
from .tls import DEFAULT_HANDSHAKE_TIMEOUT, pop_server_tls

if TYPE_CHECKING:
    from ..seam import Dispatcher
    from .http import HttpService

__all__ = [
    "SniffListener",
    "SniffProtocol",
    "classify",
    "connect",
    "make_server_protocol",
    "serve",
]

log = logging.getLogger("wirecall.sniff")

NATIVE: Final = "native"
HTTP1: Final = "http/1.1"
HTTP2: Final = "h2"
GOB: Final = "gob"
GOJSON: Final = "go-jsonrpc"

#: which module serves each protocol
MODULES: Final = {
    NATIVE: "wirecall.transport.native",
    HTTP1: "wirecall.transport.http",
    HTTP2: "wirecall.transport.grpc",
    GOB: "wirecall.transport.gob",
    GOJSON: "wirecall.transport.jsonrpc",
}

_PREFIXES: Final = (
    (b"WRPC", NATIVE),
    (b"PRI * HTTP/2.0\r\n", HTTP2),
    *(
        (m + b" ", HTTP1)
        for m in (b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH",
                  b"CONNECT", b"TRACE")
    ),
)
_WS: Final = b" \t\r\n"
#: the first byte of a TLS record of type handshake (a ClientHello)
TLS_RECORD: Final = b"\x16"
MAX_SNIFF: Final = 1024
#: gob's first message from a net/rpc client defines the first user type: id -65 = ff 81
_GOB_TYPEDEF: Final = b"\xff\x81"


def classify(data: bytes) -> str | None:
    """The protocol the first bytes of a connection belong to; ``None``: need more bytes;
    ``""``: no protocol matches."""
    if not data:
        return None
    gob = _gob(data)
    if gob is None:
        return None
    if gob:
        return GOB
    undecided = False
    for prefix, kind in _PREFIXES:
        if data.startswith(prefix):
            return kind
        if prefix.startswith(data):
            undecided = True
    stripped = data.lstrip(_WS)
    if stripped[:1] == b"{":
        return GOJSON
    if not stripped and len(data) < MAX_SNIFF:
        return None
    return None if undecided and len(data) < MAX_SNIFF else ""


def _gob(data: bytes) -> bool | None:
    """Does ``data`` start a gob stream (a message that defines type 65)? None: need more."""
    b0 = data[0]
    if b0 < 0x80:
        start = 1
    elif b0 >= 0xF8:  # a byte count of 256 - b0 bytes follows
        start = 1 + (256 - b0)
    else:
        return False
    if len(data) < start + 2:
        return None if _GOB_TYPEDEF.startswith(data[start:]) else False
    return data[start : start + 2] == _GOB_TYPEDEF


class SniffProtocol(asyncio.Protocol):
    """Reads the first bytes of one connection, then hands the connection over."""

    def __init__(self, listener: SniffListener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self._buf = b""
        self._timer: asyncio.TimerHandle | None = None
        self.peer = ""
        #: this sniffer reads the decrypted bytes of a TLS connection
        self.inside_tls = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)  # uvloop's is no subclass
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        if not self.inside_tls:  # (a TLS connection counts once: its socket)
            if not self.listener.admit(self.transport):
                self.transport.abort()
                return
            self.listener._track(self.transport)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.listener.sniff_timeout, self._timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _timeout(self) -> None:
        self._timer = None
        if self.transport is not None and not self.transport.is_closing():
            log.warning(
                "sniff: closing connection from %s: no protocol recognised within %.1fs "
                "(first bytes %r)", self.peer, self.listener.sniff_timeout, self._buf[:32])
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self.listener.ssl is not None and not self.inside_tls and self._buf[:1] == TLS_RECORD:
            self._start_tls()
            return
        kind = classify(self._buf)
        if kind is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        assert self.transport is not None
        if kind == "":
            log.warning(
                "sniff: closing connection from %s: first bytes %r match no protocol "
                "(wirecall, HTTP/1.1, HTTP/2, Go gob, Go JSON-RPC)", self.peer, self._buf[:32])
            self.transport.close()
            return
        proto = self.listener.protocol_for(kind, self.peer)
        if proto is None:
            self.transport.close()
            return
        transport = self.transport
        self.transport = None
        transport.set_protocol(proto)
        proto.connection_made(transport)
        proto.data_received(self._buf)
        self._buf = b""


    def _start_tls(self) -> None:
        """A TLS ClientHello: put asyncio's TLS layer between the socket and a new sniffer
        (which then sees the decrypted bytes), and replay what was read into it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport, self.transport = self.transport, None
        assert transport is not None and self.listener.ssl is not None
        loop = asyncio.get_running_loop()
        inner = SniffProtocol(self.listener)
        inner.inside_tls = True
        waiter: asyncio.Future[None] = loop.create_future()
        peer = self.peer

        def handshake_done(f: asyncio.Future[None]) -> None:
            if not f.cancelled() and f.exception() is not None:
                log.info("sniff: TLS handshake with %s failed: %s", peer, f.exception())

        waiter.add_done_callback(handshake_done)
        tls = sslproto.SSLProtocol(
            loop, inner, self.listener.ssl, waiter, server_side=True,
            ssl_handshake_timeout=typing.cast(int, self.listener.handshake_timeout))
        transport.set_protocol(tls)
        tls.connection_made(transport)
        data, self._buf = self._buf, b""
        buf = tls.get_buffer(len(data))
        buf[: len(data)] = data
        tls.buffer_updated(len(data))


class SniffListener(Listener):
    def __init__(self, server: Dispatcher, url: str, http_opts: dict[str, Any],
                 sniff_timeout: float) -> None:
        self.server = server
        self.url = url
        self.sniff_timeout = sniff_timeout
        self._http_opts = http_opts
        self._http: HttpService | None = None
        self._aserver: asyncio.AbstractServer | None = None
        self._transports: set[asyncio.Transport] = set()
        self._protocols: list[Any] = []
        #: connection limits (``max_connections``, ``max_connections_per_peer``)
        self.limits = ConnectionSet()
        #: TLS: a connection whose first byte is a TLS record is decrypted, then sniffed
        self.ssl: ssl.SSLContext | None = None
        self.handshake_timeout = 10.0

    def admit(self, transport: asyncio.Transport) -> bool:
        """Within ``max_connections`` / ``max_connections_per_peer`` (counted over the open
        connections this listener accepted: linear in their number, only when a limit is set)?"""
        if self.limits.max_total is None and self.limits.max_per_peer is None:
            return True
        self._transports = {t for t in self._transports if not t.is_closing()}
        why = ""
        if self.limits.max_total is not None and len(self._transports) >= self.limits.max_total:
            why = f"max_connections {self.limits.max_total}"
        elif self.limits.max_per_peer is not None:
            host = _host(transport)
            n = sum(1 for t in self._transports if _host(t) == host)
            if n >= self.limits.max_per_peer:
                why = f"max_connections_per_peer {self.limits.max_per_peer}"
        if why:
            self.limits.refused += 1
            log.warning("sniff: refusing a connection from %s: over %s", _host(transport), why)
            return False
        return True

    def _track(self, transport: asyncio.Transport) -> None:
        if len(self._transports) > 64:
            self._transports = {t for t in self._transports if not t.is_closing()}
        self._transports.add(transport)

    def http_service(self) -> HttpService:
        if self._http is None:
            from .http import HttpService

            self._http = HttpService(self.server, **self._http_opts)
        return self._http

    def protocol_for(self, kind: str, peer: str) -> asyncio.Protocol | None:
        if kind == HTTP1:
            return self.http_service().protocol()
        modname = MODULES[kind]
        try:
            mod = importlib.import_module(modname)
            factory = mod.make_server_protocol
        except (ImportError, AttributeError) as exc:
            log.error(
                "sniff: closing %s connection from %s: %s is not available (%s)",
                kind, peer, modname, exc)
            return None
        proto: asyncio.Protocol = factory(self.server)
        if hasattr(proto, "goaway"):
            self._protocols = [p for p in self._protocols if not _closed(p)]
            self._protocols.append(proto)
        return proto

    async def stop_accepting(self) -> None:
        if self._http is not None:
            self._http.draining = True
        if self._aserver is not None:
            self._aserver.close()

    def goaway(self) -> None:
        if self._http is not None:
            self._http.goaway()
        for p in self._protocols:
            try:
                p.goaway()
            except Exception:  # a protocol's GOAWAY failing must not stop the shutdown
                log.exception("sniff: goaway failed for %r", p)

    async def aclose(self) -> None:
        if self._aserver is not None:
            self._aserver.close()
        if self._http is not None:
            await self._http.aclose()
        for t in list(self._transports):
            if not t.is_closing():
                t.close()
        await asyncio.sleep(0)


def _host(transport: Any) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""


def _closed(p: Any) -> bool:
    t = getattr(p, "transport", None)
    return t is None or bool(t.is_closing())


def make_server_protocol(server: Dispatcher, **opts: Any) -> asyncio.Protocol:
    """A sniffing protocol for one connection (a listener made ad hoc for ``server``)."""
    timeout = float(opts.pop("sniff_timeout", 10.0))
    return SniffProtocol(SniffListener(server, "", opts, timeout))


async def serve(server: Dispatcher, url: URL, **opts: Any) -> SniffListener:
    """Listen on ``any://host:port`` and serve every protocol wirecall speaks on it."""
    opts = dict(opts)
    timeout = float(opts.pop("sniff_timeout", url.query.get("sniff_timeout", 10.0)))
    backlog = int(opts.pop("backlog", 1024))
    reuse_port = bool(opts.pop("reuse_port", False))
    inherited = opts.pop("sock", None)  # a listening socket from wirecall serve --workers
    handshake_timeout = float(opts.pop("tls_handshake_timeout", DEFAULT_HANDSHAKE_TIMEOUT))
    tls = pop_server_tls(url.scheme, opts)  # any:// with a certificate also speaks TLS
    limits = ConnectionSet()
    limits.set_limits(opts)
    listener = SniffListener(server, "", opts, timeout)
    listener.limits = limits
    listener.ssl = tls
    listener.handshake_timeout = handshake_timeout
    loop = asyncio.get_running_loop()
    where: dict[str, Any] = ({"sock": inherited} if inherited is not None else {
        "host": url.host or None, "port": url.port, "backlog": backlog, "reuse_address": True,
        "reuse_port": reuse_port or None})
    aserver = await loop.create_server(lambda: SniffProtocol(listener), **where)
    listener._aserver = aserver
    sock = aserver.sockets[0].getsockname()
    listener.url = str(URL(url.scheme, url.host or sock[0], sock[1]))
    return listener


async def connect(url: URL, **opts: Any) -> Any:
    """A client for ``any://host:port`` speaks wirecall's native protocol (``tcp://``)."""
    native = importlib.import_module("wirecall.transport.native")
    return await native.connect(URL("tcp", url.host, url.port, url.path, url.query), **opts)
