"""wirecall's native protocol over TCP and Unix sockets (``tcp://``, ``unix://``).

:mod:`.server` (one protocol per accepted connection, the fast lane) and
:mod:`.server_streams`; :mod:`.client` (the async client) and :mod:`.client_streams`;
:mod:`.blocking` (the blocking-socket client behind ``wirecall.sync``); :mod:`.messages`
(what both sides share above the frames of :mod:`wirecall.protocol.frames`).
"""

from .client import TcpClientConnection, connect, error_from_frame
from .server import ServerProtocol, make_server_protocol, serve

__all__ = [
    "ServerProtocol",
    "TcpClientConnection",
    "connect",
    "error_from_frame",
    "make_server_protocol",
    "serve",
]
