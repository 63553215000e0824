"""Streaming calls on a cluster, retried as gRPC's A6 design retries them.

``ClusterClient.stream(...)`` returns a :class:`ClusterStream`: the API of
:class:`wirecall.streaming.ClientStream` (``async for``, ``recv``, ``send``, ``send_all``,
``done_writing``, ``result``, ``initial_metadata``, ``cancel``, ``aclose``, ``async with``),
over one endpoint at a time.

Until the call is **committed** an attempt that fails may be replaced by another on another
endpoint: the request of a server stream is sent again, and the messages a client or bidi
stream sent so far (kept in a buffer) are replayed, followed by the half-close if it was sent.
The call commits, and from then on its errors go to the caller, when

* a response message arrives (or the end of the stream, or the response headers are read
  with ``initial_metadata()``), or
* a client/bidi stream sends more than ``stream_buffer`` messages (256; the buffer is
  dropped: what went out can no longer be replayed).

Which failures are retried is the method's policy, as for unary calls: a method marked
idempotent with a :class:`RetryPolicy` (its statuses, attempts, backoff, the retry budget,
pushback, the deadline), or with a :class:`HedgePolicy` (then a failed attempt is replaced at
once, up to its ``max_attempts``: streams are not hedged in parallel). Any method is re-sent
when the attempt surely never left (no connection, breaker open, "server is shutting down").
Each attempt's outcome feeds the endpoint's breaker and outlier detection: a failed attempt
at once, a committed call when it ends (so a stream that answers and then breaks counts as a
failure; its own deadline or a cancel do not count; a half-open probe is decided by its first
answer). Latency is not sampled (a stream's duration says nothing of the endpoint's speed).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Generator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import Cancelled, ConnectError, RpcError, Unavailable
from ..status import Status
from ..streaming.model import EOF
from .balancer import hash_key
from .breaker import BreakerState
from .endpoint import EndpointState
from .policy import MethodPolicy, RetryPolicy, never_sent

if TYPE_CHECKING:
    from .client import ClusterClient

__all__ = ["STREAM_BUFFER", "ClusterStream"]

#: messages a client/bidi stream may send before it commits (A6's per-call buffer)
STREAM_BUFFER = 256
_FAILURES = frozenset({Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED, Status.INTERNAL,
                       Status.UNKNOWN, Status.DATA_LOSS})


def _streaming_in(params: Any) -> bool:
    return params is not None and (isinstance(params, AsyncIterable)
                                   or hasattr(params, "__next__"))


def retry_policy(pol: MethodPolicy) -> MethodPolicy | None:
    """The policy a stream attempt is retried by (a hedging policy becomes "replace a failed
    attempt at once"), or None: no retries."""
    if not pol.idempotent:
        return None
    if pol.retry is not None:
        return pol
    if pol.hedge is not None:
        h = pol.hedge
        return MethodPolicy(idempotent=True, retry=RetryPolicy(
            max_attempts=h.max_attempts, statuses=h.statuses, initial_backoff=0.0,
            max_backoff=0.0))
    return None


class ClusterStream:
    """One streaming call on a cluster (see the module docstring)."""

    def __init__(self, cluster: ClusterClient, method: str, params: Any,
                 timeout: float | None, metadata: Mapping[str, str] | None,
                 result_type: Any, buffer_limit: int = STREAM_BUFFER) -> None:
        self.method = method
        self._cluster = cluster
        self._pol = cluster.policy_for(method)
        self._retry = retry_policy(self._pol)
        streaming_in = _streaming_in(params)
        self._params = None if streaming_in else params  # a server stream's request
        self._md = metadata
        self._result_type = result_type
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._key: int | None = None
        if self._pol.hash_key is not None and self._params is not None:
            self._key = hash_key(self._pol.hash_key(self._params))
        elif metadata and "wirecall-hash-key" in metadata:
            self._key = hash_key(metadata["wirecall-hash-key"])
        self._limit = buffer_limit
        self._buffer: list[Any] = []  # requests sent while not committed
        self._carried = 0  # buffered requests written on the current attempt
        self._half_closed = self._params is not None  # a server stream's request is all
        self._end_sent = -1  # the attempt the half-close was written on
        self._committed = False
        self._failed: RpcError | None = None
        self._inner: Any = None  # the current attempt's ClientStream
        self._attempt_no = 0
        self._ep: EndpointState | None = None
        self._gen: int | None = None
        self._tried: list[EndpointState] = []
        self._attempts = 0  # attempts that may have reached a server
        self._reroutes = 0
        self._lock = asyncio.Lock()
        self._writer: asyncio.Task[None] | None = None
        if streaming_in:
            self.send_all(params)

    # -- attempts -------------------------------------------------------------------------

    async def _current(self) -> tuple[Any, int]:
        """The open attempt (opening the first one), once no recovery is under way."""
        if self._failed is not None:
            raise self._failed
        if self._inner is None or self._lock.locked():
            async with self._lock:
                if self._failed is not None:
                    raise self._failed
                if self._inner is None:
                    try:
                        await self._open()
                    except RpcError as exc:
                        await self._recover_locked(exc)
        return self._inner, self._attempt_no

    async def _open(self) -> None:
        cl = self._cluster
        self._ep = self._gen = None
        if not cl.live:
            await cl.connect()
        try:
            ep = cl.pick(self._pol, self._key, self._tried)
        except RpcError:
            if not self._tried:
                raise
            ep = cl.pick(self._pol, self._key)  # every endpoint tried: any usable one again
        self._tried.append(ep)
        gen = ep.breaker.allow()
        if gen is None:
            raise ConnectError(message=f"{ep.url}: circuit breaker open")
        self._ep, self._gen = ep, gen
        left = None
        if self._deadline is not None:
            left = max(0.0, self._deadline - time.monotonic())
        st = ep.client.stream(self.method, self._params, timeout=left, metadata=self._md,
                              result_type=self._result_type)
        if not hasattr(st, "_items"):  # a PendingStream: the connection is being dialled
            st = await st
        self._inner = st
        self._attempt_no += 1
        self._carried = 0
        while self._carried < len(self._buffer):  # replay (appends during it are carried)
            await st.send(self._buffer[self._carried])
            self._carried += 1
        if self._half_closed and self._params is None:
            await st.done_writing()
            self._end_sent = self._attempt_no

    async def _recover(self, exc: RpcError, attempt_no: int) -> None:
        """The attempt ``attempt_no`` failed with ``exc`` before the call committed: open
        another (unless someone already did), or raise ``exc``."""
        async with self._lock:
            if self._failed is not None:
                raise self._failed
            if attempt_no != self._attempt_no:
                return  # another task already replaced that attempt
            await self._recover_locked(exc)

    async def _recover_locked(self, exc: RpcError) -> None:
        while True:
            self._verdict(exc)
            if self._inner is not None and not self._inner.done:
                self._inner.cancel()
            delay = None if self._committed else self._retry_delay(exc)
            if delay is not None and self._deadline is not None and (
                    time.monotonic() + delay >= self._deadline):
                delay = None
            if delay is None:
                self._failed = exc
                raise exc
            if delay > 0:
                await asyncio.sleep(delay)
            if self._failed is not None:  # cancelled meanwhile
                raise self._failed
            try:
                await self._open()
                return
            except RpcError as again:
                exc = again

    def _retry_delay(self, exc: RpcError) -> float | None:
        cl, ep = self._cluster, self._ep
        if ep is None:
            return None  # no endpoint could be picked
        if never_sent(exc) and self._reroutes < len(cl.live):
            self._reroutes += 1
            cl.events.emit("reroute", ep.url, f"{self.method} (stream): {exc.status.name}")
            return 0.0
        self._attempts += 1
        pol = self._retry
        if pol is None or pol.retry is None:
            return None
        if exc.status in pol.retry.statuses:
            cl.budget.on_failure()
        return cl._retry_delay(pol, exc, self._attempts, f"{self.method} (stream)", ep)

    def _verdict(self, exc: RpcError | None) -> None:
        """The current attempt's outcome, once: the breaker's and outlier detection's."""
        ep, gen = self._ep, self._gen
        if ep is None or gen is None:
            return
        self._gen = None
        cl = self._cluster
        failed = exc is not None and exc.status in _FAILURES
        ep.stats.calls += 1
        if failed:
            ep.stats.failures += 1
        ep.breaker.record(gen, not failed)
        if cl.outlier is not None and (failed or ep.consecutive_failures):
            cl.outlier.on_result(ep, not failed, cl.live, time.monotonic())

    def _commit(self, answered: bool) -> None:
        if self._committed:
            return
        self._committed = True
        self._buffer = []
        if answered:
            self._cluster.budget.on_success()
            ep = self._ep
            if ep is not None and ep.breaker.state is not BreakerState.CLOSED:
                self._verdict(None)  # a half-open probe: answered, so close it now
            # otherwise the verdict waits for the end: a stream that answers, then breaks,
            # counts as a failure (recorded as a success now, it would reset the streak)

    def _ended(self, exc: RpcError | None) -> None:
        """The committed call ended: its outcome is the attempt's verdict, except its own
        deadline or a cancel (the caller's choice, not the endpoint's health)."""
        if exc is not None and exc.status in (Status.DEADLINE_EXCEEDED, Status.CANCELLED):
            self._gen = None
        self._verdict(exc)

    # -- the ClientStream API ---------------------------------------------------------

    async def recv(self) -> Any:
        """The next reply, or ``EOF``; raises the call's error once it is committed."""
        while True:
            st, n = await self._current()
            try:
                item = await st.recv()
            except RpcError as exc:
                if self._committed:
                    self._ended(exc)
                    raise
                await self._recover(exc, n)
                continue
            self._commit(True)
            if item is EOF:
                self._ended(None)
            return item

    async def send(self, item: Any) -> None:
        if self._half_closed:
            raise RuntimeError("send() after done_writing()")
        if self._committed:
            st, _ = await self._current()
            await st.send(item)
            return
        if len(self._buffer) >= self._limit:
            self._commit(False)  # too much to replay: no more retries
            st, _ = await self._current()
            await st.send(item)
            return
        idx = len(self._buffer)
        self._buffer.append(item)
        while True:
            st, n = await self._current()
            if self._carried > idx:
                return  # a replay carried it
            try:
                await st.send(item)
            except RpcError as exc:
                if st.done and st.error is None:
                    self._commit(True)  # the call ended, successfully, before this request
                if self._committed:
                    raise
                await self._recover(exc, n)
                continue
            self._carried = max(self._carried, idx + 1)
            return

    async def done_writing(self) -> None:
        """Half-close (sent again on a replacement attempt)."""
        if self._half_closed and self._end_sent == self._attempt_no:
            return
        self._half_closed = True
        while True:
            st, n = await self._current()
            if self._end_sent == n:
                return  # the replay sent it
            try:
                await st.done_writing()
            except RpcError as exc:
                if self._committed:
                    raise
                await self._recover(exc, n)
                continue
            self._end_sent = n
            return

    def send_all(self, items: AsyncIterable[Any] | Iterable[Any]) -> asyncio.Task[None]:
        """Send every item in the background, then half-close; if that fails the call is
        cancelled with the error (readers see it). The sender holds the stream only weakly
        while it waits for the next item, so a dropped stream is still collected."""
        self._writer = asyncio.get_running_loop().create_task(_pump(weakref.ref(self), items))
        self._writer.add_done_callback(_retrieve)
        weakref.finalize(self, self._writer.cancel)  # dropped: stop sending
        return self._writer

    async def result(self) -> Any:
        """The single reply of a unary or client-streaming call (half-closes first)."""
        if not self._half_closed and self._writer is None:
            await self.done_writing()
        first = await self.recv()
        if first is EOF:
            raise Unavailable(message=f"{self.method}: the server sent no reply")
        while await self.recv() is not EOF:  # the status; a late error overrides the reply
            pass
        return first

    async def initial_metadata(self) -> Mapping[str, Any]:
        while True:
            st, n = await self._current()
            md = await st.initial_metadata()
            if st.error is not None and not self._committed and not st._items:
                try:
                    await self._recover(st.error, n)
                except RpcError:
                    return dict(md)
                continue
            self._commit(True)
            return dict(md)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Any]:
        try:
            while True:
                item = await self.recv()
                if item is EOF:
                    return
                yield item
        finally:
            if not self.done:
                self.cancel()

    def __await__(self) -> Generator[Any, None, ClusterStream]:
        return self._opened().__await__()

    async def _opened(self) -> ClusterStream:
        await self._current()
        return self

    @property
    def done(self) -> bool:
        if self._failed is not None:
            return True
        st = self._inner
        return st is not None and st.done and (self._committed or st.error is None)

    @property
    def error(self) -> RpcError | None:
        if self._failed is not None:
            return self._failed
        return None if self._inner is None or not self.done else self._inner.error

    @property
    def trailing_metadata(self) -> Mapping[str, Any]:
        return {} if self._inner is None else self._inner.trailing_metadata

    @property
    def endpoint(self) -> str | None:
        """The url of the endpoint the current attempt runs on."""
        return None if self._ep is None else self._ep.url

    def cancel(self) -> None:
        """Cancel the call (and any attempt in flight)."""
        self._cancel_with(Cancelled(message=f"{self.method}: cancelled by the client"))

    def _cancel_with(self, err: RpcError) -> None:
        if self._failed is None and not self.done:
            self._failed = err
        self._committed = True
        self._buffer = []
        if self._inner is not None and not self._inner.done:
            self._inner.cancel()
        if self._writer is not None and not self._writer.done() and (
                self._writer is not asyncio.current_task()):
            self._writer.cancel()

    async def aclose(self) -> None:
        if not self.done:
            self.cancel()
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()
            await asyncio.wait([self._writer])
        if self._inner is not None:
            await self._inner.aclose()

    async def __aenter__(self) -> ClusterStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _pump(ref: weakref.ref[ClusterStream],
                items: AsyncIterable[Any] | Iterable[Any]) -> None:
    """The body of :meth:`ClusterStream.send_all`."""
    try:
        if isinstance(items, AsyncIterable):
            async for item in items:
                if not await _send_weakly(ref, item):
                    return
        else:
            for item in items:
                if not await _send_weakly(ref, item):
                    return
        st = ref()
        if st is not None:
            await st.done_writing()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        st = ref()
        if st is not None and not st.done:
            err = exc if isinstance(exc, RpcError) else Cancelled(
                message=f"{st.method}: the requests to send raised {exc!r}")
            st._cancel_with(err)
        raise


async def _send_weakly(ref: weakref.ref[ClusterStream], item: Any) -> bool:
    st = ref()
    if st is None:
        return False
    await st.send(item)
    return True


def _retrieve(t: asyncio.Task[Any]) -> None:
    if not t.cancelled():
        t.exception()
