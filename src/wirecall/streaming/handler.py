"""The server-side stream driver: binds a streaming handler's arguments, runs it in a task
the server tracks, and sends what it produces. Reached only through
:meth:`wirecall.Server.start_stream` (``Dispatcher.start_stream`` for a transport)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Sequence
from typing import Any, Protocol

from ..context import Context
from ..errors import DeadlineExceeded, InvalidArgument, RpcError, Unavailable, wrong_mode
from ..interceptors import ServerCall, ServerInterceptor, chain
from ..seam import CLIENT_STREAM, SERVER_STREAM, UNARY, MethodInfo, OnDone, Send
from ..service import MethodSpec, stream_item

__all__ = ["StreamHost", "bind_stream_args", "start_stream", "stream_param"]


class StreamHost(Protocol):
    """What the driver needs of the server (:class:`wirecall.Server` is one)."""

    @property
    def interceptors(self) -> Sequence[ServerInterceptor]: ...

    @property
    def closing(self) -> bool: ...

    def lookup(self, method: str) -> MethodSpec: ...

    def error_from(self, exc: BaseException, ctx: Context | None) -> RpcError: ...

    def spawn(self, coro: Coroutine[Any, Any, Any], ctx: Context,
              finished: Callable[[asyncio.Task[Any]], None]) -> asyncio.Task[Any]: ...


def stream_param(spec: MethodSpec) -> str | None:
    """Name of the parameter that receives the inbound stream (client/bidi), if any."""
    for p in spec.params:
        if stream_item(p.type) is not None:
            return p.name
    if spec.mode not in (UNARY, SERVER_STREAM) and spec.params:
        return spec.params[0].name
    return None


def bind_stream_args(
    spec: MethodSpec, params: Any, inbound: AsyncIterator[Any] | None, ctx: Context
) -> tuple[list[Any], dict[str, Any]]:
    """Bind wire params plus the inbound iterator (by keyword) for a streaming handler."""
    name = stream_param(spec) if inbound is not None else None
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    others = [p for p in spec.params if p.name != name]
    if params is None or params == [] or params == {}:
        pass
    elif isinstance(params, (list, tuple)):
        if len(params) > len(others):
            raise InvalidArgument(
                message=f"{spec.name} takes {len(others)} argument(s), {len(params)} given"
            )
        for prm, val in zip(others, params, strict=False):
            kwargs[prm.name] = prm.convert(val)
    elif isinstance(params, dict):
        by = {p.name: p for p in others}
        if len(others) == 1 and not (params.keys() <= by.keys()):
            kwargs[others[0].name] = others[0].convert(params)
        else:
            for k, v in params.items():
                if k not in by:
                    raise InvalidArgument(message=f"unexpected argument {k!r} for {spec.name}")
                kwargs[k] = by[k].convert(v)
    else:
        raise InvalidArgument(message=f"params of {spec.name} must be an array or an object")
    for prm in others:
        if prm.required and prm.name not in kwargs:
            raise InvalidArgument(message=f"missing argument {prm.name!r} for {spec.name}")
    if name is not None:
        kwargs[name] = inbound
    if spec.context_name is not None:
        kwargs[spec.context_name] = ctx
    return args, kwargs


async def _drive(spec: MethodSpec, args: list[Any], kwargs: dict[str, Any], send: Send) -> Any:
    """Run a streaming handler to its end, sending what it produces."""
    if spec.mode == CLIENT_STREAM:
        result = spec.func(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        await send(result)
        return None
    out = spec.func(*args, **kwargs)
    if inspect.isawaitable(out):
        out = await out
    if isinstance(out, AsyncIterable):
        it = out.__aiter__()
        try:
            async for item in it:
                await send(item)
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()
    elif out is not None:
        for item in out:  # a plain iterable is accepted too
            await send(item)
    return None


def start_stream(
    server: StreamHost,
    method: str | MethodInfo,
    params: Any,
    ctx: Context,
    inbound: AsyncIterator[Any] | None,
    send: Send,
    on_done: OnDone,
) -> asyncio.Task[Any] | None:
    """Run a streaming call; report ``on_done(None, None)`` or ``on_done(None, RpcError)``.

    Server interceptors see streaming calls too: ``await proceed(call)`` drives the whole
    stream (every message sent) and returns ``None``; an interceptor that raises before
    proceeding refuses the call, and one that wraps ``proceed`` sees the stream's error.
    Returns the task (``None`` when the call was refused before it started).
    """
    try:
        spec = method if isinstance(method, MethodSpec) else server.lookup(
            method if isinstance(method, str) else method.name)
        ctx.method = spec.name
        if spec.mode == "unary":
            raise wrong_mode(spec.name, spec.mode)
        if server.closing:
            raise Unavailable(message="server is shutting down")
        if ctx.deadline is not None and ctx.expired:
            raise DeadlineExceeded(message=f"deadline exceeded before {spec.name} started")
        args, kwargs = bind_stream_args(spec, params, inbound, ctx)
    except RpcError as exc:
        on_done(None, exc)
        return None
    except Exception as exc:
        on_done(None, server.error_from(exc, ctx))
        return None

    async def run() -> Any:
        if not server.interceptors:
            return await _drive(spec, args, kwargs, send)
        call = ServerCall(spec, args, kwargs, ctx)

        async def final(c: ServerCall) -> Any:
            return await _drive(c.spec, c.args, c.kwargs, send)

        return await chain(server.interceptors, final)(call)

    def finished(t: asyncio.Task[Any]) -> None:
        if t.cancelled():
            on_done(None, server.error_from(asyncio.CancelledError(), ctx))
        else:
            exc = t.exception()
            on_done(None, None if exc is None else server.error_from(exc, ctx))

    return server.spawn(run(), ctx, finished)
