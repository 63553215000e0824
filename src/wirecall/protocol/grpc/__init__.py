"""The gRPC-over-HTTP/2 protocol, sans-IO: bytes in, events out, bytes to send
(see ``docs/grpc.md`` and gRPC's PROTOCOL-HTTP2.md).

* :mod:`.headers`: the header grammar: ``grpc-timeout`` (``1S``, ``250m``...),
  ``grpc-status``/``grpc-message`` (percent-encoded), custom metadata with ``-bin`` (base64)
  values;
* :mod:`.messages`: length-prefixed messages (1-byte compressed flag, 4-byte big-endian length,
  payload; the size limit is checked on the prefix), gzip;
* :mod:`.events`: what the connection reports;
* :mod:`.connection`: :class:`GrpcConnection`, the HTTP/2 connection core (the only module
  that uses ``h2``).

No asyncio, socket or ssl here: :class:`GrpcConnection` is driven by
``wirecall.transport.grpc`` and by tests that play a raw HTTP/2 peer.
"""

from . import connection, events, headers, messages
from .connection import *  # noqa: F403
from .events import *  # noqa: F403
from .headers import *  # noqa: F403
from .messages import *  # noqa: F403

__all__: list[str] = []
__all__ += connection.__all__
__all__ += events.__all__
__all__ += headers.__all__
__all__ += messages.__all__
