"""The client side of ``jsonrpc://``: Go's ``jsonrpc.Dial``.

A Go error string becomes ``RpcError(Status.UNKNOWN, text)`` (``UNIMPLEMENTED`` for Go's
"can't find" texts), as on ``gob://``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from ...errors import Internal, InvalidArgument, ProtocolError
from ...protocol import gojsonrpc as gj
from ..base import URL
from ..gob.go_rpc import EncodedParts, GoClientConnection, go_error
from ..sockets import dial
from ..tls import pop_client_tls

__all__ = ["GoJsonClientConnection", "connect"]


class GoJsonClientConnection(GoClientConnection):
    """``jsonrpc.Dial``: calls multiplexed by ``id`` over one connection."""

    conn: EncodedParts
    dialect = "Go JSON-RPC"

    def __init__(self, *, max_message_size: int = 4 * 1024 * 1024, address: str = "") -> None:
        super().__init__(address)
        self.splitter = gj.JsonValueSplitter(max_message_size)
        self.conn = EncodedParts()

    def _request(self, seq: int, method: str, value: Any) -> None:
        try:
            self.conn.parts.append(gj.encode_request(seq, method, value))
        except (TypeError, ValueError, msgspec.EncodeError) as exc:
            raise InvalidArgument(
                message=f"cannot encode the argument of {method}: {exc}"
            ) from None

    def data_received(self, data: bytes) -> None:
        try:
            objs = self.splitter.feed(data)
        except ProtocolError as exc:
            self._abort(ProtocolError(f"bad reply from {self.address}: {exc.message}"))
            return
        for obj in objs:
            if not isinstance(obj, dict):
                continue
            rid = obj.get("id")
            entry = self._pending.pop(rid) if isinstance(rid, int) else None
            if entry is None:
                continue
            fut, result_type = entry
            err = obj.get("error")
            if err is not None:
                fut.set_exception(go_error(err if isinstance(err, str) else str(err)))
                continue
            result = obj.get("result")
            if result_type is None or result_type is Any:
                fut.set_result(result)
                continue
            try:
                fut.set_result(gj.go_json_convert(result, result_type))
            except (msgspec.ValidationError, TypeError, ValueError) as exc:
                fut.set_exception(Internal(message=f"reading body: {exc}"))


async def connect(
    url: URL,
    *,
    timeout: float | None = 10.0,
    max_message_size: int = 4 * 1024 * 1024,
    **tls_opts: Any,
) -> GoJsonClientConnection:
    """Dial a Go JSON-RPC server (``jsonrpc.Dial``; over TLS for ``jsonrpcs://``) within
    ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    proto = GoJsonClientConnection(max_message_size=max_message_size, address=str(url))
    tls = pop_client_tls(url.scheme, url.host, tls_opts)  # jsonrpcs://: ssl, server_hostname
    await dial(
        url, lambda: loop.create_connection(lambda: proto, url.host, url.port, **tls), timeout,
        lambda: proto.transport,
    )
    return proto
