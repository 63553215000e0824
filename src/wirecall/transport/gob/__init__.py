"""``gob://host:port``: Go's ``net/rpc`` (gob) on TCP, and over HTTP CONNECT, both ends.

:mod:`.server` (``rpc.ServeConn`` per connection; also answers ``CONNECT /_goRPC_``),
:mod:`.client` (``rpc.Dial``), :mod:`.http_connect` (``rpc.DialHTTP`` and the hand-off from
the HTTP listener), :mod:`.go_rpc` (what the gob and Go JSON-RPC wires share). Entry points::

    async def serve(server, url, **opts) -> Listener                # rpc.ServeConn per connection
    def make_server_protocol(server, **opts) -> asyncio.Protocol     # for the sniffing listener
    async def connect(url, **opts) -> GobClientConnection            # rpc.Dial
    async def connect_http(url, path="/_goRPC_", **opts)             # rpc.DialHTTP
    def accept_http_connect(server, transport, extra_bytes=b"") -> asyncio.Protocol

A client URL with a path (``gob://host:port/_goRPC_``) dials through HTTP CONNECT to that path.
"""

from .client import GobClientConnection, connect
from .go_rpc import go_error
from .http_connect import CONNECTED_LINE, GO_RPC_PATH, accept_http_connect, connect_http
from .server import GobServerProtocol, make_server_protocol, serve

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
