"""The dispatch seam: everything a transport may ask of the server side, declared once.

A transport (``wirecall.transport.*``) receives a :class:`Dispatcher` (in practice the
:class:`wirecall.Server`) and talks to it only through the members below; it imports nothing
else from the server side (not ``server``, ``service``, ``interceptors`` or the stream
handler driver). Methods are seen through :class:`MethodInfo`, a read-only view of a
registered method. ``tests/unit/core/test_layers.py`` enforces the import rules.

Which path a call takes (a cheap inline handler on the calling stack, a task, a worker
thread, or the native protocol's fast lane) is decided by the server, once, for every wire:
a transport only says "start this call" and is told when it is done. The one thing a
transport runs itself is an entry of the server's fast lane (:meth:`Dispatcher.fast_lane`):
the native protocol's hot loop, where one Python call more per request is measurable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .context import Context
    from .errors import RpcError
    from .limits import Limits

__all__ = [
    "BIDI_STREAM",
    "CLIENT_STREAM",
    "SERVER_STREAM",
    "UNARY",
    "Dispatcher",
    "FastEntry",
    "MethodInfo",
    "OnDone",
    "ParamInfo",
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
#: a fast-lane entry, ``(handler, params_decoder)``: see :meth:`Dispatcher.fast_lane`
FastEntry = tuple[Callable[..., Any], Any]


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

    # -- added for the Go wires (gob, Go JSON-RPC 1.0): Go passes exactly one argument ----
    #: True when the handler takes exactly one parameter (no ``*args``/``**kwargs``): Go's
    #: one argument is that parameter (its type: ``params[0].type``)
    single: bool

    @property
    def params(self) -> Sequence[ParamInfo]:
        """The handler's parameters in order (Context excluded): the Go wires decode their
        one argument into ``params[0].type``, and pass none when there are no parameters."""
        ...


class ParamInfo(Protocol):
    """One parameter of a registered method as a transport sees it
    (``wirecall.service.Param``); added for the Go wires, see :attr:`MethodInfo.params`."""

    @property
    def name(self) -> str: ...

    @property
    def type(self) -> Any:
        """The annotation (``Any`` when there is none)."""
        ...


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
    #: the other per-connection budgets (docs/limits.md)
    limits: Limits

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

    def fast_lane(self, codec_module: Any) -> Mapping[str, FastEntry | None]:
        """The fast lane for one msgspec codec module (``msgspec.msgpack``, ``msgspec.json``;
        None for any other codec): method name -> a ready-to-run entry, or None where the call
        must go through :meth:`start_call`.

        The server decides, once per method, which calls may take it: an inline ``def``
        handler taking no Context, every parameter positional and required, no interceptor,
        the server not shutting down. Reading a name never raises (a miss is decided and
        cached); the mapping is shared and emptied whenever methods or interceptors change
        or shutdown begins, so hold the mapping, never an entry.

        Running an entry ``(handler, decoder)`` for a call with params array ``body`` is the
        transport's inner loop, with no call into the server: ``args = decoder.decode(body)``
        (on ``msgspec.DecodeError``/``ValidationError`` take :meth:`start_call` instead, which
        reports bad params with the documented messages); then, with the call's
        :class:`~wirecall.context.Context` set in :data:`wirecall.context.CURRENT`,
        ``result = handler(*args)``; any exception is the caller's answer, mapped through
        :meth:`error_from`. Semantics are those of :meth:`start_call` for the same call.
        """
        ...

    def start_call(self, method: str | MethodInfo, params: Any, ctx: Context,
                   on_done: OnDone) -> None:
        """Run a unary call; ``on_done`` is called exactly once (maybe before this returns).

        The server chooses how: a cheap inline handler (with no interceptor) runs now, on
        the calling stack, and ``on_done`` is called before this returns; anything else runs
        in a task (or a worker thread) the server tracks for deadline, cancellation and drain.
        ``params`` is the wire form: a list (positional), a dict (named) or None. Cancel a
        running call with ``ctx.cancel()``."""
        ...

    def start_stream(self, method: str | MethodInfo, params: Any, ctx: Context,
                     inbound: AsyncIterator[Any] | None, send: Send, on_done: OnDone) -> Any:
        """Run a streaming call: ``inbound`` carries client messages (None for a server
        stream; a :class:`wirecall.streaming.model.Inbound` the transport feeds), ``send``
        takes each reply; ``on_done(None, error_or_None)`` at the end. The handler's task is
        the server's (deadline, drain, interceptors); ``ctx.cancel()`` cancels it. Returns
        the task, or None when the call was refused before it started."""
        ...

    def error_from(self, exc: BaseException, ctx: Context | None) -> RpcError:
        """The :class:`RpcError` a caller receives for ``exc`` (internal text stays here)."""
        ...
