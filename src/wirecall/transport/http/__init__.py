"""HTTP/1.1 and WebSocket: JSON-RPC 2.0 (and Go's 1.0) at ``POST /jsonrpc``, ``/ws``, probes.

One module per job and side:

* :mod:`.server`: the HTTP/1.1 server (``serve``, ``make_server_protocol``): JSON-RPC POST,
  Go's HTTP+JSON bodies, ``/healthz`` and ``/readyz``, and the hand-offs of ``GET /ws``
  (Upgrade) to :mod:`.websocket` and of ``CONNECT /_goRPC_`` to the gob transport;
* :mod:`.websocket`: the WebSocket server (:class:`WebSocketSession`,
  :func:`current_websocket`);
* :mod:`.dispatch`: a JSON-RPC body -> the server's dispatch -> the response body (both
  servers);
* :mod:`.client`: :class:`HttpConnection` and :func:`connect` (every client URL);
* :mod:`.ws_client`: :class:`WebSocketConnection`;
* :mod:`.common` (headers, the ``rpc.stream.*`` convention, batch elements) and
  :mod:`.responses` (the server's response bytes).
"""

from .client import HttpConnection, batch, connect
from .common import STREAM_WINDOW_INITIAL, BatchCall
from .dispatch import handle_body
from .server import HttpListener, HttpService, make_server_protocol, serve
from .websocket import WebSocketSession, current_websocket
from .ws_client import WebSocketConnection

__all__ = [
    "STREAM_WINDOW_INITIAL",
    "BatchCall",
    "HttpConnection",
    "HttpListener",
    "HttpService",
    "WebSocketConnection",
    "WebSocketSession",
    "batch",
    "connect",
    "current_websocket",
    "handle_body",
    "make_server_protocol",
    "serve",
]
