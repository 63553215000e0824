"""Moved: :mod:`wirecall.transport.native`. This alias stays only until ``sniff.py`` (being
moved at the same time) names the new module; import ``wirecall.transport.native``."""

from .native import (
    ServerProtocol,
    TcpClientConnection,
    connect,
    error_from_frame,
    make_server_protocol,
    serve,
)

__all__ = [
    "ServerProtocol",
    "TcpClientConnection",
    "connect",
    "error_from_frame",
    "make_server_protocol",
    "serve",
]
