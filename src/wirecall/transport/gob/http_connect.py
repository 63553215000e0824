"""Go's ``net/rpc`` over HTTP (``rpc.HandleHTTP`` / ``rpc.DialHTTP``): the CONNECT hand-off.

Go opens the gob stream with ``CONNECT /_goRPC_ HTTP/1.0`` and a blank line; the server
answers ``HTTP/1.0 200 Connected to Go RPC`` and both sides speak plain net/rpc from there.
Any ``gob://`` listener answers that preamble itself (:mod:`.server`); the HTTP listener reads
the request and hands the connection over with :func:`accept_http_connect`. The client:
:func:`connect_http` (``gob://host:port/_goRPC_`` dials the same way).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ...protocol.netrpc import CONNECTED_LINE, GO_RPC_PATH
from ..base import URL, parse_url
from .client import GobClientConnection, connect
from .server import GobServerProtocol

if TYPE_CHECKING:
    from ...seam import Dispatcher

__all__ = ["CONNECTED_LINE", "GO_RPC_PATH", "accept_http_connect", "connect_http"]


def accept_http_connect(
    server: Dispatcher, transport: asyncio.BaseTransport, extra_bytes: bytes = b"", **opts: Any
) -> asyncio.Protocol:
    """Serve Go's ``rpc.DialHTTP`` on a connection whose ``CONNECT /_goRPC_`` request (with
    its headers) an HTTP listener has already read: write Go's exact reply line, switch the
    connection to the gob server protocol, feed it ``extra_bytes``; return the protocol."""
    proto = GobServerProtocol(server, opts.pop("listener", None), http_connect=False, **opts)
    transport.write(CONNECTED_LINE)  # type: ignore[attr-defined]
    transport.set_protocol(proto)
    proto.connection_made(transport)
    if extra_bytes:
        proto.data_received(extra_bytes)
    return proto


async def connect_http(
    url: URL | str, path: str = GO_RPC_PATH, **opts: Any
) -> GobClientConnection:
    """``rpc.DialHTTP``: ``CONNECT /_goRPC_ HTTP/1.0``, expect ``200 Connected to Go RPC``."""
    u = parse_url(url, "gob") if isinstance(url, str) else url
    return await connect(u, http_path=path, **opts)
