"""Streaming calls opened by the native client (``tcp://``, ``unix://``): the client side of
the protocol described in :mod:`.server_streams`. :func:`open_stream` starts one on a
:class:`StreamConnection` (the async :class:`.client.TcpClientConnection`)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterable, Mapping
from typing import Any, Protocol

import msgspec

from ... import codec as codecs
from ...errors import InvalidArgument, RpcError, Unavailable
from ...protocol import frames as fr
from ...streaming.model import ClientStream, expire_later
from .messages import GRANT_AT, INITIAL_WINDOW, decode_message

__all__ = ["StreamConnection", "TcpClientStream", "open_stream"]


class StreamConnection(Protocol):
    """What a client stream needs of its connection."""

    codec: codecs.Codec
    conn: fr.FrameConnection
    #: the streams open on the connection, by call id (held weakly, see ``_Slot``)
    streams: dict[int, Any]

    @property
    def wire_open(self) -> bool:
        """The socket is still up (frames may be queued)."""

    def check_open(self) -> None:
        """Raise the reason the connection takes no new call, if it does not."""

    def new_id(self) -> int:
        """A fresh call id."""

    def flush_soon(self) -> None:
        """Write what is queued at the end of this loop iteration."""


class TcpClientStream(ClientStream[Any]):
    """A streaming call on a :class:`~wirecall.transport.native.client.TcpClientConnection`."""

    def __init__(self, owner: StreamConnection, cid: int, method: str,
                 result_type: Any) -> None:
        super().__init__(method)
        self.owner = owner
        self.cid = cid
        self.result_type = result_type
        self.credit = INITIAL_WINDOW
        self.consumed = 0
        self.waiter: asyncio.Future[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    async def _write(self, item: Any) -> None:
        while (gate := self._write_gate()) is not None:
            await gate
        if self._done:
            raise self._error or Unavailable(message="stream closed")
        self._put(item)

    def _write_gate(self) -> asyncio.Future[None] | None:
        if self.credit > 0 or self._done:
            return None
        w = self.waiter
        if w is None or w.done():  # (woken by WINDOW_UPDATE or the end of the call)
            w = self.waiter = asyncio.get_running_loop().create_future()
        return w

    def _put(self, item: Any) -> None:
        o = self.owner
        try:
            body = o.codec.encode(item)
        except (TypeError, msgspec.EncodeError) as exc:
            raise InvalidArgument(message=f"cannot encode a message of {self.method}: "
                                  f"{exc}") from None
        self.credit -= 1
        o.conn.send_message(self.cid, body)
        o.flush_soon()

    async def _write_end(self) -> None:
        self.owner.conn.send_message(self.cid, b"", end_stream=True)
        self.owner.flush_soon()

    def _abort(self, error: RpcError) -> None:
        o = self.owner
        o.streams.pop(self.cid, None)
        if o.wire_open:
            o.conn.send_cancel(self.cid)
            o.flush_soon()

    def _consumed(self, credit: int) -> None:
        self.consumed += 1
        if self.consumed >= GRANT_AT and not self._done:
            self.owner.conn.send_window_update(self.cid, self.consumed)
            self.consumed = 0
            self.owner.flush_soon()

    def _finish(self, error: RpcError | None, trailing: Mapping[str, Any] | None = None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)
        super()._finish(error, trailing)

    # -- called by TcpClientConnection -----------------------------------------------

    def _on_frame(self, ev: fr.Event) -> None:
        if type(ev) is fr.WindowUpdated:
            self.credit += ev.increment
            w = self.waiter
            if w is not None and not w.done():
                w.set_result(None)
            return
        body = ev.body  # type: ignore[attr-defined]
        if not len(body) and ev.end_stream:  # type: ignore[attr-defined]
            return  # a bare half-close marker (the protocol's form), not a message
        # an empty body is a message: protobuf encodes StringValue("") as zero bytes
        try:
            if ev.compressed:  # type: ignore[attr-defined]
                body = fr.decompress(body, self.owner.conn.max_frame_size)
            item = decode_message(self.owner.codec, body, self.result_type)
        except RpcError as exc:
            self.cancel()
            self._error = exc
            return
        self._feed(item, 1)

    def _on_response(self, ev: fr.ResponseReceived) -> None:
        self.owner.streams.pop(self.cid, None)
        if len(ev.body):
            try:
                body = ev.body
                if ev.compressed:
                    body = fr.decompress(body, self.owner.conn.max_frame_size)
                self._feed(decode_message(self.owner.codec, body, self.result_type))
            except RpcError as exc:
                self._finish(exc)
                return
        self._finish(None)

    def _on_error(self, err: RpcError) -> None:
        self.owner.streams.pop(self.cid, None)
        self._finish(err)

    def _fail(self, err: RpcError) -> None:
        self._finish(err)


class _Slot:
    """What the connection's stream table holds: the stream, weakly (so an unfinished
    stream the application dropped is collected, and cancelled by :func:`_collected`)."""

    __slots__ = ("ref",)

    def __init__(self, st: TcpClientStream) -> None:
        self.ref = weakref.ref(st)

    def _on_frame(self, ev: fr.Event) -> None:
        st = self.ref()
        if st is not None:
            st._on_frame(ev)

    def _on_response(self, ev: fr.ResponseReceived) -> None:
        st = self.ref()
        if st is not None:
            st._on_response(ev)

    def _on_error(self, err: RpcError) -> None:
        st = self.ref()
        if st is not None:
            st._on_error(err)

    def _fail(self, err: RpcError) -> None:
        st = self.ref()
        if st is not None:
            st._fail(err)


def _collected(owner: StreamConnection, cid: int) -> None:
    """An unfinished stream was garbage-collected: cancel its call."""
    if owner.streams.pop(cid, None) is not None and owner.wire_open:
        owner.conn.send_cancel(cid)
        owner.flush_soon()


def open_stream(owner: StreamConnection, method: str, params: Any, timeout: float | None,
                metadata: Mapping[str, str] | None, result_type: Any) -> TcpClientStream:
    """Open a streaming call: ``params`` is the request of a server stream (sent with
    END_STREAM), an (async) iterable of requests sent in the background, or None."""
    owner.check_open()
    streaming_in = params is not None and (
        isinstance(params, AsyncIterable) or hasattr(params, "__next__")
    )
    cid = owner.new_id()
    st = TcpClientStream(owner, cid, method, result_type)
    body = b""
    if params is not None and not streaming_in:
        try:
            body = owner.codec.encode(params)
        except (TypeError, msgspec.EncodeError) as exc:
            raise InvalidArgument(message=f"cannot encode arguments of {method}: {exc}") from None
    server_stream = params is not None and not streaming_in
    owner.conn.send_request(cid, method, body, timeout, metadata or None, stream=True,
                            end_stream=server_stream)
    if server_stream:
        st._writing_done = True
    owner.streams[cid] = _Slot(st)
    st._cancel_on_collect(lambda: _collected(owner, cid))
    if timeout is not None:
        st.timer = expire_later(st, timeout)
    owner.flush_soon()
    if streaming_in:
        st.send_all(params)
    return st
