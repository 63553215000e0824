"""The asyncio client: ``call`` (Go's ``Call``), ``go`` (Go's ``Go`` + ``Done``), typed stubs.

Calling convention (the same on every wire)::

    await client.call("Calculator.Add", Args(A=10, B=5))       # one struct argument
    await client.call("Calculator.Add", {"A": 10, "B": 5})     # the same, as a dict
    await client.call("math.add", 1, 2)                        # several positional arguments
    await client.call("math.add", a=1, b=2)                    # named arguments
    await client.invoke("math.add", {"a": 1, "b": 2})          # explicit wire params

``timeout``, ``metadata`` and ``result_type`` are reserved keyword names on ``call``; use
:meth:`Client.invoke` to send arguments with those names.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib
import inspect
import typing
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, TypeVar

from .cluster import Pool
from .context import CURRENT
from .errors import ConnectError, DeadlineExceeded, InvalidArgument, Unimplemented
from .interceptors import ClientCall, ClientInterceptor, chain
from .protocol.frames import MAX_TIMEOUT
from .streaming.model import PendingStream
from .transport.base import ClientConnection, check_options, load_transport, parse_url

__all__ = [
    "MAX_IN_FLIGHT", "Call", "Client", "Stub", "check_timeout", "connect", "stub_methods",
]

T = TypeVar("T")

#: calls one client connection has in flight before more wait for a free slot (the server's
#: default ``max_concurrent_calls``); ``connect(url, max_in_flight=N)`` changes it
MAX_IN_FLIGHT = 1024
#: cluster target schemes -> the module whose ``connect(target, ...)`` serves them
CLUSTER_TARGETS = {s: "wirecall.cluster.client" for s in ("static", "dns", "etcd", "zk")}
_UNSET: Any = object()
_NO_MD: dict[str, str] = {}


def check_timeout(timeout: float | None) -> float | None:
    """Validate a call timeout: ``None`` or seconds >= 0; huge values mean no deadline."""
    if timeout is None:
        return None
    if not isinstance(timeout, (int, float)) or timeout != timeout or timeout < 0:
        raise InvalidArgument(message=f"timeout must be None or seconds >= 0, got {timeout!r}")
    return None if timeout >= MAX_TIMEOUT else float(timeout)


def call_options(
    method: str,
    timeout: float | None,
    metadata: Mapping[str, str] | None,
    defaults: Mapping[str, str],
) -> tuple[float | None, Mapping[str, str] | None]:
    """The timeout and metadata a call really goes out with (both clients use this).

    The client's default metadata is overlaid by the call's; a call made while serving a call
    (an onward call) inherits the remaining deadline (the smaller of it and ``timeout``) and
    the incoming metadata (explicit keys win).
    """
    timeout = check_timeout(timeout)
    md: Mapping[str, str] | None = metadata
    if defaults:
        md = {**defaults, **(metadata or _NO_MD)}
    ctx = CURRENT.get()
    if ctx is not None:
        remaining = ctx.time_remaining()
        if remaining is not None:
            if remaining <= 0:
                raise DeadlineExceeded(
                    message=f"{method}: the caller's deadline has already passed"
                )
            timeout = remaining if timeout is None else min(timeout, remaining)
        if ctx.metadata:
            md = {**ctx.metadata, **(md or _NO_MD)}
    return timeout, md


class Call:
    """An asynchronous call in flight (Go's ``*rpc.Call``).

    ``await call`` gives the reply or raises; ``call.done()`` polls; ``add_done_callback(fn)``
    calls ``fn(call)`` when it completes; ``reply`` / ``error`` read the outcome once done.
    """

    __slots__ = ("_task", "args", "method")

    def __init__(self, method: str, args: Any, task: asyncio.Future[Any]) -> None:
        self.method = method
        self.args = args
        self._task = task

    def done(self) -> bool:
        return self._task.done()

    def cancel(self) -> bool:
        return self._task.cancel()

    def cancelled(self) -> bool:
        return self._task.cancelled()

    def result(self) -> Any:
        """The reply (raises the call's error; ``InvalidStateError`` if not done)."""
        return self._task.result()

    @property
    def reply(self) -> Any:
        if not self._task.done() or self._task.cancelled() or self._task.exception():
            return None
        return self._task.result()

    @property
    def error(self) -> BaseException | None:
        if not self._task.done():
            return None
        if self._task.cancelled():
            return asyncio.CancelledError()
        return self._task.exception()

    def add_done_callback(self, fn: Callable[[Call], Any]) -> None:
        self._task.add_done_callback(lambda _t: fn(self))

    def __await__(self) -> Generator[Any, None, Any]:
        return self._task.__await__()

    def __repr__(self) -> str:
        state = "pending" if not self.done() else ("error" if self.error else "done")
        return f"<Call {self.method} {state}>"


class Client:
    """A client for one target address; many calls in flight over a pool of connections.

    ``Client(target)`` with a cluster target (``static://``, ``dns://``, ``etcd://``,
    ``zk://``) returns a ``wirecall.cluster.client.ClusterClient`` (the same calling API over
    many endpoints, docs/cluster.md), like :func:`connect`; it starts discovery on first use.
    """

    def __new__(cls, target: str, *args: Any, **options: Any) -> Client:
        scheme, sep, _ = target.partition("://") if isinstance(target, str) else ("", "", "")
        if sep and scheme in CLUSTER_TARGETS and cls is Client:
            # found by name (the cluster client is built on this module: no import cycle)
            cluster = importlib.import_module(CLUSTER_TARGETS[scheme])
            return typing.cast(Client, cluster.ClusterClient(target, *args, **options))
        return super().__new__(cls)

    def __init__(
        self,
        target: str,
        *,
        pool_size: int = 1,
        connect_timeout: float | None = 10.0,
        call_timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        interceptors: Sequence[ClientInterceptor] = (),
        **transport_options: Any,
    ) -> None:
        self.target = target
        self.url = parse_url(target)
        self.call_timeout = call_timeout
        self.metadata = dict(metadata or {})
        self.interceptors: list[ClientInterceptor] = list(interceptors)
        self._transport = load_transport(self.url.scheme)
        #: calls one connection may have in flight; more wait for a free slot (their deadline
        #: running), on every wire. Keep it at or below the server's max_concurrent_calls.
        self.max_in_flight = int(transport_options.pop("max_in_flight", MAX_IN_FLIGHT))
        if self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {self.max_in_flight}")
        self._slot_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        check_options(self.url.scheme, "client", transport_options)  # a typo is an error
        self._options = dict(transport_options)
        self._connect_timeout = connect_timeout
        self.pool = Pool(self._dial, pool_size, name=str(self.url))
        self._closed = False

    async def _dial(self) -> ClientConnection:
        conn: ClientConnection = await self._transport.connect(
            self.url, timeout=self._connect_timeout, **self._options
        )
        return conn

    async def connect(self) -> Client:
        """Dial now (every pool slot); raises :class:`ConnectError` if none can be dialled."""
        await self.pool.fill()
        return self

    # -- calls ---------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        /,
        *args: Any,
        timeout: float | None = _UNSET,
        metadata: Mapping[str, str] | None = None,
        result_type: Any = Any,
        **kwargs: Any,
    ) -> Any:
        """Call ``method`` and wait for the reply (Go's ``client.Call``)."""
        if kwargs:
            if args:
                raise TypeError("pass positional or keyword arguments, not both")
            params: Any = kwargs
        else:
            params = args  # a tuple: the fast path encodes it as an array as it is
        if self.interceptors or self.metadata or CURRENT.get() is not None:
            return await self.invoke(
                method, params if kwargs else list(args), timeout=timeout, metadata=metadata,
                result_type=result_type,
            )
        # the hot path: no interceptors, no default metadata, not inside a handler
        conn = self.pool.get_nowait()
        if conn is None:
            conn = await self.pool.get()
        if timeout is not _UNSET or self.call_timeout is not None:
            timeout = check_timeout(self.call_timeout if timeout is _UNSET else timeout)
        else:
            timeout = None
        if conn.pending >= self.max_in_flight:  # every slot taken: wait, the deadline running
            timeout = await self._wait_for_slot(conn, method, timeout)
        try:
            if conn.fast_start:
                cid, fut = conn.start(method, params, timeout, metadata, result_type)
                try:
                    return await fut
                except asyncio.CancelledError:
                    conn.abandon(cid)
                    raise
            return await conn.call(
                method, params if kwargs else list(args), timeout, metadata, result_type
            )
        except ConnectError as exc:
            return await self._resend(exc, conn, method, params if kwargs else list(args),
                                      timeout, metadata, result_type)
        finally:
            if self._slot_waiters:
                self._wake_slot_waiter()

    async def _resend(self, exc: ConnectError, conn: ClientConnection, method: str, params: Any,
                      timeout: float | None, metadata: Mapping[str, str] | None,
                      result_type: Any) -> Any:
        """A connection failed a call with :class:`ConnectError`: it was never sent (the
        connection was going away: a GOAWAY crossed it). Sent once more on a live
        connection, as grpc-go's transparent retry; any other failure is the caller's."""
        if self._closed or not conn.closed:
            raise exc
        again = await self.pool.get()
        if again is conn:
            raise exc
        return await again.call(method, params, timeout, metadata, result_type)

    async def _wait_for_slot(self, conn: ClientConnection, method: str,
                             timeout: float | None) -> float | None:
        """Wait until ``conn`` has fewer than ``max_in_flight`` calls in flight (the rule of
        every wire, as gRPC's MAX_CONCURRENT_STREAMS: a call past the limit queues, it is not
        refused); the deadline runs while waiting. Returns the time left."""
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout
        while conn.pending >= self.max_in_flight and not conn.closed:
            waiter: asyncio.Future[None] = loop.create_future()
            self._slot_waiters.append(waiter)
            try:
                if end is None:
                    await waiter
                else:
                    await asyncio.wait_for(waiter, max(0.0, end - loop.time()))
            except TimeoutError:
                raise DeadlineExceeded(
                    message=f"deadline exceeded before {method} was sent: {self.max_in_flight} "
                            "calls were in flight on the connection") from None
            finally:
                if not waiter.done():
                    waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._slot_waiters.remove(waiter)
        return None if end is None else max(0.0, end - loop.time())

    def _wake_slot_waiter(self) -> None:
        while self._slot_waiters:
            w = self._slot_waiters.popleft()
            if not w.done():
                w.set_result(None)
                return

    async def invoke(
        self,
        method: str,
        params: list[Any] | dict[str, Any],
        *,
        timeout: float | None = _UNSET,
        metadata: Mapping[str, str] | None = None,
        result_type: Any = Any,
    ) -> Any:
        """Call with explicit wire params (a list: positional, a dict: named)."""
        timeout, md = call_options(
            method, self.call_timeout if timeout is _UNSET else timeout, metadata, self.metadata
        )
        if self.interceptors:
            cc = ClientCall(method, params, dict(md or _NO_MD), timeout, result_type)
            return await chain(self.interceptors, self._send_call)(cc)
        conn = self.pool.get_nowait()
        if conn is None:
            conn = await self.pool.get()
        if conn.pending >= self.max_in_flight:
            timeout = await self._wait_for_slot(conn, method, timeout)
        try:
            return await conn.call(method, params, timeout, md, result_type)
        except ConnectError as exc:
            return await self._resend(exc, conn, method, params, timeout, md, result_type)
        finally:
            if self._slot_waiters:
                self._wake_slot_waiter()

    async def _send_call(self, cc: ClientCall) -> Any:
        conn = await self.pool.get()
        timeout = cc.timeout
        if conn.pending >= self.max_in_flight:
            timeout = await self._wait_for_slot(conn, cc.method, timeout)
        try:
            return await conn.call(cc.method, cc.params, timeout, cc.metadata, cc.result_type)
        except ConnectError as exc:
            return await self._resend(exc, conn, cc.method, cc.params, timeout, cc.metadata,
                                      cc.result_type)
        finally:
            if self._slot_waiters:
                self._wake_slot_waiter()

    def go(
        self,
        method: str,
        /,
        *args: Any,
        timeout: float | None = _UNSET,
        metadata: Mapping[str, str] | None = None,
        result_type: Any = Any,
        **kwargs: Any,
    ) -> Call:
        """Start a call and return at once (Go's ``client.Go``): await, poll or callback."""
        coro = self.call(
            method, *args, timeout=timeout, metadata=metadata, result_type=result_type, **kwargs
        )
        return Call(method, kwargs or args, asyncio.ensure_future(coro))

    def stub(self, api: Callable[..., T], name: str | None = None) -> T:
        """A typed proxy: ``calc = client.stub(CalculatorAPI)``; ``await calc.Add(args)``.

        ``api`` is a class or ``typing.Protocol`` whose methods are declared
        ``async def Add(self, args: Args) -> int``; calls go to ``<name>.Add`` where ``name``
        defaults to ``api.__wirecall_service__`` or the class name. Replies are decoded into
        the declared return type. (Typed as ``Callable[..., T]`` so a Protocol is accepted.)
        """
        return typing.cast(T, Stub(self, typing.cast(type, api), name))

    def stream(
        self,
        method: str,
        /,
        params: Any = None,
        *,
        timeout: float | None = _UNSET,
        metadata: Mapping[str, str] | None = None,
        result_type: Any = Any,
    ) -> Any:
        """Open a streaming call (see docs/streaming.md): ``params`` is the request of a server
        stream, an (async) iterable of requests, or None (then ``send``/``done_writing``).
        ``async for reply in client.stream(...)``; deadlines and metadata as for ``call``."""
        timeout, md = call_options(
            method, self.call_timeout if timeout is _UNSET else timeout, metadata, self.metadata
        )
        conn = self.pool.get_nowait()
        if conn is not None:
            return conn.open_stream(method, params, timeout, md, result_type)

        async def opener() -> Any:
            c = await self.pool.get()
            return c.open_stream(method, params, timeout, md, result_type)

        return PendingStream(opener)

    async def batch(
        self,
        calls: Sequence[Any],
        *,
        timeout: float | None = _UNSET,
        metadata: Mapping[str, str] | None = None,
    ) -> list[Any]:
        """Send ``calls`` as one JSON-RPC batch (``http://``, ``ws://`` clients).

        Elements are ``(method, params)``, ``(method, params, result_type)`` or
        ``wirecall.transport.http.BatchCall`` (``notify=True``: a notification). Results come
        in the order of ``calls``: a failed element is its ``RpcError`` in place (not raised),
        a notification's place is ``None``. Other transports raise ``Unimplemented``.
        Client interceptors do not see batches.
        """
        if timeout is _UNSET:
            timeout = self.call_timeout
        md: Mapping[str, str] | None = metadata
        if self.metadata:
            md = {**self.metadata, **(metadata or _NO_MD)}
        conn = self.pool.get_nowait()
        if conn is None:
            conn = await self.pool.get()
        send = getattr(conn, "batch", None)
        if send is None:
            raise Unimplemented(
                message=f"JSON-RPC batches need an http:// or ws:// client; the "
                f"{self.url.scheme}:// transport ({type(conn).__name__}) has none"
            )
        results: list[Any] = await send(calls, timeout=timeout, metadata=md)
        return results

    async def ping(self) -> float:
        conn = await self.pool.get()
        return await conn.ping()

    async def close(self) -> None:
        self._closed = True
        await self.pool.aclose()

    aclose = close

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<Client {self.target}>"


def stub_methods(api: type[Any]) -> dict[str, tuple[inspect.Signature, Any]]:
    out = {}
    for attr in dir(api):
        if attr.startswith("_"):
            continue
        fn = getattr(api, attr)
        if not callable(fn):
            continue
        try:
            hints = typing.get_type_hints(fn)
        except Exception:
            hints = {}
        sig = inspect.signature(fn)
        params = list(sig.parameters.values())
        if params and params[0].name == "self":
            sig = sig.replace(parameters=params[1:])
        out[attr] = (sig, hints.get("return", Any))
    return out


class Stub:
    """The typed proxy of :meth:`Client.stub` (and of the cluster client's): calls
    ``client.invoke("<service>.<method>", args, result_type=<declared return type>)``."""

    def __init__(self, client: Any, api: type[Any], name: str | None) -> None:
        self._client = client
        self._service = name or getattr(api, "__wirecall_service__", None) or api.__name__
        self._methods = stub_methods(api)

    def __getattr__(self, attr: str) -> Any:
        try:
            sig, rtype = self._methods[attr]
        except KeyError:
            raise AttributeError(f"{self._service} stub has no method {attr!r}") from None
        full = f"{self._service}.{attr}"
        client = self._client

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                bound = sig.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{full}: {exc}") from None
            return client.invoke(full, list(bound.args), result_type=rtype)

        call.__name__ = attr
        return call


async def connect(
    target: str,
    *,
    timeout: float | None = 10.0,
    pool_size: int = 1,
    call_timeout: float | None = None,
    interceptors: Sequence[ClientInterceptor] = (),
    metadata: Mapping[str, str] | None = None,
    **options: Any,
) -> Client:
    """Dial ``target`` within ``timeout`` seconds and return a connected :class:`Client`.

    ``tcp://host:port`` (native), ``unix:///path``, ``gob://``, ``jsonrpc://``, ``http://``,
    ``grpc://`` ... ``options`` go to the transport (``codec="json"``,
    ``max_message_size=...``, ``compress_threshold=...``, ``keepalive=...``).

    A cluster target (``static://h1:p1,h2:p2``, ``dns://name:port``, ``etcd://host:port/svc``,
    ``zk://host:port/svc``) returns a ``wirecall.cluster.client.ClusterClient``: the same
    calling API over many endpoints (docs/cluster.md); ``options`` may then also carry its
    own (``balancer=``, ``policies=``, ``zone=``...).
    """
    scheme, sep, _ = target.partition("://")
    if sep and scheme in CLUSTER_TARGETS:
        # found by name, like a transport: the cluster client is built on this module
        cluster = importlib.import_module(CLUSTER_TARGETS[scheme])
        return typing.cast(Client, await cluster.connect(
            target, timeout=timeout, pool_size=pool_size, call_timeout=call_timeout,
            interceptors=interceptors, metadata=metadata, **options))
    client = Client(
        target,
        pool_size=pool_size,
        connect_timeout=timeout,
        call_timeout=call_timeout,
        interceptors=interceptors,
        metadata=metadata,
        **options,
    )
    try:
        await client.connect()
    except BaseException:
        await client.close()
        raise
    return client

