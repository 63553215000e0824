"""A JSON-RPC body -> the server's dispatch -> the response body: what the HTTP server and the
WebSocket server both do with the calls they read (:func:`handle_body`, :func:`handle_items`).

A request in Go's JSON-RPC 1.0 dialect is served with Go's exact argument semantics by
:mod:`wirecall.transport.jsonrpc` when that module is present.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from ...context import Context
from ...errors import Internal, ResourceExhausted, RpcError
from ...protocol import jsonrpc2 as j2
from .common import TIMEOUT_KEY

if TYPE_CHECKING:
    from ...seam import Dispatcher

__all__ = ["CallSlots", "Respond", "as_rpc_error", "call_ctx", "handle_body", "handle_items"]

log = logging.getLogger("wirecall.http")

#: receives the answer to a body: its bytes, or None when there is nothing to send back
Respond = Callable[[bytes | None], None]
OnDone = Callable[[Any, BaseException | None], None]

#: calls of one batch started per loop turn (the others' calls run in between)
BATCH_TURN = 512


class CallSlots:
    """The calls in flight on one connection against the server's per-connection limit
    (``Server(max_concurrent_calls=...)``): counted by what runs, a batch's calls included."""

    __slots__ = ("limit", "max_answer", "running")

    def __init__(self, limit: int, max_answer: int | None = None) -> None:
        self.limit = limit
        #: bytes a batch's answer may reach (``Limits(max_unsent_bytes=)``): past them the
        #: batch's calls not started yet are answered RESOURCE_EXHAUSTED instead of run
        self.max_answer = max_answer
        self.running = 0

    def take(self) -> bool:
        """Count one call in flight (False, counting nothing, at the limit); pair with
        :meth:`give` when it ends."""
        if self.running >= self.limit:
            return False
        self.running += 1
        return True

    def give(self) -> None:
        self.running -= 1

    def wrap(self, on_done: OnDone) -> OnDone | None:
        """``on_done`` counted as one call in flight, or None when the limit is reached."""
        if not self.take():
            return None

        def done(result: Any, exc: BaseException | None) -> None:
            self.running -= 1
            on_done(result, exc)

        return done

    def refusal(self) -> RpcError:
        return ResourceExhausted(
            message=f"too many calls in flight on this connection (limit {self.limit})")


def _start(
    server: Dispatcher, call: j2.Call, ctx: Context, on_done: OnDone, slots: CallSlots | None
) -> None:
    """``server.start_call``, or the refusal when the connection is at its call limit."""
    if slots is not None:
        counted = slots.wrap(on_done)
        if counted is None:
            on_done(None, slots.refusal())
            return
        on_done = counted
    server.start_call(call.method, call.params, ctx, on_done)


def _encode_reply(reply: j2.Reply) -> bytes:
    data = j2.encode(reply)
    return data if "jsonrpc" in reply else data + b"\n"


def _result_bytes(call: j2.Call, result: Any) -> bytes:
    try:
        return _encode_reply(j2.result_reply(call, result))
    except (TypeError, ValueError, msgspec.EncodeError) as exc:
        err = Internal(message=f"cannot encode the result of {call.method}: {exc}")
        return _encode_reply(j2.error_reply(call, err))


_go_json: list[Any] = []


def _go_json_module() -> Any:
    """The Go JSON-RPC transport (Go's exact argument semantics), or None if absent."""
    if not _go_json:
        try:
            _go_json.append(importlib.import_module("wirecall.transport.jsonrpc"))
        except ImportError:
            _go_json.append(None)
    return _go_json[0]


def _serve_go(
    server: Dispatcher, item: Any, body: bytes, peer: str, respond: Respond,
    slots: CallSlots | None,
) -> bool:
    """Serve a Go 1.0 request with the Go JSON-RPC transport's functions (True if it did)."""
    go = _go_json_module()
    if go is None:
        return False
    if type(item) is j2.ErrorReply and item.stream:
        if body.lstrip()[:1] != b"{":
            return False
        # several JSON values in one body: Go's ServeConn answers each, one line apiece
        task = asyncio.ensure_future(go.handle_http_body(server, body, peer, slots))
        task.add_done_callback(lambda t: respond(None if t.cancelled() or t.exception()
                                                 else (t.result() or None)))
        return True
    if item.raw is None:
        return False
    try:
        go.start_go_json_call(server, item.raw, peer, respond, transport="http")
    except RpcError:  # what Go would drop the connection on: answer in our own words
        return False
    return True


def handle_body(
    server: Dispatcher,
    body: bytes,
    make_ctx: Callable[[], Context],
    respond: Respond,
    peer: str = "",
    slots: CallSlots | None = None,
) -> None:
    """Run every call in a JSON-RPC body and ``respond(bytes)`` once (``None``: no body).

    Single requests answer with one object, batches with an array of the replies in
    completion order; notifications run but are not answered. A request without
    ``"jsonrpc": "2.0"`` is answered as Go's ``net/rpc/jsonrpc`` server answers it (by
    :mod:`wirecall.transport.jsonrpc` when present, else by :mod:`~wirecall.protocol.jsonrpc2`).
    """
    items, is_batch = j2.parse(body)
    handle_items(server, items, is_batch, body, make_ctx, respond, peer, slots)


def call_ctx(make_ctx: Callable[[], Context], call: j2.Call) -> Context:
    """The context of one call: the connection's, with the call's own metadata on top."""
    ctx = make_ctx()
    if call.metadata:  # wirecall's "metadata" member adds to (overrides) the connection's
        md = dict(call.metadata)
        timeout = md.pop(TIMEOUT_KEY, None)
        if timeout is not None:  # the caller's deadline, carried over the WebSocket
            with contextlib.suppress(TypeError, ValueError):  # not a number: no deadline
                ctx.deadline = time.monotonic() + max(0.0, float(timeout))
        ctx.metadata = {**ctx.metadata, **md}
    return ctx


def handle_items(
    server: Dispatcher,
    items: list[j2.Call | j2.ErrorReply],
    is_batch: bool,
    body: bytes,
    make_ctx: Callable[[], Context],
    respond: Respond,
    peer: str = "",
    slots: CallSlots | None = None,
) -> None:
    """:func:`handle_body` for a body already parsed (:func:`~wirecall.protocol.jsonrpc2.parse`).

    ``slots``: the connection's calls in flight; a call over its limit is answered
    ``RESOURCE_EXHAUSTED`` (in a batch: that element). A batch starts :data:`BATCH_TURN`
    calls per loop turn, so a large one does not stall the other connections; once its
    results pass ``slots.max_answer`` bytes, the calls not started yet are answered
    ``RESOURCE_EXHAUSTED`` instead of run (one answer cannot grow without bound)."""
    if not is_batch:
        item = items[0]
        if (item.raw is not None or (type(item) is j2.ErrorReply and item.stream)) and _serve_go(
            server, item, body, peer, respond, slots
        ):
            return
        if type(item) is j2.ErrorReply:
            respond(_encode_reply(item.reply))
            return
        call: j2.Call = item  # type: ignore[assignment]
        if call.notify:

            def notified(_r: Any, exc: BaseException | None) -> None:
                if exc is not None:
                    log.debug("notification %s failed: %s", call.method, exc)
                respond(None)

            _start(server, call, call_ctx(make_ctx, call), notified, slots)
            return

        ctx = call_ctx(make_ctx, call)
        ctx.request_size = len(body)  # the body (HTTP) or message (WebSocket) of this call

        def done(result: Any, exc: BaseException | None) -> None:
            if exc is None:
                data = _result_bytes(call, result)
            else:
                data = _encode_reply(j2.error_reply(call, as_rpc_error(exc)))
            ctx.response_size = len(data)
            respond(data)

        _start(server, call, ctx, done, slots)
        return

    replies: list[j2.Reply] = []
    left = [len(items)]
    size = [0]  # bytes of the results so far
    cap = slots.max_answer if slots is not None else None

    def one_done() -> None:
        left[0] -= 1
        if left[0] == 0:
            respond(j2.encode_replies(replies, True))

    def run(first: int) -> None:
        end = min(first + BATCH_TURN, len(items))
        for item in items[first:end]:
            if type(item) is j2.ErrorReply:
                replies.append(item.reply)
                one_done()
                continue
            c: j2.Call = item  # type: ignore[assignment]
            if cap is not None and size[0] > cap:
                if not c.notify:
                    replies.append(j2.error_reply(c, ResourceExhausted(
                        message=f"not run: the batch's answer passed limits.max_unsent_bytes "
                                f"({cap} bytes)")))
                one_done()
                continue
            _start(server, c, call_ctx(make_ctx, c), _batch_cb(c, replies, one_done, size),
                   slots)
        if end < len(items):
            asyncio.get_running_loop().call_soon(run, end)

    run(0)


def _batch_cb(
    call: j2.Call, replies: list[j2.Reply], one_done: Callable[[], None], size: list[int]
) -> Callable[[Any, BaseException | None], None]:
    def cb(result: Any, exc: BaseException | None) -> None:
        if not call.notify:
            if exc is None:
                reply = j2.result_reply(call, result)
                try:
                    size[0] += len(j2.encode(result))
                except (TypeError, ValueError, msgspec.EncodeError) as e:
                    err = Internal(message=f"cannot encode the result of {call.method}: {e}")
                    reply = j2.error_reply(call, err)
            else:
                reply = j2.error_reply(call, as_rpc_error(exc))
            replies.append(reply)
        one_done()

    return cb


def as_rpc_error(exc: BaseException) -> RpcError:
    """``exc`` as the error a JSON-RPC peer receives (an unexpected one is INTERNAL)."""
    if isinstance(exc, RpcError):
        return exc
    return Internal(message=f"{type(exc).__name__}: {exc}")
