"""Streaming calls, independent of the wire (see ``docs/streaming.md``).

:mod:`wirecall.streaming.model` holds the primitives every wire shares (what a transport may
import); :mod:`wirecall.streaming.handler` drives a streaming handler on the server side
(reached through :meth:`wirecall.Server.start_stream`, and not imported here, so that a
transport importing the model loads nothing of the server side). Users import from here.
"""

from .model import (
    EOF,
    ClientStream,
    Inbound,
    OnDone,
    PendingStream,
    ResponseMetadata,
    Send,
    bind_response_metadata,
    expire_later,
    flush_initial_metadata,
    reset_response_metadata,
    send_initial_metadata,
    set_trailing_metadata,
)

__all__ = [
    "EOF",
    "ClientStream",
    "Inbound",
    "OnDone",
    "PendingStream",
    "ResponseMetadata",
    "Send",
    "bind_response_metadata",
    "expire_later",
    "flush_initial_metadata",
    "reset_response_metadata",
    "send_initial_metadata",
    "set_trailing_metadata",
]
