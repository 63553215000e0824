"""Per-call context: deadline, metadata, peer and cancellation, carried through contextvars.

A handler asks for it with a parameter annotated ``Context``; code anywhere below a handler
reads it with :func:`current_context`. A client call made while a context is current inherits
the remaining deadline and the metadata (the onward-call rule), unless the call overrides them.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import msgspec

__all__ = ["CURRENT", "EMPTY_METADATA", "Context", "current_context"]

_monotonic = time.monotonic
#: the metadata of a call that carried none (read-only, shared)
EMPTY_METADATA: Mapping[str, str] = MappingProxyType({})


class Context(msgspec.Struct, eq=False, weakref=True):
    """What a handler knows about the call it is serving.

    ``deadline`` is an absolute :func:`time.monotonic` value (``None``: no deadline).
    ``metadata`` is the caller's string key/value pairs. ``peer`` is the remote address as a
    string (``"127.0.0.1:53122"``, ``"unix:/path"``). ``cancelled`` turns true when the caller
    cancelled the call, its deadline passed, or the connection dropped.

    A msgspec ``Struct`` (built in C: a third of a plain class's cost on every call) that
    keeps object semantics: compared and hashed by identity, weak-referenceable. Construct it
    as ``Context(method, metadata, deadline, peer, transport)``.
    """

    method: str = ""
    metadata: Mapping[str, str] = EMPTY_METADATA
    deadline: float | None = None
    peer: str = ""
    transport: str = ""
    #: the peer certificate's identity on a TLS wire with a client certificate (its first
    #: URI or DNS subjectAltName, else its CN; see ``transport.tls.peer_identity``), else ""
    identity: str = ""
    #: bytes of the request message as it came off the wire (the frame, HTTP or WebSocket
    #: body, gRPC message, gob or JSON value), and of the encoded reply once the transport has
    #: written it (an error reply too): -1 where not known (a stream, a batch item, a gRPC
    #: error, which travels in trailers)
    request_size: int = -1
    response_size: int = -1
    _cancelled: bool = False
    _task: Any = None

    def time_remaining(self) -> float | None:
        """Seconds left before the deadline (never negative), or ``None`` if there is none."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - _monotonic())

    @property
    def expired(self) -> bool:
        return self.deadline is not None and _monotonic() >= self.deadline

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def expire(self) -> None:
        """The deadline timer fired: the deadline counts as passed from now on (an event loop's
        clock may fire it a millisecond before ``time.monotonic()`` gets there), and the call
        is cancelled."""
        now = _monotonic()
        if self.deadline is None or self.deadline > now:
            self.deadline = now
        self.cancel()

    def cancel(self) -> None:
        """Mark the call cancelled and cancel the task running its handler, if any."""
        self._cancelled = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()

    def __repr__(self) -> str:
        return (
            f"Context(method={self.method!r}, peer={self.peer!r}, "
            f"remaining={self.time_remaining()!r}, metadata={dict(self.metadata)!r})"
        )


#: the context of the call being served (set by whoever runs a handler: the server, or a
#: transport running a fast-lane entry; see ``wirecall.seam.Dispatcher.fast_lane``)
CURRENT: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "wirecall_context", default=None
)


def current_context() -> Context | None:
    """The context of the call being served by this task, or ``None`` outside a handler."""
    return CURRENT.get()
