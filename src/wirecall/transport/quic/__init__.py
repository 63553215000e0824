"""``quic://``: wirecall's native frames over QUIC (aioquic), one QUIC stream per call.

:mod:`.routing` (sans-IO: frames to streams), :mod:`.wire` (the transport the native classes
write to, the TLS configuration), :mod:`.server`, :mod:`.client`, :mod:`.certs`
(self-signed certificates for tests and demos). See ``docs/protocol-stack.md``.
"""

from .certs import write_self_signed
from .client import TICKETS, QuicClientConnection, connect
from .server import QuicListener, QuicSession, serve

__all__ = [
    "TICKETS",
    "QuicClientConnection",
    "QuicListener",
    "QuicSession",
    "connect",
    "serve",
    "write_self_signed",
]
