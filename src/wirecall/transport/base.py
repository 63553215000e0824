"""What every transport provides: a server-side ``Listener`` and a client-side connection.

A transport module (``wirecall.transport.native``, ``.http``, ``.grpc`` ...) exposes::

    async def serve(server: Dispatcher, url: URL, **options) -> Listener
    async def connect(url: URL, **options) -> ClientConnection

and is found through :data:`SCHEMES`, imported lazily so a missing extra only fails when used.
"""

from __future__ import annotations

import abc
import asyncio
import importlib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import Unimplemented

__all__ = [
    "CLIENT_OPTIONS",
    "EXTRA_MODULES",
    "NEEDS_EXTRAS",
    "SCHEMES",
    "SERVER_OPTIONS",
    "URL",
    "ClientConnection",
    "Listener",
    "check_options",
    "load_transport",
    "parse_url",
]

#: scheme -> (module, pip extra that module needs or "")
SCHEMES: dict[str, tuple[str, str]] = {
    "tcp": ("wirecall.transport.native", ""),
    "unix": ("wirecall.transport.native", ""),
    "gob": ("wirecall.transport.gob", ""),
    "jsonrpc": ("wirecall.transport.jsonrpc", ""),
    "http": ("wirecall.transport.http", "http"),
    "ws": ("wirecall.transport.http", "http"),
    "any": ("wirecall.transport.sniff", ""),
    "grpc": ("wirecall.transport.grpc", "grpc"),
    "grpcs": ("wirecall.transport.grpc", "grpc"),
    # over TLS (transport/tls.py): native, HTTP/1.1, WebSocket, Go net/rpc with gob
    "tls": ("wirecall.transport.native", ""),
    "https": ("wirecall.transport.http", "http"),
    "wss": ("wirecall.transport.http", "http"),
    "gobs": ("wirecall.transport.gob", ""),
    "jsonrpcs": ("wirecall.transport.jsonrpc", ""),
    "quic": ("wirecall.transport.quic", "quic"),
}


_SOCKET = frozenset({"backlog", "reuse_port", "max_connections", "max_connections_per_peer",
                     "sock"})
_HTTP_SERVER = frozenset({
    "paths", "go_paths", "ws_path", "health_path", "ready_path", "go_rpc_path", "max_body",
    "max_header_size", "header_timeout", "body_timeout", "keepalive_timeout", "linger_timeout",
    "max_pipeline", "ws_heartbeat", "drain_delay"}) | _SOCKET
_GRPC_SERVER = frozenset({"max_message_size", "max_concurrent_streams", "reset_limit",
                          "compression", "compress_threshold", "http2_backend"}) | _SOCKET
_NATIVE_SERVER = frozenset({"compress_threshold"}) | _SOCKET
_TLS_SERVER = frozenset({"ssl", "certfile", "keyfile", "cafile", "client_cert", "tls_reload",
                         "tls_handshake_timeout"})
_TLS_CLIENT = frozenset({"ssl", "cafile", "certfile", "keyfile", "server_hostname"})

#: the options ``Server.start(url, **options)`` accepts per scheme; anything else is an error
#: naming it (a transport missing here checks its own options)
SERVER_OPTIONS: dict[str, frozenset[str]] = {
    "tcp": _NATIVE_SERVER,
    "unix": frozenset({"compress_threshold", "sock"}),
    "gob": _SOCKET,
    "jsonrpc": _SOCKET,
    "http": _HTTP_SERVER,
    "ws": _HTTP_SERVER,
    "grpc": _GRPC_SERVER,
    "grpcs": _GRPC_SERVER | _TLS_SERVER,
    # one port for every protocol: each protocol's options reach its part
    "any": _NATIVE_SERVER | _HTTP_SERVER | _GRPC_SERVER | _TLS_SERVER | {"sniff_timeout"},
    "tls": _NATIVE_SERVER | _TLS_SERVER,
    "https": _HTTP_SERVER | _TLS_SERVER,
    "wss": _HTTP_SERVER | _TLS_SERVER,
    "gobs": _SOCKET | _TLS_SERVER,
    "jsonrpcs": _SOCKET | _TLS_SERVER,
    "quic": frozenset({"certfile", "keyfile", "session_tickets", "compress_threshold",
                       "max_datagram_size", "congestion_control"}),
}

_NATIVE_CLIENT = frozenset({"timeout", "codec", "max_message_size", "compress_threshold",
                            "keepalive", "idle_timeout", "service_codecs"})
_GRPC_CLIENT = frozenset({"timeout", "codec", "max_message_size", "compression",
                          "compress_threshold", "http2_backend"})
_HTTP_CLIENT = frozenset({"timeout", "pool_size", "headers", "keepalive_timeout"})

#: the options ``connect(url, **options)`` passes to each scheme's transport
CLIENT_OPTIONS: dict[str, frozenset[str]] = {
    "tcp": _NATIVE_CLIENT,
    "unix": _NATIVE_CLIENT,
    "any": _NATIVE_CLIENT,
    "gob": frozenset({"timeout", "max_message_size", "http_path"}),
    "jsonrpc": frozenset({"timeout", "max_message_size"}),
    "grpc": _GRPC_CLIENT,
    "grpcs": _GRPC_CLIENT | _TLS_CLIENT,
    "tls": _NATIVE_CLIENT | _TLS_CLIENT,
    "gobs": frozenset({"timeout", "max_message_size"}) | _TLS_CLIENT,
    "jsonrpcs": frozenset({"timeout", "max_message_size"}) | _TLS_CLIENT,
    "https": _HTTP_CLIENT | {"max_message_size", "http_path"} | _TLS_CLIENT,
    "wss": frozenset({"timeout", "headers", "metadata", "max_message_size", "heartbeat",
                      "max_incoming_calls", "max_concurrent_calls"}) | _TLS_CLIENT,
    "http": _HTTP_CLIENT | {"max_message_size", "http_path"},
    "ws": frozenset({"timeout", "headers", "metadata", "max_message_size", "heartbeat",
                     "max_incoming_calls", "max_concurrent_calls"}),
    "quic": _NATIVE_CLIENT | {"early_data", "cafile", "server_hostname", "verify",
                              "max_datagram_size", "congestion_control"},
}


def check_options(scheme: str, side: str, options: Mapping[str, Any]) -> None:
    """Refuse an option the ``scheme``'s transport does not understand (``side``: "server"
    or "client"), naming it and what is accepted: a typo (``timout=3``) or an inapplicable
    option (``certfile=`` on tcp://, which would otherwise serve plaintext) is an error."""
    table = SERVER_OPTIONS if side == "server" else CLIENT_OPTIONS
    accepted = table.get(scheme)
    if accepted is None:
        return
    unknown = sorted(set(options) - accepted)
    if unknown:
        names = ", ".join(repr(u) for u in unknown)
        hint = ""
        if {"certfile", "keyfile", "ssl", "cafile"} & set(unknown):
            hint = (" (TLS is not available on this scheme: use tls://, https://, wss://, "
                    "gobs://, jsonrpcs:// or grpcs://)")
        raise ValueError(
            f"{scheme}:// {side} does not accept option{'s' if len(unknown) > 1 else ''} "
            f"{names}{hint}; accepted: {', '.join(sorted(accepted)) or 'none'}"
        )


@dataclass(frozen=True)
class URL:
    """A parsed address: ``scheme://host:port/path?query`` or ``unix:///path``."""

    scheme: str
    host: str = ""
    port: int = 0
    path: str = ""
    query: Mapping[str, str] = field(default_factory=dict)

    @property
    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        q = ("?" + urllib.parse.urlencode(dict(self.query))) if self.query else ""
        return f"{self.scheme}://{self.hostport}{self.path}{q}"


def parse_url(text: str, default_scheme: str = "tcp") -> URL:
    """Parse ``tcp://h:p``, ``h:p`` (default scheme), ``unix:///p`` and friends."""
    if "://" not in text:
        text = f"{default_scheme}://{text}"
    u = urllib.parse.urlsplit(text)
    scheme = u.scheme.lower()
    query = dict(urllib.parse.parse_qsl(u.query))
    if scheme == "unix":
        path = (u.netloc + u.path) if u.netloc else u.path
        if not path:
            raise ValueError(f"unix address needs a path: {text!r}")
        return URL("unix", path=path, query=query)
    try:
        port = u.port
    except ValueError as exc:
        raise ValueError(f"bad port in address {text!r}") from exc
    if port is None:
        raise ValueError(f"address {text!r} needs a port")
    return URL(scheme, u.hostname or "127.0.0.1", port, u.path, query)


#: the modules each extra provides, imported when a transport needing it is loaded (so a
#: missing one fails at listen or dial time, not at the first connection)
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "http": ("aiohttp", "httptools"),
    "grpc": ("h2", "google.protobuf"),
    "quic": ("aioquic",),
}
#: a scheme serving other transports' protocols needs their extras too
NEEDS_EXTRAS: dict[str, tuple[str, ...]] = {"any": ("http", "grpc")}


def load_transport(scheme: str) -> Any:
    """Import the module serving ``scheme``; a missing extra names the pip command."""
    try:
        modname, extra = SCHEMES[scheme]
    except KeyError:
        raise ValueError(
            f"unknown address scheme {scheme!r}; known: {', '.join(sorted(SCHEMES))}"
        ) from None
    for needed in (extra, *NEEDS_EXTRAS.get(scheme, ())):
        for dep in EXTRA_MODULES.get(needed, ()):
            try:
                importlib.import_module(dep)
            except ImportError:
                raise RuntimeError(
                    f"the {scheme}:// transport needs {dep!r}, which is not installed: "
                    f"pip install 'wirecall[{needed}]'") from None
    try:
        return importlib.import_module(modname)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("wirecall"):
            raise ValueError(f"the {scheme!r} transport is not available in this build") from exc
        hint = f"pip install 'wirecall[{extra}]'" if extra else "pip install wirecall"
        raise RuntimeError(
            f"the {scheme}:// transport needs {exc.name!r}, which is not installed: {hint}"
        ) from exc


class Listener(abc.ABC):
    """A bound server socket feeding calls into ``Server``."""

    #: the real address, with the port actually bound (``tcp://127.0.0.1:40123``)
    url: str

    @abc.abstractmethod
    async def stop_accepting(self) -> None:
        """Close the listening socket; existing connections stay."""

    @abc.abstractmethod
    def goaway(self) -> None:
        """Tell every connection's peer that no new calls will be accepted."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close every connection (after the server drained in-flight calls)."""


class ClientConnection(abc.ABC):
    """One client connection (or an HTTP keep-alive pool) able to carry many calls."""

    @property
    @abc.abstractmethod
    def closed(self) -> bool:
        """True once the connection is unusable (closed, broken, or told GOAWAY)."""

    @property
    def pending(self) -> int:
        """Calls in flight on this connection (for least-pending selection)."""
        return 0

    #: True when :meth:`start` is implemented (the client's direct path uses it)
    fast_start: bool = False

    def start(
        self,
        method: str,
        params: Any,
        timeout: float | None,
        metadata: Mapping[str, str] | None,
        result_type: Any,
    ) -> tuple[int, asyncio.Future[Any]]:
        """Queue a call without a coroutine: (call id, future of the reply). Optional."""
        raise NotImplementedError

    def abandon(self, call_id: int) -> None:
        """The caller of :meth:`start` gave up on ``call_id`` (cancel it on the server)."""
        raise NotImplementedError

    @abc.abstractmethod
    async def call(
        self,
        method: str,
        params: list[Any] | dict[str, Any],
        timeout: float | None,
        metadata: Mapping[str, str] | None,
        result_type: Any,
    ) -> Any:
        """One unary call; raises :class:`~wirecall.errors.RpcError` on failure."""

    def open_stream(
        self,
        method: str,
        params: list[Any] | dict[str, Any] | None,
        timeout: float | None,
        metadata: Mapping[str, str] | None,
        result_type: Any,
    ) -> Any:
        """Open a streaming call (see docs/streaming.md); transports without streams refuse."""
        raise Unimplemented(message=f"{type(self).__name__} does not support streaming calls")

    async def ping(self, timeout: float | None = None) -> float:
        """Round-trip a keepalive ping; returns seconds. Default: no-op."""
        return 0.0

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the connection; pending calls fail with UNAVAILABLE."""
