"""Client and server interceptors (middleware).

An interceptor is ``async def icpt(call, proceed)``: it may read or change ``call`` (method,
args, metadata...), must ``return await proceed(call)`` to go on (or return/raise instead), and
sees the result or the error on the way back. The first interceptor in the list is outermost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from .context import Context
from .service import MethodSpec

__all__ = [
    "CallObserver",
    "ClientCall",
    "ClientInterceptor",
    "OnDone",
    "ServerCall",
    "ServerInterceptor",
    "chain",
]


class ServerCall:
    """A call as server interceptors see it. ``args``/``kwargs`` are already decoded."""

    __slots__ = ("args", "context", "kwargs", "method", "spec")

    def __init__(
        self, spec: MethodSpec, args: list[Any], kwargs: dict[str, Any], context: Context
    ) -> None:
        self.spec = spec
        self.method = spec.name
        self.args = args
        self.kwargs = kwargs
        self.context = context

    @property
    def metadata(self) -> Mapping[str, str]:
        return self.context.metadata


class ClientCall:
    """A call as client interceptors see it; ``metadata`` and ``timeout`` may be changed."""

    __slots__ = ("metadata", "method", "params", "result_type", "timeout")

    def __init__(
        self,
        method: str,
        params: list[Any] | dict[str, Any],
        metadata: dict[str, str],
        timeout: float | None,
        result_type: Any,
    ) -> None:
        self.method = method
        self.params = params
        self.metadata = metadata
        self.timeout = timeout
        self.result_type = result_type


#: how a call reports its end: ``on_done(result, None)`` or ``on_done(None, RpcError)``
OnDone = Callable[[Any, BaseException | None], None]


class CallObserver(Protocol):
    """Watches every call a server runs, without taking it off its path (``inline`` handlers
    stay on the calling stack, no task is added, the native fast lane stays open).

    ``Server.add_observer(obs)``: for each unary call ``call_started`` and for each stream
    ``stream_started`` gets the method name, the :class:`Context` (``ctx.transport`` names the
    wire, ``ctx.peer`` the peer) and the call's ``on_done``, and returns the ``on_done`` to use
    instead (which must call the one it got, exactly once). It runs inside a copy of the
    caller's ``contextvars`` context that the handler (its task, its worker thread) inherits,
    so an observer may set context variables (a tracing span) for the handler's onward calls.
    Observers are the cheap seam for metrics, tracing and access logs; interceptors remain the
    seam for code that changes calls.

    Refusing a call: ``call_started``/``stream_started`` may raise an :class:`RpcError`
    instead of returning; the server then reports it to ``on_done`` (as wrapped by the other
    observers, which all see the call start and end) and never starts the handler. That is how
    ``auth.Auth.install`` checks credentials without an interceptor. An observer with a true
    ``guard`` attribute has its ``fast_handler`` wrapper applied innermost, so the other
    observers' wrappers see the calls it refuses.

    Optional: ``fast_handler(method, handler) -> handler | None``. Without it, the server
    runs ``call_started`` and its ``on_done`` around a native fast-lane handler itself (in a
    copy of the context; the transport answers after that ``on_done``, so a call's
    ``response_size`` is not yet set there). With it, the server asks it once per method
    for a wrapper of the inline ``handler`` (called with the decoded arguments;
    ``current_context()`` is the call's Context; it must return the handler's result or
    raise its exception), or None to send the method through the general path.
    """

    def call_started(self, method: str, ctx: Context, on_done: OnDone) -> OnDone: ...

    def stream_started(self, method: str, ctx: Context, on_done: OnDone) -> OnDone: ...


ServerInterceptor = Callable[[ServerCall, Callable[[ServerCall], Awaitable[Any]]], Awaitable[Any]]
ClientInterceptor = Callable[[ClientCall, Callable[[ClientCall], Awaitable[Any]]], Awaitable[Any]]


def chain(
    interceptors: Sequence[Callable[[Any, Callable[[Any], Awaitable[Any]]], Awaitable[Any]]],
    final: Callable[[Any], Awaitable[Any]],
) -> Callable[[Any], Awaitable[Any]]:
    """Fold interceptors around ``final``; the first one is the outermost."""
    handler = final
    for icpt in reversed(interceptors):
        def make(i: Any, nxt: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
            async def step(call: Any) -> Any:
                return await i(call, nxt)

            return step

        handler = make(icpt, handler)
    return handler
