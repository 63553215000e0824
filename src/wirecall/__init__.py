"""wirecall: Go net/rpc's model in Python, over many wires."""

from .client import Call, Client, connect
from .context import Context, current_context
from .errors import (
    Cancelled,
    ConnectError,
    DeadlineExceeded,
    FrameTooLarge,
    Internal,
    InvalidArgument,
    NotFound,
    ProtocolError,
    ResourceExhausted,
    RpcError,
    Unavailable,
    Unimplemented,
)
from .server import Server
from .service import RegistrationError, method
from .status import Status
from .version import __version__

__all__ = [
    "Call",
    "Cancelled",
    "Client",
    "ConnectError",
    "Context",
    "DeadlineExceeded",
    "FrameTooLarge",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "ProtocolError",
    "RegistrationError",
    "ResourceExhausted",
    "RpcError",
    "Server",
    "Status",
    "Unavailable",
    "Unimplemented",
    "__version__",
    "connect",
    "current_context",
    "method",
]
