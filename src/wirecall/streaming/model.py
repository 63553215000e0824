"""The stream model every wire shares (see ``docs/streaming.md``): what a transport may import.

Modes come from the handler's type hints (``MethodSpec.mode``)::

    async def LotsOfReplies(self, req: Req) -> AsyncIterator[Reply]: ...        # server stream
    async def LotsOfGreetings(self, reqs: AsyncIterator[Req]) -> Reply: ...       # client stream
    async def BidiHello(self, reqs: AsyncIterator[Req]) -> AsyncIterator[Reply]: ...  # bidi

(an ``async def`` with ``yield`` is a server stream even without a return annotation).

Server side: a transport calls ``Dispatcher.start_stream`` (:mod:`wirecall.seam`) with the
wire params (server stream), an :class:`Inbound` it feeds with decoded messages (client/bidi
stream), an ``async send(item)`` that encodes one outbound message and waits while the peer's
window is closed (backpressure), and ``on_done(None, error_or_None)``. The handler runs in a
task the server tracks (drain, deadline, cancellation), through the server interceptors
(the driver is :mod:`wirecall.streaming.handler`, on the server side).

Client side: a transport subclasses :class:`ClientStream` and feeds it; users get
``async for reply in stream``, ``await stream.send(x)``, ``await stream.done_writing()``,
``await stream.recv()``, ``await stream.result()`` and ``stream.cancel()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import weakref
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from typing import Any, Generic, TypeVar

from ..errors import Cancelled, DeadlineExceeded, RpcError, Unavailable
from ..seam import OnDone, Send

__all__ = [
    "EOF",
    "ClientStream",
    "Inbound",
    "OnDone",
    "PendingStream",
    "ResponseMetadata",
    "Send",
    "bind_response_metadata",
    "expire_later",
    "flush_initial_metadata",
    "reset_response_metadata",
    "send_initial_metadata",
    "set_trailing_metadata",
]

T = TypeVar("T")


class _EOF:
    __slots__ = ()

    def __repr__(self) -> str:
        return "EOF"

    def __bool__(self) -> bool:
        return False


#: returned by :meth:`ClientStream.recv` once the server has finished sending
EOF: Any = _EOF()


# -- response metadata, set by handlers ---------------------------------------------------


class ResponseMetadata:
    """Metadata a handler sends back: ``initial`` (with the first message / headers) and
    ``trailing`` (with the status). Transports that have no headers ignore it."""

    __slots__ = ("flush", "initial", "sent", "trailing")

    def __init__(self) -> None:
        self.initial: dict[str, Any] = {}
        self.trailing: dict[str, Any] = {}
        self.sent = False
        #: set by a transport that can send the headers before the first message
        self.flush: Callable[[], None] | None = None


_response_md: contextvars.ContextVar[ResponseMetadata | None] = contextvars.ContextVar(
    "wirecall_response_metadata", default=None
)


def bind_response_metadata(md: ResponseMetadata) -> contextvars.Token[ResponseMetadata | None]:
    """Transports: make ``md`` the holder of the call started next (before start_call)."""
    return _response_md.set(md)


def reset_response_metadata(token: contextvars.Token[ResponseMetadata | None]) -> None:
    _response_md.reset(token)


def send_initial_metadata(metadata: Mapping[str, Any]) -> None:
    """From a handler: metadata to send in the response headers (before the first message)."""
    md = _response_md.get()
    if md is None:
        raise RuntimeError("send_initial_metadata() outside a call on a transport with headers")
    if md.sent:
        raise RuntimeError("initial metadata was already sent")
    md.initial.update(metadata)


def flush_initial_metadata() -> bool:
    """From a handler: send the response headers now, before any message (gRPC: a HEADERS
    frame), e.g. to tell a subscriber its subscription is live. False on a wire without
    headers (nothing sent) or once they were sent."""
    md = _response_md.get()
    if md is None or md.flush is None or md.sent:
        return False
    md.flush()
    return True


def set_trailing_metadata(metadata: Mapping[str, Any]) -> None:
    """From a handler: metadata to send with the final status (gRPC trailers)."""
    md = _response_md.get()
    if md is None:
        raise RuntimeError("set_trailing_metadata() outside a call on a transport with headers")
    md.trailing.update(metadata)


# -- server side ----------------------------------------------------------------------------


class Inbound(Generic[T]):
    """The messages a client streams to a handler, as an async iterator.

    The transport ``put``s decoded messages with the flow-control credit they carry;
    ``on_consumed(credit)`` runs when the handler takes one, so a slow handler keeps the
    peer's window closed instead of growing a buffer. ``close()`` is the client's half-close,
    ``fail(exc)`` ends the iteration with an error (reset, connection lost).
    """

    __slots__ = ("_closed", "_error", "_items", "_on_consumed", "_waiter")

    def __init__(self, on_consumed: Callable[[int], None] | None = None) -> None:
        self._items: deque[tuple[Any, int]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._error: BaseException | None = None
        self._on_consumed = on_consumed

    def put(self, item: Any, credit: int = 0) -> None:
        if self._closed:
            return
        self._items.append((item, credit))
        self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    @property
    def buffered(self) -> int:
        return len(self._items)

    def __aiter__(self) -> Inbound[T]:
        return self

    async def __anext__(self) -> T:
        while not self._items:
            if self._error is not None:
                raise self._error
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item, credit = self._items.popleft()
        if credit and self._on_consumed is not None:
            self._on_consumed(credit)
        return item  # type: ignore[no-any-return]


# -- client side ----------------------------------------------------------------------------


class ClientStream(Generic[T]):
    """The client's handle on a streaming call (any of the three streaming modes).

    ``async for reply in stream`` (or ``await stream.recv()``, :data:`EOF` at the end) reads
    replies; ``await stream.send(x)`` sends one request and waits while the server's window is
    closed; ``await stream.done_writing()`` half-closes; ``await stream.result()`` is the one
    reply of a client-streaming call; ``stream.cancel()`` resets the call on both sides.
    An error status from the server is raised by whichever of these is waiting.
    Transports subclass it and implement :meth:`_write`, :meth:`_write_end`, :meth:`_abort`.

    Leaving early cancels the call: breaking out of ``async for``, leaving ``async with``, or
    dropping an unfinished stream (garbage collection; the transport holds it weakly and
    registers the wire-level cancel with :meth:`_cancel_on_collect`).
    """

    def __init__(self, method: str) -> None:
        self.method = method
        self._items: deque[tuple[Any, int]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._initial: asyncio.Future[Mapping[str, Any]] = (
            asyncio.get_running_loop().create_future()
        )
        self._done = False
        self._error: RpcError | None = None
        self._writing_done = False
        self._writer: asyncio.Task[None] | None = None
        self._collected: weakref.finalize[Any, Any] | None = None
        # background tasks wirecall runs for this stream (the request sender, ...): held here
        # and, once there is one, by a finalizer that cancels them if the stream is collected
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tasks_finalizer: weakref.finalize[Any, Any] | None = None
        self.trailing_metadata: Mapping[str, Any] = {}

    def _cancel_on_collect(self, abort: Callable[[], None]) -> None:
        """Transport hook: run ``abort()`` (on this loop, thread-safely) if the stream is
        garbage-collected before it ended. ``abort`` must not refer to the stream."""
        loop = asyncio.get_running_loop()

        def collected() -> None:  # may run in any thread, at any point: only schedule
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to cancel
                loop.call_soon_threadsafe(abort)

        self._collected = weakref.finalize(self, collected)

    def _own(self, task: asyncio.Task[Any]) -> asyncio.Task[Any]:
        """Transport hook: make ``task`` one of this stream's background tasks. It is kept
        alive until it finishes, its exception is retrieved (so it is never logged as
        destroyed while pending, or as an exception never retrieved), it is cancelled if the
        stream is garbage-collected, and :meth:`aclose` cancels and awaits it. The task must
        hold the stream only weakly while it waits (see :meth:`send_all`). Transports whose
        connection holds streams weakly implement :meth:`_write_gate` and :meth:`_put`."""
        tasks = self._tasks
        tasks.add(task)
        task.add_done_callback(_task_done(tasks))
        if self._tasks_finalizer is None and type(self)._put is not ClientStream._put:
            # (a transport without ``_put`` has its sender wait in ``send``, holding the
            # stream: rooting the task would keep an abandoned stream alive for ever)
            self._tasks_finalizer = weakref.finalize(
                self, _cancel_collected, asyncio.get_running_loop(), tasks
            )
        return task

    # -- fed by the transport --------------------------------------------------------

    def _feed(self, item: Any, credit: int = 0) -> None:
        if self._done:
            return
        self._items.append((item, credit))
        self._wake()

    def _feed_initial(self, metadata: Mapping[str, Any]) -> None:
        if not self._initial.done():
            self._initial.set_result(metadata)

    def _finish(self, error: RpcError | None, trailing: Mapping[str, Any] | None = None) -> None:
        if self._done:
            return
        self._done = True
        self._error = error
        if self._collected is not None:
            self._collected.detach()
        if trailing:
            self.trailing_metadata = trailing
        if not self._initial.done():
            self._initial.set_result({})
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _consumed(self, credit: int) -> None:
        """Transport hook: the app took a message carrying ``credit`` bytes."""

    async def _write(self, item: Any) -> None:
        raise NotImplementedError

    async def _write_end(self) -> None:
        raise NotImplementedError

    def _abort(self, error: RpcError) -> None:
        """Transport hook: reset the call on the wire."""

    def _write_gate(self) -> Awaitable[Any] | None:
        """Transport hook for the background sender (:meth:`send_all`): something to wait
        for before the next message may go out (no credit yet), or ``None`` when
        :meth:`_put` may write it now. The sender holds the stream only weakly while it
        waits, so a stream the application dropped is still collected (and cancelled)."""
        return None

    def _put(self, item: Any) -> None:
        """Transport hook: write one message now, without waiting (after
        :meth:`_write_gate` said it may). A transport that cannot write synchronously
        leaves it: the background sender then awaits :meth:`send` instead."""
        raise NotImplementedError

    # -- user API --------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """The call has ended (all replies may not have been read yet)."""
        return self._done

    @property
    def error(self) -> RpcError | None:
        return self._error

    def _check_send(self) -> None:
        if self._done:
            raise self._error or Unavailable(message="stream is closed")
        if self._writing_done:
            raise RuntimeError("send() after done_writing()")

    async def send(self, item: Any) -> None:
        self._check_send()
        await self._write(item)

    async def done_writing(self) -> None:
        """Half-close: tell the server no more requests will come."""
        if self._writing_done or self._done:
            return
        self._writing_done = True
        await self._write_end()

    def send_all(self, items: AsyncIterable[Any] | Iterable[Any]) -> asyncio.Task[None]:
        """Send every item of an (async) iterable in the background, then half-close.

        The stream owns the task: it is cancelled when the call ends, when the stream is
        cancelled, closed or garbage-collected, and never outlives it unfinished. If the
        iterable raises (or an item cannot be sent) the call is cancelled with that error,
        which the stream's readers see; awaiting the returned task raises it too."""
        task = asyncio.get_running_loop().create_task(_pump(weakref.ref(self), items))
        self._writer = task
        self._own(task)
        return task

    async def recv(self) -> Any:
        """The next reply, or :data:`EOF` once the server finished; raises the error status."""
        while not self._items:
            if self._done:
                if self._error is not None:
                    raise self._error
                return EOF
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item, credit = self._items.popleft()
        if credit:
            self._consumed(credit)
        return item

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[T]:
        try:
            while True:
                item = await self.recv()
                if item is EOF:
                    return
                yield item
        finally:
            if not self._done:  # the loop was left early (break, exception, aclose)
                self.cancel()
            if self._tasks:
                await self._join()

    async def result(self) -> T:
        """The single reply of a unary or client-streaming call (half-closes first)."""
        if not self._writing_done and self._writer is None:
            await self.done_writing()
        first = await self.recv()
        if first is EOF:
            raise Unavailable(message=f"{self.method}: the server sent no reply")
        while not self._done:  # wait for the status; a late error overrides the reply
            await self.recv()
        if self._error is not None:
            raise self._error
        return first  # type: ignore[no-any-return]

    async def initial_metadata(self) -> Mapping[str, Any]:
        return await self._initial

    def cancel(self) -> None:
        """Cancel the call: the server's handler is cancelled, waiting readers get CANCELLED."""
        if self._done:
            return
        err = Cancelled(message=f"{self.method}: cancelled by the client")
        self._abort(err)
        self._finish(err)

    def _expire(self) -> None:
        if self._done:
            return
        err = DeadlineExceeded(message=f"{self.method}: deadline exceeded")
        self._abort(err)
        self._finish(err)

    async def aclose(self) -> None:
        """Cancel the call if it has not ended, then cancel and await the stream's
        background tasks (the request sender of :meth:`send_all`)."""
        if not self._done:
            self.cancel()
        await self._join()

    async def _join(self) -> None:
        me = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not me]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def __aenter__(self) -> ClientStream[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _task_done(tasks: set[asyncio.Task[Any]]) -> Callable[[asyncio.Task[Any]], None]:
    def done(t: asyncio.Task[Any]) -> None:
        tasks.discard(t)
        if not t.cancelled():
            t.exception()  # retrieved: it reached the stream (or whoever awaits the task)

    return done


def _cancel_collected(loop: asyncio.AbstractEventLoop, tasks: set[asyncio.Task[Any]]) -> None:
    """A stream with background tasks was collected: cancel them on their loop."""
    if not tasks:
        return

    def cancel() -> None:
        for t in list(tasks):
            t.cancel()

    with contextlib.suppress(RuntimeError):  # the loop is closed: nothing left to run
        loop.call_soon_threadsafe(cancel)


async def _pump(ref: weakref.ref[ClientStream[Any]], items: AsyncIterable[Any] | Iterable[Any],
                ) -> None:
    """The body of :meth:`ClientStream.send_all`. It holds the stream only weakly whenever
    it waits (for the next item, or for credit through ``_write_gate``), so an application
    that drops the stream lets it be collected: the stream's finalizers then cancel the
    call on the wire and this task."""
    try:
        if isinstance(items, AsyncIterable):
            it = items.__aiter__()
            while True:
                try:
                    item = await it.__anext__()
                except StopAsyncIteration:
                    break
                if not await _send_weakly(ref, item):
                    return
        else:
            for item in items:
                if not await _send_weakly(ref, item):
                    return
        st = ref()
        if st is not None:
            await st.done_writing()
    except Exception as exc:
        st = ref()
        if st is not None and not st._done:
            err = exc if isinstance(exc, RpcError) else Cancelled(
                message=f"{st.method}: the requests to send raised {exc!r}")
            st._writer = None  # (_finish must not cancel this task: it ends with ``exc``)
            st._abort(err)
            st._finish(err)
        raise


async def _send_weakly(ref: weakref.ref[ClientStream[Any]], item: Any) -> bool:
    """Send one item for :func:`_pump`; False if the stream was collected meanwhile."""
    while True:
        st = ref()
        if st is None:
            return False
        st._check_send()
        gate = st._write_gate()
        if gate is None:
            break
        del st  # wait without keeping the stream alive
        await gate
    if type(st)._put is ClientStream._put:
        await st.send(item)  # a transport that writes asynchronously
    else:
        st._put(item)
    return True


def expire_later(stream: ClientStream[Any], timeout: float) -> asyncio.TimerHandle:
    """Schedule ``stream._expire()`` after ``timeout`` without keeping the stream alive."""
    ref = weakref.ref(stream)

    def expire() -> None:
        st = ref()
        if st is not None:
            st._expire()

    return asyncio.get_running_loop().call_later(timeout, expire)


class PendingStream(Generic[T]):
    """A streaming call whose connection is still being obtained (``Client.stream`` when the
    pool has no ready connection): the same API as :class:`ClientStream`, each method waiting
    for the call to open first; ``await pending`` returns the opened stream."""

    def __init__(self, opener: Callable[[], Awaitable[ClientStream[T]]]) -> None:
        self._opener = opener
        # (the task does not refer to ``self``; it is kept alive until it finishes and its
        # exception is retrieved, so dropping a stream still opening logs nothing)
        self._task: asyncio.Task[ClientStream[T]] = asyncio.get_running_loop().create_task(
            _open(opener)
        )
        _opening.add(self._task)
        self._task.add_done_callback(_task_done(_opening))

    def __await__(self) -> Any:
        return self._task.__await__()

    async def send(self, item: Any) -> None:
        await (await self._task).send(item)

    async def done_writing(self) -> None:
        await (await self._task).done_writing()

    async def recv(self) -> Any:
        return await (await self._task).recv()

    async def result(self) -> T:
        return await (await self._task).result()

    async def initial_metadata(self) -> Mapping[str, Any]:
        return await (await self._task).initial_metadata()

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[T]:
        try:
            async for item in await self._task:
                yield item
        finally:
            self.cancel()  # a no-op once the call has ended

    def cancel(self) -> None:
        if self._task.done() and not self._task.cancelled() and self._task.exception() is None:
            self._task.result().cancel()
        else:
            self._task.cancel()

    async def aclose(self) -> None:
        """Cancel the call (or its opening), then await the stream's background tasks."""
        self.cancel()
        await asyncio.wait([self._task])
        if not self._task.cancelled() and self._task.exception() is None:
            await self._task.result().aclose()

    async def __aenter__(self) -> PendingStream[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


_opening: set[asyncio.Task[Any]] = set()  # PendingStream tasks still running


async def _open(opener: Callable[[], Awaitable[ClientStream[T]]]) -> ClientStream[T]:
    return await opener()
