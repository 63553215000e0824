"""The dispatch seam: everything a transport may ask of the server side, declared once.

A transport (``wirecall.transport.*``) receives a :class:`Dispatcher` (in practice the
:class:`wirecall.Server`) and talks to it only through the members below; it imports nothing
else from the server side (not ``server``, ``service``, ``interceptors`` or the stream
handler driver). Methods are seen through :class:`MethodInfo`, a read-only view of a
registered method. ``tests/unit/core/test_layers.py`` enforces the import rules.

Which path a call takes (a cheap inline handler on the calling stack, a task, a worker
thread, or the native protocol's fast lane) is decided by the server, once, for every wire:
a transport only says "start this call" and is told when it is done.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .context import Context
    from .errors import RpcError

__all__ = [
    "BIDI_STREAM",
    "CLIENT_STREAM",
    "SERVER_STREAM",
    "UNARY",
    "Dispatcher",
    "MethodInfo",
    "OnDone",
    "Send",
]

#: call modes (``MethodInfo.mode``)
UNARY = "unary"
SERVER_STREAM = "server_stream"
CLIENT_STREAM = "client_stream"
BIDI_STREAM = "bidi_stream"

#: ``on_done(result, None)`` or ``on_done(None, RpcError)``: how a call's end is reported
OnDone = Callable[[Any, "BaseException | None"], None]
#: the awaitable outbound sink of a streaming call (waits while the peer's window is closed)
Send = Callable[[Any], Awaitable[None]]


class MethodInfo(Protocol):
    """A registered method as a transport sees it (``wirecall.service.MethodSpec``)."""

    #: the registered name, ``Service.Method`` (or a plain function's name)
    name: str
    #: UNARY, SERVER_STREAM, CLIENT_STREAM or BIDI_STREAM (from the handler's type hints)
    mode: str
    #: the type one request message decodes into (``Any`` when the method takes several)
    request_type: Any
    #: the type of the reply (of each streamed reply)
    result_type: Any
    #: (request class, response class, mode) of a method generated from a ``.proto``
    #: (protobuf messages decode into these), None for any other method
    proto: tuple[Any, Any, str] | None


class Dispatcher(Protocol):
    """What a transport may ask of the server: look up, start, map errors, read limits."""

    #: the largest message a peer may send (refused before it is buffered)
    max_message_size: int
    #: calls and streams one connection may have running at once
    max_concurrent_calls: int
    #: seconds between keepalive PINGs on an idle connection (None: off)
    keepalive: float | None
    #: seconds after which an idle connection is closed (None: never)
    idle_timeout: float | None

    @property
    def closing(self) -> bool:
        """True once graceful shutdown has begun (new calls get UNAVAILABLE)."""
        ...

    def find(self, method: str) -> MethodInfo | None:
        """The method registered under ``method``, or None."""
        ...

    def lookup(self, method: str) -> MethodInfo:
        """The method registered under ``method``; raises ``Unimplemented`` naming whether
        the service or only the method is unknown."""
        ...

    def has_service(self, service: str) -> bool:
        """True when a service of that name is registered."""
        ...

    def start_call(self, method: str | MethodInfo, params: Any, ctx: Context,
                   on_done: OnDone) -> None:
        """Run a unary call; ``on_done`` is called exactly once (maybe before this returns)."""
        ...

    def start_stream(self, method: str | MethodInfo, params: Any, ctx: Context,
                     inbound: AsyncIterator[Any] | None, send: Send, on_done: OnDone) -> Any:
        """Run a streaming call: ``inbound`` carries client messages (None for a server
        stream), ``send`` takes each reply; ``on_done(None, error_or_None)`` at the end."""
        ...

    def error_from(self, exc: BaseException, ctx: Context | None) -> RpcError:
        """The :class:`RpcError` a caller receives for ``exc`` (internal text stays here)."""
        ...
