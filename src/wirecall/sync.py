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
import math
import random
import select
import socket
import threading
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec

from . import codec as codecs
from .client import Client, _stub_methods, call_options, check_timeout
from .context import _current
from .errors import (
    ConnectError,
    DeadlineExceeded,
    FrameTooLarge,
    InvalidArgument,
    ProtocolError,
    RpcError,
    Unavailable,
)
from .interceptors import ClientCall
from .protocol import frames as fr
from .status import Status
from .transport.base import URL, parse_url
from .transport.tcp import error_from_frame

__all__ = ["SyncClient", "SyncStream", "connect"]

T = TypeVar("T")
_UNSET: Any = object()
_NO_MD: dict[str, str] = {}
#: per thread: the connection whose replies this thread is delivering while it holds that
#: connection's read lock (go() callbacks run there)
_TLS = threading.local()
SyncInterceptor = Callable[[ClientCall, Callable[[ClientCall], Any]], Any]


class _Slot:
    """Where a reply lands: a plain object for ``call``, a Future for ``go``."""

    __slots__ = ("done", "error", "future", "result", "rtype")

    def __init__(self, rtype: Any, future: concurrent.futures.Future[Any] | None = None) -> None:
        self.rtype = rtype
        self.future = future
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class _BlockingConnection:
    """One native-protocol connection over a blocking socket, shared by many threads."""

    def __init__(
        self,
        url: URL,
        codec: codecs.Codec,
        timeout: float | None,
        max_message_size: int,
        keepalive: float | None = 30.0,
        idle_timeout: float | None = None,
    ) -> None:
        self.url = url
        self.codec = codec
        self._keepalive = keepalive
        self._idle_timeout = idle_timeout
        self.conn = fr.FrameConnection(
            client=True, codec_id=codec.id, max_frame_size=max_message_size
        )
        self._decode = codec.decode
        try:
            if url.scheme == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(url.path)
            else:
                sock = socket.create_connection((url.host, url.port), timeout=timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except TimeoutError:
            raise ConnectError(message=f"dial {url}: timed out after {timeout:g}s") from None
        except OSError as exc:
            raise ConnectError(message=f"dial {url}: {exc.strerror or exc}") from None
        self.sock = sock
        self._send_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._cv = threading.Condition(threading.Lock())
        self._waiting = 0
        self._pending: dict[int, _Slot] = {}
        self._next_id = 1
        self._ready: list[_Slot] = []  # go() slots decoded under the send lock, to resolve
        self._delivered = False  # a reply was delivered during this read
        self.closed = False
        self._goaway = False
        self._reason: RpcError | None = None
        self._go_pending = 0
        self._pump_wake = threading.Event()
        # handshake: send our preface, read the server's
        self.conn.initiate()
        try:
            sock.sendall(self.conn.data_to_send())
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self.conn.preface_received:
                if deadline is not None:
                    sock.settimeout(max(0.001, deadline - time.monotonic()))
                data = sock.recv(65536)
                if not data:
                    raise ConnectError(message=f"dial {url}: server closed the connection")
                for ev in self.conn.receive_data(data):
                    if isinstance(ev, fr.GoAwayReceived):
                        raise ConnectError(message=f"dial {url}: {ev.message}")
        except TimeoutError:
            sock.close()
            raise ConnectError(message=f"dial {url}: handshake timed out") from None
        except (OSError, ProtocolError) as exc:
            sock.close()
            raise ConnectError(message=f"dial {url}: {exc}") from None
        self.conn.set_fast_callbacks(on_response=self._on_plain_response)
        sock.settimeout(None)  # blocking from now on; read deadlines use poll(), never timeouts
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)
        self._last_io = time.monotonic()
        self._ping_sent_at: float | None = None
        self._idle_mark = (self._next_id, time.monotonic())  # no call yet: idle from now
        # the pump reads for go() futures and keeps an idle connection alive (answers the
        # server's PINGs, sends its own, notices EOF/GOAWAY, closes after idle_timeout)
        self._pump = threading.Thread(target=self._pump_loop, daemon=True,
                                      name=f"wirecall-pump {url}")
        self._pump.start()

    @property
    def unusable(self) -> bool:
        return self.closed or self._goaway

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- sending -------------------------------------------------------------------------

    def _send(self, method: str, params: Any, timeout: float | None,
              md: Mapping[str, str] | None, slot: _Slot) -> int:
        if self.closed or self._goaway:
            raise self._reason or Unavailable(message=f"connection to {self.url} closed")
        try:
            body = self.codec.encode(params)
        except (TypeError, msgspec.EncodeError) as exc:
            raise InvalidArgument(message=f"cannot encode arguments of {method}: {exc}") from None
        with self._send_lock:
            cid = self._next_id
            self._next_id = cid + 1 if cid < 0xFFFFFFFF else 1
            try:
                self.conn.send_request(cid, method, body, timeout, md or None)
            except FrameTooLarge as exc:
                raise FrameTooLarge(f"request for {method}: {exc.message}") from None
            self._pending[cid] = slot
            try:
                self.sock.sendall(self.conn.data_to_send())
            except OSError as exc:
                self._pending.pop(cid, None)
                self._lost(exc)
                raise self._reason or Unavailable(message=str(exc)) from None
        return cid

    def _cancel(self, cid: int) -> bool:
        """Forget call ``cid`` and tell the server; False if it was no longer pending."""
        if self._pending.pop(cid, None) is None:
            return False
        if self.closed:
            return True
        with self._send_lock:
            self.conn.send_cancel(cid)
            with contextlib.suppress(OSError):
                self.sock.sendall(self.conn.data_to_send())
        return True

    # -- reading -------------------------------------------------------------------------

    def _read_once(self, deadline: float | None) -> None:
        """Read once from the socket and deliver what it completes. Caller holds read lock."""
        sock = self.sock
        if deadline is not None:
            # The socket stays blocking (other threads send on it); wait for data with poll.
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._poller.poll(max(1, math.ceil(remaining * 1000))):
                raise TimeoutError
        try:
            data = sock.recv(65536)  # below malloc's mmap threshold: no page faults per read
        except OSError as exc:
            self._lost(exc)
            return
        if not data:
            self._lost(None)
            return
        self._last_io = time.monotonic()
        with self._send_lock:  # receive_data may queue PING acks, and senders use the queue
            try:
                events = self.conn.receive_data(data)  # plain replies: _on_plain_response
            except ProtocolError as exc:
                self._reason = Unavailable(message=f"protocol error from server: {exc.message}")
                events = None
            else:
                if self.conn.has_data_to_send():  # ping acks
                    with contextlib.suppress(OSError):
                        sock.sendall(self.conn.data_to_send())
        if self._ready or events is None or events:
            # go() futures resolve here, outside the send lock; their callbacks run on this
            # thread, which holds the read lock, so a blocking call from one reads in place
            # (see wait) instead of waiting for a reader that is itself
            outer = getattr(_TLS, "reading", None)  # a nested read from such a callback
            _TLS.reading = self
            try:
                if self._ready:
                    ready, self._ready = self._ready, []
                    for slot in ready:
                        self._deliver(slot, slot.result, slot.error)
                if events is None:  # the protocol error above (replies before it are kept)
                    self._lost(None)
                    return
                if events:
                    self._on_events(events)
            finally:
                _TLS.reading = outer
        if self._delivered:
            self._delivered = False
            if self._waiting:
                with self._cv:
                    self._cv.notify_all()

    def _on_plain_response(self, cid: int, body: bytes | memoryview) -> None:
        """A plain RESPONSE, straight from the parser (called under the send lock)."""
        slot = self._pending.pop(cid, None)
        if slot is None:
            return
        try:
            slot.result = self._decode(body, slot.rtype)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            slot.error = InvalidArgument(message=f"cannot decode the reply: {exc}")
        self._delivered = True
        if slot.future is None:
            slot.done = True  # the caller's thread reads it: nothing else to run
        else:
            self._ready.append(slot)

    def _on_events(self, events: list[fr.Event]) -> None:
        pending = self._pending
        for ev in events:
            t = type(ev)
            if t is fr.ResponseReceived:
                slot = pending.pop(ev.call_id, None)  # type: ignore[attr-defined]
                if slot is None:
                    continue
                try:
                    body = ev.body  # type: ignore[attr-defined]
                    if ev.compressed:  # type: ignore[attr-defined]
                        body = fr.decompress(body, self.conn.max_frame_size)
                    self._deliver(slot, self.codec.decode(body, slot.rtype), None)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    self._deliver(
                        slot, None, InvalidArgument(message=f"cannot decode the reply: {exc}")
                    )
                except RpcError as exc:
                    self._deliver(slot, None, exc)
                self._delivered = True
            elif t is fr.ErrorReceived:
                slot = pending.pop(ev.call_id, None)  # type: ignore[attr-defined]
                if slot is not None:
                    self._deliver(
                        slot, None, error_from_frame(self.codec, ev)  # type: ignore[arg-type]
                    )
                    self._delivered = True
            elif t is fr.PongReceived:
                self._ping_sent_at = None
            elif t is fr.GoAwayReceived:
                self._goaway = True
                reason = Unavailable(message=f"server sent GOAWAY: {ev.message}")  # type: ignore[attr-defined]
                for cid in [c for c in pending if c > ev.last_call_id]:  # type: ignore[attr-defined]
                    self._deliver(pending.pop(cid), None, reason)
                self._delivered = True
            elif t is fr.FrameRefused:
                slot = pending.pop(ev.call_id, None)  # type: ignore[attr-defined]
                if slot is not None:
                    self._deliver(slot, None, RpcError(
                        Status.RESOURCE_EXHAUSTED,
                        f"reply of {ev.size} bytes exceeds the client limit",  # type: ignore[attr-defined]
                    ))
                    self._delivered = True

    def _deliver(self, slot: _Slot, result: Any, error: BaseException | None) -> None:
        if slot.done:
            return  # delivered already: a reply raced the connection being lost
        slot.result = result
        slot.error = error
        slot.done = True
        fut = slot.future
        if fut is not None:
            self._go_pending -= 1
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                if not fut.cancelled():
                    if error is None:
                        fut.set_result(result)
                    else:
                        fut.set_exception(error)

    def _lost(self, exc: BaseException | None) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv
            with contextlib.suppress(OSError):
                self.sock.close()
        reason = self._reason or Unavailable(
            message=f"connection to {self.url} lost" + (f": {exc}" if exc else "")
        )
        self._reason = reason
        pending, self._pending = self._pending, {}
        for slot in list(pending.values()):  # a snapshot: a reader may pop from it meanwhile
            self._deliver(slot, None, reason)
        with self._cv:
            self._cv.notify_all()
        self._pump_wake.set()

    def roundtrip(self, method: str, params: Any, rtype: Any) -> Any:
        """A call with no deadline: send it, then read until its reply is in (the hot path of
        ``SyncClient.call``; :meth:`wait` covers another thread reading, and the rest)."""
        slot = _Slot(rtype)
        cid = self._send(method, params, None, None, slot)
        if not self._read_lock.acquire(False):
            return self.wait(slot, cid, None, method)
        try:
            while not slot.done and not self.closed:
                self._read_once(None)
        finally:
            self._read_lock.release()
            if self._waiting or self._go_pending:
                self._wake_readers()
        if not slot.done:
            return self.wait(slot, cid, None, method)  # closed: raises the reason
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _wake_readers(self) -> None:
        """The read lock was released: a waiting caller or the go() pump may read now."""
        with self._cv:
            self._cv.notify_all()
        if self._go_pending:
            self._pump_wake.set()

    def wait(self, slot: _Slot, cid: int, deadline: float | None, method: str) -> Any:
        """Block until ``slot`` is filled, reading the socket when nobody else is."""
        while not slot.done:
            if self._read_lock.acquire(blocking=False):
                try:
                    while not slot.done and not self.closed:
                        try:
                            self._read_once(deadline)
                        except TimeoutError:
                            break
                finally:
                    self._read_lock.release()
                    if self._waiting or self._go_pending:
                        self._wake_readers()
                if slot.done:
                    break
                if self.closed:
                    raise self._reason or Unavailable(message="connection closed")
            elif getattr(_TLS, "reading", None) is self:
                # a go() callback on the thread that holds the read lock: read here
                while not slot.done and not self.closed:
                    try:
                        self._read_once(deadline)
                    except TimeoutError:
                        break
                if not slot.done and self.closed:
                    raise self._reason or Unavailable(message="connection closed")
            else:
                with self._cv:
                    self._waiting += 1
                    try:
                        while not slot.done and self._read_lock.locked():
                            remaining = None if deadline is None else deadline - time.monotonic()
                            if remaining is not None and remaining <= 0:
                                break
                            self._cv.wait(remaining)
                    finally:
                        self._waiting -= 1
            if not slot.done and deadline is not None and time.monotonic() >= deadline:
                self._cancel(cid)
                raise DeadlineExceeded(message=f"{method}: no reply in time")
        if slot.error is not None:
            raise slot.error
        return slot.result

    # -- go: the pump ----------------------------------------------------------------------

    def submit(self, method: str, params: Any, timeout: float | None,
               md: Mapping[str, str] | None, rtype: Any) -> concurrent.futures.Future[Any]:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        slot = _Slot(rtype, fut)
        self._go_pending += 1
        try:
            cid = self._send(method, params, timeout, md, slot)
        except BaseException:
            self._go_pending -= 1
            raise
        if timeout is not None:
            timer = threading.Timer(timeout, self._expire_go, (cid, slot, method))
            timer.daemon = True
            timer.start()
            fut.add_done_callback(lambda _f: timer.cancel())
        fut.add_done_callback(lambda f: self._go_cancelled(cid, slot) if f.cancelled() else None)
        self._pump_wake.set()
        return fut

    def _go_cancelled(self, cid: int, slot: _Slot) -> None:
        """The caller cancelled a ``go`` future: the server cancels the handler too."""
        if self._cancel(cid):  # we took it out of the table, so no reply will be delivered
            slot.done = True
            self._go_pending -= 1

    def _expire_go(self, cid: int, slot: _Slot, method: str) -> None:
        if slot.done:
            return
        self._cancel(cid)
        if not slot.done:
            self._deliver(slot, None, DeadlineExceeded(message=f"{method}: no reply in time"))

    def _tick(self) -> float:
        return min(x for x in (self._keepalive, self._idle_timeout, 5.0) if x) / 2

    def check_alive(self) -> bool:
        """After a quiet spell, look for an EOF or GOAWAY that arrived meanwhile (cheap when
        the connection was used in the last second); False if it can no longer be used."""
        if self.closed or self._goaway:
            return False
        if time.monotonic() - self._last_io < 1.0 or not self._read_lock.acquire(False):
            return True
        try:
            while not self.closed and self._poller.poll(0):
                self._read_once(None)
        finally:
            self._read_lock.release()
            if self._waiting or self._go_pending:  # a caller may have queued up meanwhile
                self._wake_readers()
        return not (self.closed or self._goaway)

    def _maintain(self) -> None:
        now = time.monotonic()
        idle = self._idle_timeout
        if idle:
            if self._pending or self._next_id != self._idle_mark[0]:  # a call since
                self._idle_mark = (self._next_id, now)
            elif now - self._idle_mark[1] >= idle:
                self._reason = Unavailable(message=f"connection to {self.url} closed: idle")
                self.close()
                return
        if not self._read_lock.acquire(False):
            # A caller is blocked reading: it answers PINGs and sees PONGs and EOF itself;
            # the keepalive PING is ours, and giving up on it wakes that reader, which then
            # fails the calls itself (one thread tears the connection down, never two).
            self._keepalive_check(now, reader=False)
            return
        try:
            while not self.closed and self._poller.poll(0):
                self._read_once(None)  # PING acks, GOAWAY, EOF
            self._keepalive_check(now)
        finally:
            self._read_lock.release()
            if self._waiting or self._go_pending:  # a caller may have queued up meanwhile
                self._wake_readers()

    def _keepalive_check(self, now: float, reader: bool = True) -> None:
        """Quiet for a keepalive interval: PING the peer, or give up on an unanswered PING.
        ``reader``: the caller holds the read lock (else another thread is reading, and
        giving up only shuts the socket down so that reader sees it and fails the calls)."""
        ka = self._keepalive
        if not ka or self.closed or now - self._last_io < ka:
            return
        if self._ping_sent_at is not None:
            if now - self._ping_sent_at >= ka:
                self._reason = Unavailable(
                    message=f"connection to {self.url}: keepalive ping unanswered")
                self._give_up(None, reader)
            return
        self._ping_sent_at = now
        with self._send_lock:
            self.conn.send_ping(b"wirecall")
            try:
                self.sock.sendall(self.conn.data_to_send())
            except OSError as exc:
                self._give_up(exc, reader)

    def _give_up(self, exc: BaseException | None, reader: bool) -> None:
        if reader:
            self._lost(exc)
        else:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)  # the reader's recv returns: it cleans up

    def _pump_loop(self) -> None:
        while not self.closed:
            if not self._pump_wake.wait(self._tick()):
                self._maintain()
                continue
            self._pump_wake.clear()
            while self._go_pending > 0 and not self.closed:
                if not self._read_lock.acquire(timeout=0.05):
                    continue
                try:
                    while self._go_pending > 0 and not self.closed:
                        try:
                            self._read_once(time.monotonic() + 0.2)
                        except TimeoutError:  # quiet: keepalive is ours while we read
                            self._keepalive_check(time.monotonic())
                finally:
                    self._read_lock.release()
                    if self._waiting:
                        with self._cv:
                            self._cv.notify_all()

    def close(self) -> None:
        if not self.closed:
            self._reason = Unavailable(message=f"connection to {self.url} closed by the client")
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            self._lost(None)


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
        from .streaming import EOF

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
        self.url = parse_url(target)
        self._keepalive = keepalive
        self._idle_timeout = idle_timeout
        self.call_timeout = call_timeout
        self.metadata = dict(metadata or {})
        self.interceptors = list(interceptors)
        self._connect_timeout = timeout
        self._codec = codecs.get(codec)
        self._max = max_message_size
        self._native = self.url.scheme in ("tcp", "unix")
        self._lock = threading.Lock()
        self._conns: list[_BlockingConnection | None] = [None] * max(1, pool_size)
        self._retry_at = 0.0
        self._backoff = 0.0
        self._last_error: RpcError | None = None
        self._bridge: _LoopThread | None = None
        self._aclient: Client | None = None
        if self._native:
            self._conns[0] = self._dial()
        else:
            self._bridge = _LoopThread()
            if keepalive is not None:
                options.setdefault("keepalive", keepalive)
            if idle_timeout is not None:
                options.setdefault("idle_timeout", idle_timeout)
            self._aclient = Client(
                target, pool_size=pool_size, connect_timeout=timeout, codec=codec, **options
            )
            try:
                self._bridge.run(self._aclient.connect())
            except BaseException:
                self.close()
                raise

    def _dial(self) -> _BlockingConnection:
        try:
            c = _BlockingConnection(self.url, self._codec, self._connect_timeout, self._max,
                                    self._keepalive, self._idle_timeout)
        except RpcError as exc:
            self._last_error = exc
            self._backoff = min(5.0, max(0.05, self._backoff * 2))
            self._retry_at = time.monotonic() + self._backoff * (0.5 + random.random() / 2)
            raise
        self._backoff = 0.0
        return c

    def _conn(self) -> _BlockingConnection:
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
            and _current.get() is None
        ):
            # the direct path: no interceptors, no default metadata, not inside a handler
            conn = self._conn()
            if timeout is _UNSET:
                timeout = self.call_timeout
            if timeout is not None:
                timeout = check_timeout(timeout)
            if timeout is None and not metadata:
                return conn.roundtrip(method, params, result_type)
            slot = _Slot(result_type)
            cid = conn._send(method, params, timeout, metadata, slot)
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
            slot = _Slot(rtype)
            cid = conn._send(method, params, timeout, md, slot)
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
            return self._conn().submit(method, params, tmo, md, result_type)
        assert self._bridge is not None and self._aclient is not None
        return self._bridge.submit(
            self._aclient.invoke(method, params, timeout=tmo, metadata=md, result_type=result_type)
        )

    def stub(self, api: type[T], name: str | None = None) -> T:
        """A typed blocking proxy (see :meth:`wirecall.Client.stub`)."""
        service = name or getattr(api, "__wirecall_service__", None) or api.__name__
        methods = _stub_methods(api)
        client = self

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
            from .errors import Unimplemented

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
