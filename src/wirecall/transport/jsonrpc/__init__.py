"""``jsonrpc://host:port``: Go's ``net/rpc/jsonrpc`` over TCP (``jsonrpc.ServeConn`` /
``jsonrpc.Dial``), both ends; and the tutorial's HTTP+JSON handler body semantics.

:mod:`.server` and :mod:`.client`; what they share with ``gob://`` is in
:mod:`wirecall.transport.gob.go_rpc`. Entry points::

    async def serve(server, url, **opts) -> Listener
    def make_server_protocol(server, **opts) -> asyncio.Protocol    # for the sniffing listener
    async def connect(url, **opts) -> GoJsonClientConnection
    async def handle_http_body(server, body, peer="") -> bytes
        # the tutorial's 2.2.1 handler: jsonrpc.ServeConn over one POST body; returns the
        # response body (one JSON line per request, in completion order)
    def start_go_json_call(server, obj, peer, reply) -> None
        # one decoded request object -> reply(bytes of the response line), Go's semantics
"""

from .client import GoJsonClientConnection, connect
from .server import (
    GoJsonServerProtocol,
    handle_http_body,
    make_server_protocol,
    serve,
    start_go_json_call,
)

__all__ = [
    "GoJsonClientConnection",
    "GoJsonServerProtocol",
    "connect",
    "handle_http_body",
    "make_server_protocol",
    "serve",
    "start_go_json_call",
]
