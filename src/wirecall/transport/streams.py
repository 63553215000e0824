"""Renamed: :mod:`wirecall.transport.sockets`. This alias stays only until every transport
imports the new name (the http/grpc/Go-wire modules are being moved at the same time)."""

from .sockets import (
    WRITE_BATCH,
    CoalescedWriter,
    ConnectionListener,
    PendingCalls,
    ServedConnection,
    dial,
    listen,
    peer_name,
    set_nodelay,
)

__all__ = ["WRITE_BATCH", "CoalescedWriter", "ConnectionListener", "PendingCalls",
           "ServedConnection", "dial", "listen", "peer_name", "set_nodelay"]
