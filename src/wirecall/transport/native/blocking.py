"""The native protocol over a blocking socket, shared by many threads (``wirecall.sync``).

No event loop and no thread hand-off on the way: the calling thread writes its request and,
if no other thread is reading, reads the replies itself and hands other threads theirs
(leader/follower). ``go`` calls get a ``concurrent.futures.Future``; a small pump thread
reads while only they wait.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import select
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from ... import codec as codecs
from ...errors import (
    ConnectError,
    DeadlineExceeded,
    FrameTooLarge,
    InvalidArgument,
    ProtocolError,
    RpcError,
    Unavailable,
)
from ...protocol import frames as fr
from ...status import Status
from ..base import URL
from .messages import error_from_frame

__all__ = ["BlockingConnection", "ReplySlot"]

#: per thread: the connection whose replies this thread is delivering while it holds that
#: connection's read lock (go() callbacks run there)
_TLS = threading.local()


class ReplySlot:
    """Where a reply lands: a plain object for ``call``, a Future for ``go``."""

    __slots__ = ("done", "error", "future", "result", "rtype")

    def __init__(self, rtype: Any, future: concurrent.futures.Future[Any] | None = None) -> None:
        self.rtype = rtype
        self.future = future
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class BlockingConnection:
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
        self._pending: dict[int, ReplySlot] = {}
        self._next_id = 1
        self._ready: list[ReplySlot] = []  # go() slots decoded under the send lock, to resolve
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

    def send(self, method: str, params: Any, timeout: float | None,
              md: Mapping[str, str] | None, slot: ReplySlot) -> int:
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

    def _deliver(self, slot: ReplySlot, result: Any, error: BaseException | None) -> None:
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
        slot = ReplySlot(rtype)
        cid = self.send(method, params, None, None, slot)
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

    def wait(self, slot: ReplySlot, cid: int, deadline: float | None, method: str) -> Any:
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
        slot = ReplySlot(rtype, fut)
        self._go_pending += 1
        try:
            cid = self.send(method, params, timeout, md, slot)
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

    def _go_cancelled(self, cid: int, slot: ReplySlot) -> None:
        """The caller cancelled a ``go`` future: the server cancels the handler too."""
        if self._cancel(cid):  # we took it out of the table, so no reply will be delivered
            slot.done = True
            self._go_pending -= 1

    def _expire_go(self, cid: int, slot: ReplySlot, method: str) -> None:
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
                    # a caller is reading (maybe blocked in recv with no deadline): only we
                    # send the keepalive PING and give up on a silent peer, which wakes it
                    self._keepalive_check(time.monotonic(), reader=False)
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
