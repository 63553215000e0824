"""What both Redis brokers share: the lazy import of ``redis`` (the ``redis`` extra), the
mapping of Redis failures to statuses (the cause is logged on the server, not sent), and the
connections of the hot paths:

* :class:`RespLink`: a Redis connection that redis-py opened (socket, TLS, AUTH, SELECT: all
  the URL says), then taken over as an :class:`asyncio.Protocol`: commands are packed by
  hiredis and written at once, replies parsed by hiredis in ``data_received`` and handed to
  their futures (or to a callback: the subscription connection) in a loop, with no task,
  stream reader or timeout per reply (redis-py's per-reply path cost more than the rest of a
  publish);
* :class:`AutoPipeline`: the commands of a loop turn in one write on one link.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import Any

from ..errors import Unavailable

__all__ = ["LOG", "AutoPipeline", "RespLink", "import_redis", "pack", "redis_errors",
           "unavailable"]

LOG = logging.getLogger("wirecall.pubsub")


def import_redis() -> ModuleType:
    """``redis.asyncio``, or one line naming the extra to install."""
    try:
        import redis.asyncio as aioredis
    except ImportError:
        raise ImportError(
            "the Redis brokers need redis-py: pip install 'wirecall[redis]'") from None
    return aioredis


def redis_errors() -> tuple[type[BaseException], ...]:
    import redis.exceptions as rex

    return (rex.ConnectionError, rex.TimeoutError, OSError)


def unavailable(what: str, exc: BaseException, **extra: Any) -> Unavailable:
    """The error a caller gets when Redis failed (details stay in the server's log)."""
    LOG.warning("%s: %r %s", what, exc, extra or "")
    return Unavailable(message=f"{what}: the Redis broker is unavailable")


def _py_pack(args: Sequence[Any]) -> bytes:
    """One command in RESP (hiredis's ``pack_command`` where it is installed)."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else (a if isinstance(a, str) else repr(a)).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class _PyReader:
    """RESP2 replies from bytes, for interpreters without hiredis: ``hiredis.Reader``'s
    ``feed``/``gets`` (``gets`` is False until a whole reply is in; an error reply is
    returned as ``reply_error(text)``, not raised)."""

    def __init__(self, reply_error: Callable[[str], Any]) -> None:
        self._buf = bytearray()
        self._error = reply_error

    def feed(self, data: bytes) -> None:
        self._buf += data

    def gets(self) -> Any:
        try:
            reply, end = self._parse(0)
        except IndexError:  # incomplete
            return False
        del self._buf[:end]
        return reply

    def _parse(self, pos: int) -> tuple[Any, int]:
        buf = self._buf
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            raise IndexError
        kind, line = buf[pos], bytes(buf[pos + 1:eol])
        pos = eol + 2
        if kind == 0x2B:  # + simple string
            return line, pos
        if kind == 0x2D:  # - error
            return self._error(line.decode("utf-8", "replace")), pos
        if kind == 0x3A:  # : integer
            return int(line), pos
        if kind == 0x24:  # $ bulk string
            n = int(line)
            if n < 0:
                return None, pos
            if len(buf) < pos + n + 2:
                raise IndexError
            return bytes(buf[pos:pos + n]), pos + n + 2
        if kind == 0x2A:  # * array
            n = int(line)
            if n < 0:
                return None, pos
            items = []
            for _ in range(n):
                item, pos = self._parse(pos)
                items.append(item)
            return items, pos
        import redis.exceptions as rex

        raise rex.InvalidResponse(f"Protocol error: unexpected reply type {kind:#x}")


def _reply_error() -> Callable[[str], Any]:
    """redis-py's mapping of an error reply to its exception class (LOADING is
    ``BusyLoadingError``, a connection error; most are ``ResponseError``)."""
    try:
        from redis._parsers.base import BaseParser

        return BaseParser.parse_error
    except (ImportError, AttributeError):  # pragma: no cover  (another redis-py layout)
        import redis.exceptions as rex

        return rex.ResponseError


_hiredis: Any
try:
    import hiredis as _hiredis
except ImportError:  # pragma: no cover  (PyPy: the extra leaves hiredis out)
    _hiredis = None

#: one command in RESP
pack: Callable[[Sequence[Any]], bytes] = getattr(_hiredis, "pack_command", None) or _py_pack


def _new_reader() -> Any:
    import redis.exceptions as rex

    if _hiredis is not None:
        return _hiredis.Reader(protocolError=rex.InvalidResponse, replyError=_reply_error())
    return _PyReader(_reply_error())


class RespLink(asyncio.Protocol):
    """One Redis connection: redis-py opens it (:meth:`open`), then it is this protocol's.
    Replies go, in order, to the futures given with the requests (an error reply fails its
    own future only), or when none is waiting to ``on_push`` (a subscribed connection's
    messages). Losing the connection fails the futures in flight with ``ConnectionError``
    and sets :attr:`lost`."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 on_push: Callable[[Any], None] | None = None) -> None:
        import redis.exceptions as rex

        self.transport: asyncio.Transport | None = None
        self._loop = loop
        self._reader = _new_reader()
        self._pending: deque[asyncio.Future[Any]] = deque()
        self._on_push = on_push
        self._streams: tuple[Any, Any] | None = None
        self._error_type = rex.RedisError
        self._lost_type = rex.ConnectionError
        #: done (with the cause, or None) when the connection is gone
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()

    @classmethod
    async def open(cls, pool: Any, on_push: Callable[[Any], None] | None = None) -> RespLink:
        """A connection made by ``pool`` (a redis-py ``ConnectionPool``: its URL's host,
        TLS, password and db), handshake done, taken over."""
        conn = pool.make_connection()
        await conn.connect()
        # (redis-py's private stream attributes: the extra pins redis < 9, tested with 8.2)
        writer = getattr(conn, "_writer", None)
        if writer is None or not hasattr(conn, "_reader"):  # pragma: no cover
            raise RuntimeError(
                "this redis-py's connection has no asyncio stream writer to take over "
                "(wirecall's Redis broker is tested with redis 5-8: pip install 'redis<9')"
            )
        link = cls(asyncio.get_running_loop(), on_push)
        transport = writer.transport
        # the link owns the socket from here; the streams stay referenced (a StreamWriter
        # closes its transport when it is freed)
        link._streams = (conn._reader, writer)
        conn._reader = conn._writer = None
        link.transport = transport
        transport.set_protocol(link)
        if transport.is_closing():
            link.connection_lost(None)
        return link

    def request(self, data: bytes, futures: Iterable[asyncio.Future[Any]]) -> None:
        """Write ``data`` (packed commands); their replies go to ``futures``, in order."""
        transport = self.transport
        if transport is None:
            raise self._lost_type("the Redis connection is closed")
        self._pending.extend(futures)
        transport.write(data)

    def command(self, *args: Any) -> asyncio.Future[Any]:
        """One command; the future of its reply."""
        fut = self._loop.create_future()
        self.request(pack(args), (fut,))
        return fut

    def write(self, data: bytes) -> None:
        """Write packed commands whose replies go to ``on_push``."""
        if self.transport is None:
            raise self._lost_type("the Redis connection is closed")
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        pending = self._pending
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                if pending:
                    fut = pending.popleft()
                    if fut.done():
                        continue
                    if isinstance(reply, self._error_type):
                        fut.set_exception(reply)
                    else:
                        fut.set_result(reply)
                elif self._on_push is not None:
                    self._on_push(reply)
        except Exception as exc:  # a protocol error (or a bug in on_push): drop the link
            LOG.warning("redis connection: %r; closing it", exc)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._streams = None
        pending, self._pending = self._pending, deque()
        err = self._lost_type(f"the Redis connection was lost ({exc!r})" if exc else
                              "the Redis connection was closed")
        for fut in pending:
            if not fut.done():
                fut.set_exception(err)
        if not self.lost.done():
            self.lost.set_result(exc)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class AutoPipeline:
    """Commands from many tasks on one connection, pipelined: what is asked during one
    event-loop turn goes out in one write, the replies come back in order (the technique of
    ioredis's and Lettuce's auto-pipelining; redis-py has none). A publisher with many
    ``Publish`` calls in flight then pays one syscall and no pool round trip per batch.
    A connection failure fails the commands in flight (their callers retry); the next command
    reconnects."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._link: RespLink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._connecting: asyncio.Task[None] | None = None
        self._closed = False

    async def execute(self, *args: Any) -> Any:
        return await self.submit(*args)

    def submit(self, *args: Any) -> asyncio.Future[Any]:
        """Queue one command; the future of its reply (no task, no wait: a caller may have
        many in flight and collect them later)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.append((args, fut))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)  # this loop turn's commands join the batch
        return fut

    def _flush(self) -> None:
        self._scheduled = False
        if not self._queue:
            return
        link = self._link
        if link is None or link.transport is None:
            if self._connecting is None and self._loop is not None:
                self._connecting = self._loop.create_task(self._connect())
            return  # the batch goes once connected
        batch, self._queue = self._queue, []
        link.request(b"".join([pack(a) for a, _ in batch]), [f for _, f in batch])

    async def _connect(self) -> None:
        try:
            if self._closed:
                raise ConnectionError("closed")
            self._link = await RespLink.open(self._pool)
        except Exception as exc:
            batch, self._queue = self._queue, []
            _fail([f for _, f in batch], exc)
            return
        finally:
            self._connecting = None
        self._flush()

    async def aclose(self) -> None:
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        if self._link is not None:
            self._link.close()
            self._link = None
        batch, self._queue = self._queue, []
        _fail([f for _, f in batch], ConnectionError("closed"))


def _fail(futs: list[asyncio.Future[Any]], exc: BaseException) -> None:
    for f in futs:
        if not f.done():
            f.set_exception(exc)
