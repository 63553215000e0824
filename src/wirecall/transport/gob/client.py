"""The client side of ``gob://``: Go's ``rpc.Client`` (``rpc.Dial``; ``rpc.DialHTTP`` when the
URL has a path, see :mod:`.http_connect`).

On the client a Go error string becomes ``RpcError(Status.UNKNOWN, text)`` (``UNIMPLEMENTED``
for Go's "can't find" texts): Go errors carry no status code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ...codec.gob import GobError
from ...errors import ConnectError, Internal, InvalidArgument, ProtocolError, RpcError
from ...protocol import netrpc as nr
from ..base import URL
from ..sockets import dial
from ..tls import pop_client_tls
from .go_rpc import GoClientConnection, go_error

__all__ = ["GobClientConnection", "connect"]

log = logging.getLogger("wirecall.netrpc")

#: the longest CONNECT reply head read before giving up on it
MAX_HTTP_HEADER = 8192


class GobClientConnection(GoClientConnection):
    """One ``rpc.Client``: calls multiplexed by ``Seq`` over one gob connection."""

    conn: nr.ClientConnection
    dialect = "net/rpc"

    def __init__(
        self,
        *,
        max_message_size: int = nr.DEFAULT_MAX_MESSAGE,
        address: str = "",
        http_path: str | None = None,
    ) -> None:
        super().__init__(address)
        self.conn = nr.ClientConnection(max_message_size)
        self._ready: asyncio.Future[None] = self._loop.create_future()
        self._http_path = http_path
        self._handshake: bytearray | None = bytearray() if http_path else None

    def _request(self, seq: int, method: str, value: Any) -> None:
        try:
            self.conn.send_request(seq, method, value, nr.body_type(None, value))
        except (GobError, TypeError, ValueError) as exc:
            msg = exc.message if isinstance(exc, RpcError) else str(exc)
            raise InvalidArgument(
                message=f"cannot encode the argument of {method}: {msg}"
            ) from None

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._http_path is not None:
            assert self.transport is not None
            self.transport.write(f"CONNECT {self._http_path} HTTP/1.0\n\n".encode("latin-1"))
        elif not self._ready.done():
            self._ready.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        reason = self._lost_reason(exc)
        if not self._ready.done():
            self._ready.set_exception(reason)
        self._fail_all(reason)

    def _handshake_data(self, data: bytes) -> bytes | None:
        """Read the server's answer to our CONNECT; the bytes after it, once it is read."""
        hs = self._handshake
        assert hs is not None
        hs += data
        head = nr.split_http_head(hs)
        if head is None:
            if len(hs) > MAX_HTTP_HEADER:
                self._abort(ProtocolError("HTTP CONNECT reply headers too long"))
            return None
        status = head[0].decode("latin-1")
        self._handshake = None
        if status != nr.CONNECTED_LINE.rstrip(b"\n").decode():
            err = ConnectError(message=f"unexpected HTTP response: {status}")
            if not self._ready.done():
                self._ready.set_exception(err)
            self._abort(err)
            return None
        if not self._ready.done():
            self._ready.set_result(None)
        return head[1]

    def data_received(self, data: bytes) -> None:
        if self._handshake is not None:
            rest = self._handshake_data(data)
            if not rest:
                return
            data = rest
        try:
            replies = self.conn.receive(data)
        except ProtocolError as exc:
            log.warning("net/rpc connection to %s: %s", self.address, exc.message)
            self._abort(ProtocolError(f"bad reply from {self.address}: {exc.message}"))
            return
        for r in replies:
            entry = self._pending.pop(r.seq)
            if entry is None:
                continue  # expired or abandoned; its body was read with the message
            fut, result_type = entry
            if r.error:
                fut.set_exception(go_error(r.error))
                continue
            try:
                value = self.conn.decode_body(r.body, result_type if result_type else Any)
            except GobError as exc:
                fut.set_exception(Internal(message=f"reading body {exc.message}"))
                continue
            fut.set_result(value)


async def connect(
    url: URL,
    *,
    timeout: float | None = 10.0,
    max_message_size: int = nr.DEFAULT_MAX_MESSAGE,
    http_path: str | None = None,
    **tls_opts: Any,
) -> GobClientConnection:
    """Dial a Go net/rpc server (``rpc.Dial``); a URL path means ``rpc.DialHTTP`` there."""
    path = http_path if http_path is not None else (url.path or None)
    loop = asyncio.get_running_loop()
    proto = GobClientConnection(
        max_message_size=max_message_size, address=str(url), http_path=path
    )
    factory: Callable[[], GobClientConnection] = lambda: proto  # noqa: E731
    tls = pop_client_tls(url.scheme, url.host, tls_opts)  # gobs://: ssl, server_hostname

    async def open_connection() -> None:
        await loop.create_connection(factory, url.host, url.port, **tls)
        await proto._ready

    await dial(url, open_connection, timeout, lambda: proto.transport)
    return proto
