"""The Server: one registry, one dispatch path, many listeners.

A transport sees the server only through the dispatch seam (:class:`wirecall.seam.Dispatcher`,
which :class:`Server` implements): it looks methods up and starts unary calls
(:meth:`Server.start_call`) and streams (:meth:`Server.start_stream`); the native protocol
also runs entries of the fast lane the server builds (:meth:`Server.fast_lane`). Which path a
call takes (inline on the calling stack, a task, a worker thread, the fast lane) is decided
here, once, for every wire, so a service registered once is reachable on every listener and
server interceptors see every call. :meth:`Server.dispatch` is the ``await``-able form.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import secrets
import signal
import sys
import time
import traceback
import types
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .context import CURRENT, Context
from .errors import (
    Cancelled,
    DeadlineExceeded,
    Internal,
    RpcError,
    Unavailable,
    Unimplemented,
    wrong_mode,
)
from .interceptors import CallObserver, ServerCall, ServerInterceptor, chain
from .limits import DEFAULT_LIMITS, Limits
from .seam import Dispatcher, FastEntry, MethodInfo, OnDone, Send
from .service import MethodSpec, ServiceRegistry
from .streaming.handler import start_stream
from .transport.base import Listener, check_options, load_transport, parse_url

__all__ = ["Server"]

log = logging.getLogger("wirecall.server")


class Server:
    """Register services, listen on addresses, dispatch calls, shut down gracefully.

    An unexpected handler exception reaches the caller as ``INTERNAL: internal error (ref
    R)``; the server logs the exception (``wirecall.server``, ERROR) with the same ``ref=R``.
    ``debug=True`` sends the exception's type and message, and its traceback in the details.
    ``max_workers`` sizes the thread pool for plain ``def`` handlers.
    """

    def __init__(
        self,
        *,
        interceptors: Sequence[ServerInterceptor] = (),
        debug: bool = False,
        max_workers: int = 64,
        max_message_size: int = 4 * 1024 * 1024,
        keepalive: float | None = 30.0,
        idle_timeout: float | None = None,
        drain_timeout: float = 10.0,
        max_concurrent_calls: int = 1024,
        options: dict[str, Any] | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.registry = ServiceRegistry()
        self._interceptors: list[ServerInterceptor] = list(interceptors)
        self._observers: list[CallObserver] = []
        self.debug = debug
        self.max_message_size = max_message_size
        self.keepalive = keepalive
        self.idle_timeout = idle_timeout
        self.drain_timeout = drain_timeout
        #: calls (and streams) one connection may have in flight; more are refused with
        #: RESOURCE_EXHAUSTED (inline handlers finish at once and do not count)
        self.max_concurrent_calls = max_concurrent_calls
        if limits is not None and not isinstance(limits, Limits):
            raise TypeError(f"limits must be a wirecall.Limits, got {type(limits).__name__}")
        #: the per-connection budgets every wire enforces (docs/limits.md)
        self.limits: Limits = limits or DEFAULT_LIMITS
        self.options: dict[str, Any] = dict(options or {})
        self.listeners: list[Listener] = []
        self._executor: ThreadPoolExecutor | None = None
        self._max_workers = max_workers
        self._inflight = 0
        self._drained: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._closed: asyncio.Event | None = None
        #: awaited first by close(), while the server still serves: deregistration
        self._before_drain: list[Callable[[], Coroutine[Any, Any, None]]] = []
        #: seconds of a hand-over at close() (0: none): after it stops accepting, connections
        #: accepted just before get this long to send their first calls before the GOAWAY,
        #: then clients get up to this long to acknowledge a two-step GOAWAY (calls they
        #: sent meanwhile are served, not refused). ``wirecall serve --workers`` sets it, so a
        #: retiring worker loses no call (docs/workers.md)
        self.handoff = 0.0
        self.registry.register_function(self._describe, name="rpc.describe")
        # rpc.discover (the OpenRPC document) answers on every wire, as rpc.describe does
        from .observability.openrpc import register_discover

        register_discover(self)

    # -- registration -----------------------------------------------------------------

    def register(self, obj: Any, name: str | None = None) -> Server:
        """Expose ``obj``'s public methods as ``Name.Method`` (or a function under its name)."""
        self.registry.register(obj, name)
        return self

    def register_function(self, func: Callable[..., Any], name: str | None = None) -> Server:
        self.registry.register_function(func, name)
        return self

    def add_interceptor(self, interceptor: ServerInterceptor) -> None:
        self._interceptors.append(interceptor)
        self._clear_lanes()  # calls with an interceptor never take the fast lane

    def add_observer(self, observer: CallObserver) -> None:
        """Watch every call (metrics, tracing, access log): see ``interceptors.CallObserver``.
        Calls stay on their path (inline, task, thread, the native fast lane: an observer
        without ``fast_handler`` is run around a fast-lane handler by ``_observed_fast``)."""
        self._observers.append(observer)
        self._clear_lanes()

    def remove_observer(self, observer: CallObserver) -> None:
        self._observers.remove(observer)
        self._clear_lanes()

    @property
    def observers(self) -> tuple[CallObserver, ...]:
        return tuple(self._observers)

    def _start_observed(
        self, method: str | MethodInfo, params: Any, ctx: Context, on_done: OnDone, stream: Any
    ) -> Any:
        """(Run inside a copy of the context:) let each observer wrap ``on_done``, then start
        the call or the stream (``stream``: ``(inbound, send)`` or None for a unary call)."""
        name = method if isinstance(method, str) else method.name
        refused: RpcError | None = None
        for obs in self._observers:
            try:
                if stream is None:
                    on_done = obs.call_started(name, ctx, on_done)
                else:
                    on_done = obs.stream_started(name, ctx, on_done)
            except RpcError as exc:  # an observer refused the call (auth.Auth)
                refused = exc
        if refused is not None:  # (every other observer saw it start and sees it end)
            on_done(None, refused)
            return None
        if stream is None:
            return self.start_call(method, params, ctx, on_done, observed=True)
        return start_stream(self, method, params, ctx, stream[0], stream[1], on_done)

    @property
    def interceptors(self) -> tuple[ServerInterceptor, ...]:
        """The server interceptors, outermost first (add one with :meth:`add_interceptor`)."""
        return tuple(self._interceptors)

    def _describe(self) -> dict[str, Any]:
        """The registered services, their methods and signatures."""
        return self.registry.describe()

    @property
    def closing(self) -> bool:
        return self._closing

    # -- dispatch ---------------------------------------------------------------------

    def find(self, method: str) -> MethodSpec | None:
        """The method registered under ``method``, or None."""
        return self.registry.methods.get(method)

    def has_service(self, service: str) -> bool:
        """True when a service of that name is registered."""
        return service in self.registry.services

    def lookup(self, method: str) -> MethodSpec:
        """The method registered under ``method``; raises ``Unimplemented`` naming whether
        the service or only the method is unknown."""
        spec = self.registry.methods.get(method)
        if spec is None:
            svc, dot, _ = method.rpartition(".")
            if dot and svc not in self.registry.services:
                raise Unimplemented(message=f"unknown service {svc!r} (method {method!r})")
            raise Unimplemented(message=f"unknown method {method!r}")
        return spec

    def error_from(self, exc: BaseException, ctx: Context | None) -> RpcError:
        """Map any exception out of a handler to the RpcError the caller receives."""
        if isinstance(exc, RpcError):
            return exc
        if isinstance(exc, asyncio.CancelledError):
            if ctx is not None and ctx.expired:
                return DeadlineExceeded(message=f"deadline exceeded while serving {ctx.method}")
            if self._closing:
                return Unavailable(message="server is shutting down")
            return Cancelled(message="call cancelled")
        if isinstance(exc, TimeoutError) and ctx is not None and ctx.expired:
            return DeadlineExceeded(message=f"deadline exceeded while serving {ctx.method}")
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self.debug:  # the developer's own server: the detail travels
            return Internal(message=text, details="".join(traceback.format_exception(exc)))
        # the caller gets an opaque reference; the text stays in the server's log beside it
        ref = secrets.token_hex(6)
        method = ctx.method if ctx is not None else "?"
        log.error("internal error ref=%s in %s: %s", ref, method, text, exc_info=exc)
        return Internal(message=f"internal error (ref {ref})", details={"ref": ref})

    def fast_lane(self, codec_module: Any) -> Mapping[str, FastEntry | None]:
        """The fast lane for one msgspec codec module: see ``Dispatcher.fast_lane``."""
        lane = self.registry.lanes.get(codec_module)
        if lane is None:
            lane = self.registry.lanes[codec_module] = _FastLane(self, codec_module)
        return lane

    def fast_entry(self, method: str, codec_module: Any) -> FastEntry | None:
        """Decide whether ``method`` may take the fast lane of ``codec_module``: its entry
        ``(handler, params decoder)``, or None."""
        spec = self.registry.methods.get(method)
        if (
            spec is None
            or not spec.fast
            or codec_module is None
            or self._interceptors
            or self._closing
        ):
            return None
        dec = spec.array_decoder(codec_module)
        if dec is None:
            return None
        func: Callable[..., Any] | None = spec.func
        # observers keep the lane: each wraps the handler itself (CallObserver.fast_handler)
        # or is wrapped by _observed_fast; a guard (auth.Auth) wraps it innermost, so the
        # others see the calls it refuses
        for obs in reversed(sorted(self._observers, key=lambda o: getattr(o, "guard", False))):
            wrap = getattr(obs, "fast_handler", None)
            func = wrap(spec.name, func) if wrap is not None else _observed_fast(
                self, obs, spec.name, func)
            if func is None:
                return None
        return None if func is None else (func, dec)

    def _clear_lanes(self) -> None:
        for lane in self.registry.lanes.values():
            lane.clear()

    def start_call(
        self,
        method: str | MethodInfo,
        params: Any,
        ctx: Context,
        on_done: OnDone,
        observed: bool = False,
    ) -> None:
        """Run a call and report ``on_done(result, None)`` or ``on_done(None, RpcError)``.

        A cheap inline handler with no interceptors completes before this returns; anything
        else runs in a task that the server tracks (for deadlines, cancellation and drain).
        ``params`` is the wire form: a list (positional), a dict (named) or None.
        (One function on purpose: the general path of every wire runs it per call.)
        """
        if self._observers and not observed:
            contextvars.copy_context().run(
                self._start_observed, method, params, ctx, on_done, None)
            return
        try:
            spec = method if isinstance(method, MethodSpec) else self.lookup(
                method if isinstance(method, str) else method.name)
            ctx.method = spec.name
            if spec.mode != "unary":
                raise wrong_mode(spec.name, spec.mode)
            if self._closing:
                raise Unavailable(message="server is shutting down")
            if ctx.deadline is not None and ctx.expired:
                raise DeadlineExceeded(message=f"deadline exceeded before {spec.name} started")
            try:
                args, kwargs = spec.bind(params)
            except RpcError:
                raise
            except Exception as exc:  # a bug in binding is the caller's answer, not a crash
                raise self.error_from(exc, ctx) from None
            if spec.context_name is not None:
                kwargs[spec.context_name] = ctx
            if not spec.inline or spec.is_async or self._interceptors:
                self._spawn(spec, args, kwargs, ctx, on_done)
                return
            # inline: run now, on the calling stack (no task, no thread)
            token = CURRENT.set(ctx)
            try:
                result = spec.func(*args, **kwargs)
            except RpcError:
                raise
            except BaseException as exc:  # every failure goes to the caller
                raise self.error_from(exc, ctx) from None
            finally:
                CURRENT.reset(token)
        except RpcError as exc:
            on_done(None, exc)
            return
        on_done(result, None)

    def _spawn(
        self,
        spec: MethodSpec,
        args: list[Any],
        kwargs: dict[str, Any],
        ctx: Context,
        on_done: OnDone,
    ) -> None:
        """Start a call that is not run inline: its coroutine's first step runs now, on the
        calling stack (as Python 3.12's eager tasks do); one that finishes there is answered
        with no task, one that waits continues in a task (see :func:`_eager_step`)."""
        if spec.is_async and not self._interceptors:
            try:
                coro: Any = spec.func(*args, **kwargs)
            except Exception as exc:  # (as it would fail in the task: the caller's answer)
                on_done(None, self.error_from(exc, ctx))
                return
        else:
            coro = self._run(spec, args, kwargs, ctx)
        if type(coro) is not _CoroutineType:  # (an async generator...: fails when awaited)
            coro = _awaited(coro)
        elif _EAGER:
            loop = asyncio.get_running_loop()
            token = CURRENT.set(ctx)
            cv = contextvars.copy_context()
            CURRENT.reset(token)
            step = _eager_step(loop, coro, cv)
            if step is not None:
                task, result, err = step
                if task is None:  # it ended in its first step
                    if err is None:
                        on_done(result, None)
                        return
                    on_done(None, self.error_from(err, ctx))
                    if isinstance(err, (KeyboardInterrupt, SystemExit)):
                        raise err
                    return
                self._track(task, ctx, self._finisher(ctx, on_done))
                if ctx._cancelled:  # (ctx.cancel() during the first step found no task)
                    task.cancel()
                return
            # (None: started from inside a task, as Server.dispatch does: an ordinary task)
        self.spawn(coro, ctx, self._finisher(ctx, on_done))

    def _finisher(self, ctx: Context, on_done: OnDone) -> Callable[[asyncio.Task[Any]], None]:
        def finished(t: asyncio.Task[Any]) -> None:
            if t.cancelled():
                on_done(None, self.error_from(asyncio.CancelledError(), ctx))
            else:
                exc = t.exception()
                if exc is None:
                    on_done(t.result(), None)
                else:
                    on_done(None, self.error_from(exc, ctx))

        return finished

    def spawn(
        self,
        coro: Coroutine[Any, Any, Any],
        ctx: Context,
        finished: Callable[[asyncio.Task[Any]], None],
    ) -> asyncio.Task[Any]:
        """Run ``coro`` as a call's task: ``ctx`` is current in it and cancelled at its
        deadline, the task counts as in flight (drain waits for it, shutdown cancels it),
        and ``finished(task)`` runs when it ends. Unary calls and streams both go here."""
        loop = asyncio.get_running_loop()
        token = CURRENT.set(ctx)
        try:
            task = loop.create_task(coro)
        finally:
            CURRENT.reset(token)
        self._track(task, ctx, finished)
        return task

    def _track(
        self,
        task: asyncio.Task[Any],
        ctx: Context,
        finished: Callable[[asyncio.Task[Any]], None],
    ) -> None:
        """Count ``task`` in flight, cancel it at ``ctx``'s deadline, ``finished`` at its end."""
        ctx._task = task
        self._inflight += 1
        self._tasks.add(task)
        timer = None
        if ctx.deadline is not None:
            # ctx.expire: the task is cancelled and ctx.cancelled turns true, which is what a
            # handler running in a worker thread can see; the deadline counts as passed even
            # if the loop's clock fired a little early (DEADLINE_EXCEEDED, never CANCELLED)
            loop = task.get_loop()
            timer = loop.call_at(
                loop.time() + max(0.0, ctx.deadline - time.monotonic()), ctx.expire
            )

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            self._inflight -= 1
            if timer is not None:
                timer.cancel()
            finished(t)
            # the task's context holds ctx (CURRENT) and ctx held the task: a cycle that
            # kept the task and its result until the cyclic GC ran
            ctx._task = None
            if self._inflight == 0 and self._drained is not None:
                self._drained.set()

        task.add_done_callback(done)

    async def _run(
        self, spec: MethodSpec, args: list[Any], kwargs: dict[str, Any], ctx: Context
    ) -> Any:
        if not self._interceptors:
            return await self._invoke(spec, args, kwargs)
        call = ServerCall(spec, args, kwargs, ctx)
        return await chain(self._interceptors, self._invoke_call)(call)

    async def _invoke_call(self, call: ServerCall) -> Any:
        return await self._invoke(call.spec, call.args, call.kwargs)

    async def _invoke(self, spec: MethodSpec, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if spec.is_async:
            return await spec.func(*args, **kwargs)
        if spec.inline:
            return spec.func(*args, **kwargs)
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._max_workers, thread_name_prefix="wirecall")
        cv = contextvars.copy_context()
        return await loop.run_in_executor(
            self._executor, lambda: cv.run(spec.func, *args, **kwargs)
        )

    def start_stream(
        self,
        method: str | MethodInfo,
        params: Any,
        ctx: Context,
        inbound: AsyncIterator[Any] | None,
        send: Send,
        on_done: OnDone,
    ) -> asyncio.Task[Any] | None:
        """Run a streaming call (server, client or bidi stream): see ``wirecall.streaming``.

        ``inbound`` is the async iterator of client messages (None for a server stream),
        ``send`` the awaitable outbound sink; ``on_done(None, error_or_None)`` at the end.
        Returns the handler's task (None when the call was refused before it started).
        """
        if self._observers:
            task: asyncio.Task[Any] | None = contextvars.copy_context().run(
                self._start_observed, method, params, ctx, on_done, (inbound, send))
            return task
        return start_stream(self, method, params, ctx, inbound, send, on_done)

    async def dispatch(self, method: str, params: Any, ctx: Context | None = None) -> Any:
        """Await one call through the full dispatch path; raises :class:`RpcError`."""
        ctx = ctx if ctx is not None else Context(method)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(result: Any, exc: BaseException | None) -> None:
            if fut.done():
                return
            if exc is None:
                fut.set_result(result)
            else:
                fut.set_exception(exc)

        self.start_call(method, params, ctx, done)
        try:
            return await fut
        except asyncio.CancelledError:
            ctx.cancel()
            raise

    # -- listeners and lifecycle ------------------------------------------------------

    async def start(self, *urls: str, **options: Any) -> list[str]:
        """Listen on each URL (``tcp://127.0.0.1:0`` picks a free port); return real URLs."""
        out = []
        for text in urls:
            url = parse_url(text)
            mod = load_transport(url.scheme)
            check_options(url.scheme, "server", options)  # unknown or inapplicable: an error
            listener: Listener = await mod.serve(self, url, **options)
            self.listeners.append(listener)
            out.append(listener.url)
            log.info("listening on %s", listener.url)
        return out

    def before_drain(self, step: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Await ``step()`` first in :meth:`close`, before the server stops accepting."""
        self._before_drain.append(step)

    async def register_in(self, registry_url: str, service: str, **options: Any) -> Any:
        """Register this server's listeners under ``service`` in etcd or ZooKeeper
        (``etcd://host:port``, ``zk://host:port``); :meth:`close` then deregisters first,
        waits for clients to see it, and only then drains. Options: ``ttl``, ``weight``,
        ``zone``, ``version``, ``metadata``, ``id``, ``addrs``, ``advertise_host``,
        ``propagation_wait`` (docs/cluster.md). Returns the ``Registration``."""
        from .cluster.registration import register

        reg = await register(self, registry_url, service, **options)
        self.before_drain(reg.stop)
        return reg

    @property
    def urls(self) -> list[str]:
        return [lst.url for lst in self.listeners]

    async def serve_forever(self, *, handle_signals: bool = False) -> None:
        """Run until :meth:`close` (or SIGINT/SIGTERM when ``handle_signals``)."""
        if self._closed is None:
            self._closed = asyncio.Event()
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, lambda: asyncio.ensure_future(self.close()))
        await self._closed.wait()

    @property
    def inflight(self) -> int:
        return self._inflight

    async def close(self, drain_timeout: float | None = None) -> None:
        """Graceful shutdown: stop accepting, send GOAWAY, let in-flight calls finish
        (up to ``drain_timeout`` seconds), cancel what is left, close every connection."""
        if self._closing:
            if self._closed is not None:
                await self._closed.wait()
            return
        if self._closed is None:
            self._closed = asyncio.Event()
        timeout = self.drain_timeout if drain_timeout is None else drain_timeout
        steps, self._before_drain = self._before_drain, []
        for step in steps:  # e.g. leave the registry and let clients see it, still serving
            try:
                await step()
            except Exception:
                log.exception("shutdown step %r failed", step)
        for lst in self.listeners:
            await lst.stop_accepting()
        if self.handoff > 0:
            await asyncio.sleep(self.handoff)
        for lst in self.listeners:
            lst.goaway()
        if self.handoff > 0:
            await self._settle(self.handoff)
        self._closing = True
        self._clear_lanes()  # new calls now take the general path, which refuses them
        if self._inflight:
            self._drained = asyncio.Event()
            try:
                await asyncio.wait_for(self._drained.wait(), timeout)
            except TimeoutError:
                log.warning("drain timeout: cancelling %d call(s)", self._inflight)
                for t in list(self._tasks):
                    t.cancel()
                await asyncio.sleep(0)
        for lst in self.listeners:
            await lst.aclose()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._closed.set()

    async def _settle(self, limit: float) -> None:
        """Wait (up to ``limit`` s) until no connection still waits for its client to
        acknowledge a two-step GOAWAY (``drain_pending``: native and gRPC)."""
        end = time.monotonic() + limit
        while time.monotonic() < end and any(
            getattr(c, "drain_pending", False) or getattr(
                getattr(c, "conn", None), "drain_pending", False)
            for lst in self.listeners for c in list(getattr(lst, "connections", ()))
        ):
            await asyncio.sleep(0.005)

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# -- eager start of a call's coroutine ----------------------------------------------------
#
# Python 3.11 has no eager task factory; a call's coroutine is started here instead. The Task
# object is allocated first but not initialised (``Task.__new__``) and made the loop's
# current task for the first step, so what a handler asks of ``asyncio.current_task()``
# there (``asyncio.timeout``, ``TaskGroup``) is the task that will carry it on if it waits;
# only then is it initialised (``Task.__init__``, which schedules its first step) around a
# :class:`_Resume` of the same coroutine. A coroutine that finishes in its first step never
# becomes a task (no Task, no loop turn, no done callback). This relies on CPython 3.11's C
# Task tolerating ``current_task`` queries before ``__init__``; any other Python or Task
# implementation takes the ordinary path (3.12's own ``eager_start`` could serve there).

_CoroutineType = types.CoroutineType
try:
    from _asyncio import Task as _CTask
    from _asyncio import _enter_task, _leave_task
except ImportError:  # pragma: no cover - pure-Python asyncio
    _EAGER = False
else:
    _EAGER = sys.version_info[:2] == (3, 11) and asyncio.Task is _CTask


async def _awaited(obj: Any) -> Any:
    return await obj


def _eager_step(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], cv: contextvars.Context
) -> tuple[asyncio.Task[Any] | None, Any, BaseException | None] | None:
    """Run ``coro``'s first step in ``cv``: ``(task, None, None)`` when it waits (``task``
    carries it on), ``(None, result, None)`` or ``(None, None, exc)`` when it ended; None
    (nothing run) when a task is already running on this stack."""
    task: asyncio.Task[Any] = _CTask.__new__(_CTask)
    try:
        _enter_task(loop, task)
    except RuntimeError:
        return None
    try:
        waiting = cv.run(coro.send, None)
    except StopIteration as stop:
        return None, stop.value, None
    except BaseException as exc:  # every failure is the call's answer
        return None, None, exc
    finally:
        _leave_task(loop, task)
    task.__init__(_Resume(coro, waiting), loop=loop, context=cv)  # type: ignore[misc]
    return task, None, None


class _Resume(Coroutine[Any, Any, Any]):
    """The rest of a coroutine whose first step already ran: the task's first step hands
    the loop what the coroutine waits on (``waiting``); every later one goes to ``coro``."""

    __slots__ = ("_coro", "_first", "_waiting")

    def __init__(self, coro: Coroutine[Any, Any, Any], waiting: Any) -> None:
        self._coro = coro
        self._waiting: Any = waiting
        #: (the marker that the first step is still to hand over: None is a valid yield)
        self._first = True

    def send(self, value: Any) -> Any:
        if self._first:
            self._first = False
            waiting, self._waiting = self._waiting, None
            return waiting
        return self._coro.send(value)

    def throw(self, *exc: Any) -> Any:
        if self._first:  # cancelled before its first step: as if cancelled while waiting
            self._first = False
            waiting, self._waiting = self._waiting, None
            if isinstance(waiting, asyncio.Future):
                waiting.cancel()
        return self._coro.throw(*exc)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, Any]:
        return self._coro.__await__()

    def __getattr__(self, name: str) -> Any:  # cr_frame, __qualname__...: Task's repr, stack
        return getattr(self._coro, name)


def _observed_fast(
    server: Server, obs: CallObserver, method: str, handler: Callable[..., Any] | None
) -> Callable[..., Any] | None:
    """A fast-lane entry for an observer without ``fast_handler``: its ``call_started`` and
    the ``on_done`` it returns around the inline handler, in a copy of the contextvars context
    (as on the general path, so what it sets is seen by the handler and no further). The
    ``on_done`` it is given does nothing: the transport answers when the entry returns (so a
    call's ``response_size`` is not known yet when the observer's ``on_done`` runs)."""
    if handler is None:
        return None
    started = obs.call_started
    get_ctx = CURRENT.get
    copy = contextvars.copy_context

    def run(args: tuple[Any, ...]) -> Any:
        ctx = get_ctx()
        if ctx is None:  # not a call (a direct use of the entry): nothing to observe
            return handler(*args)
        done = started(method, ctx, _answered_later)  # (an RpcError refuses the call)
        try:
            result = handler(*args)
        except BaseException as exc:
            err = server.error_from(exc, ctx)  # what the caller gets, as on the general path
            done(None, err)
            if err is exc or not isinstance(exc, Exception):
                raise
            raise err from None
        done(result, None)
        return result

    def observed(*args: Any) -> Any:
        return copy().run(run, args)

    return observed


def _answered_later(result: Any, err: BaseException | None) -> None:
    """The ``on_done`` a fast-lane observer wraps: the transport answers after the entry."""


class _FastLane(dict[str, "FastEntry | None"]):
    """One codec's fast-lane table (``Server.fast_lane``): a miss is decided by the server
    and cached, so a transport's lookup is one dict subscript."""

    __slots__ = ("_module", "_server")

    def __init__(self, server: Server, module: Any) -> None:
        super().__init__()
        self._server = server
        self._module = module

    def __missing__(self, method: str) -> FastEntry | None:
        entry = self._server.fast_entry(method, self._module)
        # only registered names are remembered: a peer's unknown names must not pile up
        if entry is not None or method in self._server.registry.methods:
            self[method] = entry
        return entry


def _implements_the_seam(server: Server) -> Dispatcher:
    """(Never called: mypy checks here that :class:`Server` is a ``Dispatcher``.)"""
    return server
