"""wirecall: Go net/rpc's model in Python, over many wires."""

from .client import Call, Client, connect
from .context import Context, current_context
from .errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    ConnectError,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    FrameTooLarge,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ProtocolError,
    ResourceExhausted,
    RpcError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
)
from .limits import Limits
from .server import Server
from .service import RegistrationError, method
from .status import Status
from .version import __version__

__all__ = [
    "Aborted",
    "AlreadyExists",
    "Call",
    "Cancelled",
    "Client",
    "ConnectError",
    "Context",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FrameTooLarge",
    "Internal",
    "InvalidArgument",
    "Limits",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ProtocolError",
    "RegistrationError",
    "ResourceExhausted",
    "RpcError",
    "Server",
    "Status",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "__version__",
    "connect",
    "current_context",
    "method",
]
