"""gRPC over HTTP/2: ``grpc://`` (h2c, prior knowledge) and ``grpcs://`` (TLS with ALPN
``h2``). The protocol itself is :mod:`wirecall.protocol.grpc` (sans-IO); this package is its
asyncio side:

* :mod:`.server`: :class:`GrpcServerProtocol` and ``serve``, every call through the dispatch
  seam (:class:`wirecall.seam.Dispatcher`);
* :mod:`.client`: :class:`GrpcClientConnection` and ``connect``;
* :mod:`.calls`: the client's calls in flight (:class:`GrpcClientStream`);
* :mod:`.common`: what both sides share (the per-stream high-water mark, ALPN).

How messages become bytes (protobuf classes or a wirecall codec) is
:class:`wirecall.codec.protobuf.MessageWire`.
"""

from .calls import GrpcClientStream
from .client import GrpcClientConnection, connect, method_path
from .common import HIGH_WATER
from .server import GrpcServerProtocol, make_server_protocol, serve

__all__ = [
    "HIGH_WATER",
    "GrpcClientConnection",
    "GrpcClientStream",
    "GrpcServerProtocol",
    "connect",
    "make_server_protocol",
    "method_path",
    "serve",
]
