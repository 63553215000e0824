"""Blocking, thread-safe facade: the same client API for code that does not use asyncio.

``wirecall.sync.connect("tcp://...")`` gives a :class:`SyncClient`. For the native protocol
(``tcp://``, ``unix://``) it talks over blocking sockets with no event loop and no thread
hand-off on the way: the calling thread writes its request and, if no other thread is
reading, reads the replies itself and hands other threads theirs (leader/follower). Many
threads share one client with many calls in flight; ``go`` returns a
``concurrent.futures.Future`` (a small pump thread reads while only ``go`` calls wait).
Other schemes run the asyncio client on a private event-loop thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import random
import threading
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from . import codec as codecs
from .client import MAX_IN_FLIGHT, Client, call_options, check_timeout, stub_methods
from .cluster.client import ClusterClient
from .cluster.resolver import is_cluster_target
from .context import CURRENT
from .errors import DeadlineExceeded, RpcError, Unavailable, Unimplemented
from .interceptors import ClientCall
from .protocol import frames as fr
from .streaming.model import EOF
from .transport.base import CLIENT_OPTIONS, URL, parse_url
from .transport.native.blocking import BlockingConnection, ReplySlot

__all__ = ["SyncClient", "SyncStream", "connect"]

T = TypeVar("T")
_UNSET: Any = object()
_NO_MD: dict[str, str] = {}
SyncInterceptor = Callable[[ClientCall, Callable[[ClientCall], Any]], Any]


class _LoopThread:
    """A private event loop on a daemon thread, for schemes without a blocking transport."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name="wirecall-sync-loop")
        self.thread.start()

    def run(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro: Any) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.loop.is_running():
            self.loop.close()


class SyncStream:
    """Blocking handle on a streaming call (wraps the async ``ClientStream``)."""

    def __init__(self, bridge: _LoopThread, stream: Any) -> None:
        self._bridge = bridge
        self._st = stream

    def send(self, item: Any) -> None:
        self._bridge.run(self._st.send(item))

    def done_writing(self) -> None:
        self._bridge.run(self._st.done_writing())

    def recv(self) -> Any:
        """The next reply, or ``wirecall.streaming.EOF`` at the end."""
        return self._bridge.run(self._st.recv())

    def result(self) -> Any:
        return self._bridge.run(self._st.result())

    def initial_metadata(self) -> Any:
        return self._bridge.run(self._st.initial_metadata())

    @property
    def trailing_metadata(self) -> Any:
        return self._st.trailing_metadata

    def __iter__(self) -> Any:
        try:
            while True:
                item = self.recv()
                if item is EOF:
                    return
                yield item
        finally:
            if not self._st.done:  # the loop was left early (break, exception): cancel
                self.cancel()

    def cancel(self) -> None:
        self._bridge.loop.call_soon_threadsafe(self._st.cancel)

    def __del__(self) -> None:  # dropped unfinished: cancel the call (thread-safely)
        st = self.__dict__.get("_st")
        if st is not None and not st.done:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._bridge.loop.call_soon_threadsafe(st.cancel)

    def __enter__(self) -> SyncStream:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._st.done:
            self.cancel()


class SyncClient:
    """Blocking client; every method is safe to call from any thread."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float | None = 10.0,
        pool_size: int = 1,
        call_timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        interceptors: Sequence[SyncInterceptor] = (),
        codec: str | int | codecs.Codec = "msgpack",
        max_message_size: int = fr.DEFAULT_MAX_FRAME,
        keepalive: float | None = 30.0,
        idle_timeout: float | None = None,
        **options: Any,
    ) -> None:
        self.target = target
        cluster = is_cluster_target(target)  # static:// dns:// etcd:// zk://: on the loop thread
        self.url = URL(target.partition("://")[0]) if cluster else parse_url(target)
        self._keepalive = keepalive
        self._idle_timeout = idle_timeout
        self.call_timeout = call_timeout
        self.metadata = dict(metadata or {})
        self.interceptors = list(interceptors)
        self._connect_timeout = timeout
        self._codec = codecs.get(codec)
        self._max = max_message_size
        self._native = self.url.scheme in ("tcp", "unix")
        #: calls past this many in flight on one connection wait for a free slot, their
        #: deadline running: the rule of every wire (see wirecall.Client)
        chosen = options.pop("max_in_flight", None)
        self.max_in_flight = MAX_IN_FLIGHT if chosen is None else int(chosen)
        if self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {self.max_in_flight}")
        if chosen is not None and not self._native:
            options["max_in_flight"] = self.max_in_flight  # the async client applies it
        self._lock = threading.Lock()
        self._conns: list[BlockingConnection | None] = [None] * max(1, pool_size)
        self._retry_at = 0.0
        self._backoff = 0.0
        self._last_error: RpcError | None = None
        self._bridge: _LoopThread | None = None
        self._aclient: Client | None = None
        if self._native:
            if options:  # the blocking socket takes only the named parameters above
                raise ValueError(
                    f"{self.url.scheme}:// sync client does not accept option(s) "
                    f"{', '.join(repr(k) for k in sorted(options))}; accepted: codec, "
                    "idle_timeout, keepalive, max_in_flight, max_message_size, timeout (and "
                    "call_timeout, interceptors, metadata, pool_size)")
            self._conns[0] = self._dial()
        else:
            self._bridge = _LoopThread()
            # the facade's own defaults go only to transports that take them (a cluster's
            # wire is known later: its endpoints keep their own defaults); a value the
            # caller chose goes anyway (an inapplicable one is then an error naming it)
            accepted = CLIENT_OPTIONS.get(self.url.scheme)
            for key, value, default in (("keepalive", keepalive, 30.0),
                                        ("idle_timeout", idle_timeout, None),
                                        ("codec", codec, "msgpack")):
                if value is not None and (value != default or (not cluster and (
                        accepted is None or key in accepted))):
                    options.setdefault(key, value)
            # a ClusterClient has Client's calling API (duck-typed, see docs/cluster.md)
            try:
                aclient: Any = (ClusterClient if cluster else Client)(
                    target, pool_size=pool_size, connect_timeout=timeout, **options
                )
            except BaseException:  # an unknown option, a missing extra: no thread left
                self._bridge.stop()
                raise
            self._aclient = aclient
            try:
                self._bridge.run(aclient.connect())
            except BaseException:
                self.close()
                raise

    def _dial(self) -> BlockingConnection:
        try:
            c = BlockingConnection(self.url, self._codec, self._connect_timeout, self._max,
                                    self._keepalive, self._idle_timeout)
        except RpcError as exc:
            self._last_error = exc
            self._backoff = min(5.0, max(0.05, self._backoff * 2))
            self._retry_at = time.monotonic() + self._backoff * (0.5 + random.random() / 2)
            raise
        self._backoff = 0.0
        return c

    def _conn(self) -> BlockingConnection:
        conns = self._conns
        if len(conns) == 1:
            c = conns[0]
            if c is not None and c.check_alive():
                return c
        else:
            live = [c for c in conns if c is not None and not c.unusable and c.check_alive()]
            if live and (len(live) == len(conns) or min(x.pending for x in live) == 0):
                return min(live, key=lambda x: x.pending)
        with self._lock:
            for i, c in enumerate(conns):
                if c is None or c.unusable:
                    if time.monotonic() < self._retry_at:
                        live = [x for x in conns if x is not None and not x.unusable]
                        if live:
                            return live[0]
                        raise Unavailable(
                            message=f"{self.url}: reconnecting; last error: "
                            f"{self._last_error.message if self._last_error else '-'}"
                        )
                    if c is not None:
                        c.close()
                    conns[i] = self._dial()
                    return conns[i]  # type: ignore[return-value]
            return min((c for c in conns if c is not None), key=lambda x: x.pending)

    def _wait_slot(self, conn: BlockingConnection, timeout: float | None, method: str) -> None:
        """Wait until ``conn`` has fewer than ``max_in_flight`` calls in flight (replies are
        read meanwhile by the threads waiting for them, or the pump for ``go()`` futures);
        the call's deadline runs while it waits."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while conn.pending >= self.max_in_flight and not conn.unusable:
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceeded(
                    message=f"deadline exceeded before {method} was sent: {self.max_in_flight} "
                    "calls in flight on the connection")
            time.sleep(0.0005)

    def _prepare(
        self, method: str, timeout: float | None, metadata: Mapping[str, str] | None
    ) -> tuple[float | None, Mapping[str, str] | None]:
        return call_options(
            method, self.call_timeout if timeout is _UNSET else timeout, metadata, self.metadata
        )

    def call(
        self,
        method: str,
        /,
        *args: Any,
        timeout: float | None = _UNSET,
        metadata: Mapping[str, str] | None = None,
        result_type: Any = Any,
        **kwargs: Any,
    ) -> Any:
        """Call and block for the reply (Go's ``client.Call``)."""
        if kwargs and args:
            raise TypeError("pass positional or keyword arguments, not both")
        params: Any = kwargs if kwargs else args  # a tuple travels as an array
        if (
            self._native
            and not self.interceptors
            and not self.metadata
            and CURRENT.get() is None
        ):
            # the direct path: no interceptors, no default metadata, not inside a handler
            conn = self._conn()
            if timeout is _UNSET:
                timeout = self.call_timeout
            if timeout is not None:
                timeout = check_timeout(timeout)
            if conn.pending >= self.max_in_flight:
                self._wait_slot(conn, timeout, method)
            if timeout is None and not metadata:
                return conn.roundtrip(method, params, result_type)
            slot = ReplySlot(result_type)
            cid = conn.send(method, params, timeout, metadata, slot)
            return conn.wait(
                slot, cid, None if timeout is None else time.monotonic() + timeout, method
            )
        return self.invoke(method, params if kwargs else list(args), timeout=timeout,
                           metadata=metadata, result_type=result_type)

    def invoke(
        self,
        method: str,
        params: list[Any] | dict[str, Any],
        *,
        timeout: float | None = _UNSET,
        metadata: Mapping[str, str] | None = None,
        result_type: Any = Any,
    ) -> Any:
        tmo, md = self._prepare(method, timeout, metadata)
        if self.interceptors:
            cc = ClientCall(method, params, dict(md or _NO_MD), tmo, result_type)
            handler: Callable[[ClientCall], Any] = self._send_call
            for icpt in reversed(self.interceptors):
                handler = (lambda i, nxt: (lambda c: i(c, nxt)))(icpt, handler)
            return handler(cc)
        return self._do(method, params, tmo, md, result_type)

    def _send_call(self, cc: ClientCall) -> Any:
        return self._do(cc.method, cc.params, cc.timeout, cc.metadata, cc.result_type)

    def _do(self, method: str, params: Any, timeout: float | None,
            md: Mapping[str, str] | None, rtype: Any) -> Any:
        if self._native:
            conn = self._conn()
            if conn.pending >= self.max_in_flight:
                self._wait_slot(conn, timeout, method)
            slot = ReplySlot(rtype)
            cid = conn.send(method, params, timeout, md, slot)
            deadline = None if timeout is None else time.monotonic() + timeout
            return conn.wait(slot, cid, deadline, method)
        assert self._bridge is not None and self._aclient is not None
        return self._bridge.run(
            self._aclient.invoke(method, params, timeout=timeout, metadata=md, result_type=rtype)
        )

    def go(
        self,
        method: str,
        /,
        *args: Any,
        timeout: float | None = _UNSET,
        metadata: Mapping[str, str] | None = None,
        result_type: Any = Any,
        **kwargs: Any,
    ) -> concurrent.futures.Future[Any]:
        """Start a call and return a ``concurrent.futures.Future`` at once (Go's ``Go``)."""
        if kwargs and args:
            raise TypeError("pass positional or keyword arguments, not both")
        params: Any = kwargs if kwargs else list(args)
        tmo, md = self._prepare(method, timeout, metadata)
        if self._native:
            conn = self._conn()
            if conn.pending >= self.max_in_flight:
                self._wait_slot(conn, tmo, method)
            return conn.submit(method, params, tmo, md, result_type)
        assert self._bridge is not None and self._aclient is not None
        return self._bridge.submit(
            self._aclient.invoke(method, params, timeout=tmo, metadata=md, result_type=result_type)
        )

    def stub(self, api: Callable[..., T], name: str | None = None) -> T:
        """A typed blocking proxy (see :meth:`wirecall.Client.stub`): each method returns
        its value. For mypy, declare the blocking view's methods with plain ``def``
        (``def Add(self, args: Args) -> int``), in a class or a ``typing.Protocol``; an API
        declared with ``async def`` works at run time, but mypy then types the calls as
        coroutines (Python's types cannot turn one into the other)."""
        cls = typing.cast(type, api)
        service = name or getattr(cls, "__wirecall_service__", None) or cls.__name__
        methods = stub_methods(cls)
        client = self
        if isinstance(self._aclient, ClusterClient):
            self._aclient.stub(cls, service)  # registers the methods' @policy decorators

        class _SyncStub:
            def __getattr__(self, attr: str) -> Any:
                try:
                    sig, rtype = methods[attr]
                except KeyError:
                    raise AttributeError(f"{service} stub has no method {attr!r}") from None

                def call(*args: Any, **kwargs: Any) -> Any:
                    bound = sig.bind(*args, **kwargs)
                    return client.invoke(f"{service}.{attr}", list(bound.args), result_type=rtype)

                return call

        return typing.cast(T, _SyncStub())

    def stream(
        self,
        method: str,
        /,
        params: Any = None,
        *,
        timeout: float | None = _UNSET,
        metadata: Mapping[str, str] | None = None,
        result_type: Any = Any,
    ) -> SyncStream:
        """Open a streaming call (``docs/streaming.md``), blocking API: ``for reply in
        client.stream(...)``, ``send``, ``done_writing``, ``recv``, ``result``, ``cancel``.
        Streams run on the async client in a private loop thread (for every scheme)."""
        if timeout is _UNSET:
            timeout = self.call_timeout
        with self._lock:
            if self._bridge is None:
                self._bridge = _LoopThread()
            if self._aclient is None:
                opts: dict[str, Any] = {"codec": self._codec} if self._native else {}
                self._aclient = Client(self.target, connect_timeout=self._connect_timeout,
                                       metadata=self.metadata, max_message_size=self._max,
                                       **opts)
        bridge, aclient = self._bridge, self._aclient

        async def open_() -> Any:
            st = aclient.stream(method, params, timeout=timeout, metadata=metadata,
                                result_type=result_type)
            return st if hasattr(st, "_items") else await st

        return SyncStream(bridge, bridge.run(open_()))

    def batch(
        self,
        calls: Sequence[Any],
        *,
        timeout: float | None = _UNSET,
        metadata: Mapping[str, str] | None = None,
    ) -> list[Any]:
        """Blocking :meth:`wirecall.Client.batch`: one JSON-RPC batch (``http://``,
        ``ws://``); results in order, a failed element is its ``RpcError`` in place."""
        if self._native:
            raise Unimplemented(
                message=f"JSON-RPC batches need an http:// or ws:// client; the "
                f"{self.url.scheme}:// transport has none"
            )
        assert self._bridge is not None and self._aclient is not None
        tmo, md = self._prepare("batch", timeout, metadata)
        results: list[Any] = self._bridge.run(
            self._aclient.batch(calls, timeout=tmo, metadata=md)
        )
        return results

    def close(self) -> None:
        for c in self._conns:
            if c is not None:
                c.close()
        if self._aclient is not None and self._bridge is not None:
            with contextlib.suppress(Exception):
                self._bridge.run(self._aclient.close(), 5)
        if self._bridge is not None:
            self._bridge.stop()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(target: str, *, timeout: float | None = 10.0, **options: Any) -> SyncClient:
    """Dial ``target`` (dial timeout ``timeout``) and return a blocking :class:`SyncClient`."""
    return SyncClient(target, timeout=timeout, **options)
