"""The HTTP client: JSON-RPC 2.0 over aiohttp's pooled keep-alive connections
(:class:`HttpConnection`: ``call``, ``notify``, ``batch``), and :func:`connect`, the entry point
for every client URL of this package (``http://``, ``ws://``, ``http://host:port/_goRPC_``).
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from ...errors import (
    ConnectError,
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    RpcError,
    Unavailable,
    Unimplemented,
)
from ...protocol import jsonrpc2 as j2
from ...protocol.netrpc import GO_RPC_PATH
from ...status import Status
from ..base import URL, ClientConnection
from ..tls import pop_client_tls
from .common import META_PREFIX, TIMEOUT_HEADER, BatchItem, batch_calls, convert_result
from .ws_client import connect_websocket

__all__ = ["HttpConnection", "batch", "connect"]


def _http_error(status: int, text: str) -> RpcError:
    text = text.strip()[:500]
    if status == 413:
        return ResourceExhausted(message=f"HTTP 413: {text}")
    if status == 404:
        return NotFound(message=f"HTTP 404: {text}")
    if status in (400, 415):
        return InvalidArgument(message=f"HTTP {status}: {text}")
    if status == 405:
        return Unimplemented(message=f"HTTP 405: {text}")
    if status in (408, 504):
        return DeadlineExceeded(message=f"HTTP {status}: {text}")
    if status in (502, 503):
        return Unavailable(message=f"HTTP {status}: {text}")
    return RpcError(Status.UNKNOWN, f"HTTP {status}: {text}")


class HttpConnection(ClientConnection):
    """JSON-RPC 2.0 over pooled HTTP keep-alive connections (aiohttp ``ClientSession``).

    ``pool_size`` bounds the keep-alive connections (calls beyond it wait for one).
    """

    def __init__(
        self,
        url: URL,
        *,
        pool_size: int = 100,
        timeout: float | None = 10.0,
        headers: Mapping[str, str] | None = None,
        keepalive_timeout: float = 30.0,
        ssl_context: Any = None,
    ) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        path = url.path or "/rpc"  # JSON-RPC 2.0 (/jsonrpc answers the Go way)
        http = "https" if ssl_context is not None else "http"
        self.url = f"{http}://{url.hostport}{path}"
        self._connect_timeout = timeout
        connector = aiohttp.TCPConnector(
            limit=pool_size, keepalive_timeout=keepalive_timeout, enable_cleanup_closed=False,
            ssl=ssl_context if ssl_context is not None else True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"Content-Type": "application/json", **dict(headers or {})},
            skip_auto_headers=("User-Agent",),
        )
        self._ids = itertools.count(1)
        self._pending = 0
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        return self._pending

    def _headers(
        self, timeout: float | None, metadata: Mapping[str, str] | None
    ) -> dict[str, str] | None:
        if timeout is None and not metadata:
            return None
        h: dict[str, str] = {}
        if timeout is not None:
            h[TIMEOUT_HEADER] = f"{max(timeout, 0.0):.6f}"
        if metadata:
            for k, v in metadata.items():
                h[META_PREFIX + k] = v
        return h

    async def _post(
        self, body: bytes, timeout: float | None, metadata: Mapping[str, str] | None
    ) -> tuple[int, bytes]:
        aiohttp = self._aiohttp
        if self._closed:
            raise Unavailable(message="connection is closed")
        ct = aiohttp.ClientTimeout(total=timeout, connect=self._connect_timeout)
        self._pending += 1
        try:
            async with self._session.post(
                self.url, data=body, headers=self._headers(timeout, metadata), timeout=ct
            ) as resp:
                data = await resp.read()
                return resp.status, data
        except TimeoutError:
            raise DeadlineExceeded(message=f"no answer from {self.url} in {timeout}s") from None
        except aiohttp.ClientConnectorError as exc:
            raise ConnectError(message=f"cannot connect to {self.url}: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise Unavailable(message=f"HTTP request to {self.url} failed: {exc}") from exc
        finally:
            self._pending -= 1

    @staticmethod
    def _decode(status: int, data: bytes) -> Any:
        if status not in (200, 503) or not data:
            raise _http_error(status, data.decode("utf-8", "replace"))
        try:
            return j2.decode_any(data)
        except (msgspec.DecodeError, RecursionError):
            if status != 200:
                raise _http_error(status, data.decode("utf-8", "replace")) from None
            raise Internal(message=f"malformed JSON-RPC response: {data[:200]!r}") from None

    async def call(
        self,
        method: str,
        params: list[Any] | dict[str, Any] | None,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        result_type: Any = Any,
    ) -> Any:
        id = next(self._ids)
        body = j2.encode(j2.request_object(method, params, id))
        status, data = await self._post(body, timeout, metadata)
        obj = self._decode(status, data)
        try:
            _rid, result, err = j2.decode_response(obj)
        except ValueError as exc:
            raise Internal(message=f"bad JSON-RPC response: {exc}") from None
        if err is not None:
            raise err
        return convert_result(result, result_type)

    async def notify(
        self,
        method: str,
        params: list[Any] | dict[str, Any] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Send a notification: the server runs it and answers nothing (HTTP 204)."""
        body = j2.encode(j2.request_object(method, params))
        status, data = await self._post(body, None, metadata)
        if status not in (200, 204):
            raise _http_error(status, data.decode("utf-8", "replace"))

    async def batch(
        self,
        calls: Iterable[BatchItem],
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> list[Any]:
        """Send ``calls`` as one JSON-RPC batch; results in the order of ``calls``.

        A failed element is its :class:`RpcError` in the list (not raised); a notification's
        place holds ``None``. The batch as a whole raises only if the HTTP exchange fails.
        """
        items = batch_calls(calls)
        if not items:
            return []
        ids: dict[int, int] = {}
        reqs = []
        for i, c in enumerate(items):
            if c.notify:
                reqs.append(j2.request_object(c.method, c.params))
            else:
                rid = next(self._ids)
                ids[rid] = i
                reqs.append(j2.request_object(c.method, c.params, rid))
        status, data = await self._post(j2.encode(reqs), timeout, metadata)
        out: list[Any] = [None] * len(items)
        if status == 204 or not data:
            if ids:
                raise Internal(message="the server sent no answer to a batch with calls")
            return out
        obj = self._decode(status, data)
        if isinstance(obj, dict):  # the batch as a whole was refused
            _rid, _res, err = j2.decode_response(obj)
            raise err if err is not None else Internal(message="unexpected batch answer")
        if not isinstance(obj, list):
            raise Internal(message="a batch answer must be an array")
        for o in obj:
            try:
                rid, result, err = j2.decode_response(o)
            except ValueError as exc:
                raise Internal(message=f"bad JSON-RPC response in batch: {exc}") from None
            i = ids.pop(rid, -1) if isinstance(rid, int) else -1
            if i < 0:
                continue
            out[i] = err if err is not None else convert_result(result, items[i].result_type)
        for i in ids.values():
            out[i] = Internal(message="the server's batch answer has no reply for this call")
        return out

    async def aclose(self) -> None:
        self._closed = True
        await self._session.close()



async def connect(url: URL, **opts: Any) -> ClientConnection:
    """``http://host:port[/path]`` (JSON-RPC 2.0, path ``/jsonrpc`` by default),
    ``http://host:port/_goRPC_`` (Go's HTTP+gob, via the gob transport) or
    ``ws://host:port/ws`` (JSON-RPC 2.0 over a WebSocket)."""
    if url.path == GO_RPC_PATH:
        gob: Any = importlib.import_module("wirecall.transport.gob")
        conn: ClientConnection = await gob.connect_http(url, **opts)
        return conn
    opts = dict(opts)
    tls = pop_client_tls(url.scheme, url.host, opts).get("ssl")
    if url.scheme in ("ws", "wss"):
        return await connect_websocket(url, ssl_context=tls, **opts)
    known = {"pool_size", "timeout", "headers", "keepalive_timeout"}
    return HttpConnection(url, ssl_context=tls, **{k: v for k, v in opts.items() if k in known})



async def batch(client: Any, calls: Iterable[BatchItem], timeout: float | None = None) -> list[Any]:
    """``Client``-level batch: send ``calls`` as one JSON-RPC batch over one of the client's
    connections (an ``http://`` or ``ws://`` client). See :meth:`HttpConnection.batch`."""
    conn = await client.pool.get()
    if not hasattr(conn, "batch"):
        raise Unimplemented(message=f"{type(conn).__name__} has no JSON-RPC batch support")
    result: list[Any] = await conn.batch(calls, timeout=timeout)
    return result
