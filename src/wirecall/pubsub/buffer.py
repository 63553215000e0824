"""The bounded buffer every broker gives each subscriber, and its overflow policy.

A broker delivers into the buffer without ever waiting (``put`` is synchronous); the
subscriber takes from it at its own pace. When a slow subscriber's buffer is full:

* ``"drop_oldest"`` (the default, Redis Pub/Sub's own spirit: at-most-once): the oldest
  message is dropped and counted in :attr:`SubscriberBuffer.dropped`;
* ``"close"``: the subscription ends with ``RESOURCE_EXHAUSTED`` naming the limit (the
  subscriber learns it fell behind and may resubscribe, in Streams mode from where it was).

Either way the broker and the other subscribers are never slowed by one slow reader.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Final, Generic, TypeVar

from ..errors import InvalidArgument, ResourceExhausted

__all__ = ["OVERFLOW_POLICIES", "SubscriberBuffer", "check_policy", "fan_out"]

T = TypeVar("T")
OVERFLOW_POLICIES: Final = ("drop_oldest", "close")


def check_policy(overflow: str, limit: int) -> None:
    if overflow not in OVERFLOW_POLICIES:
        raise InvalidArgument(message=f"overflow: {overflow!r} is not one of "
                              f"{', '.join(OVERFLOW_POLICIES)}")
    if not isinstance(limit, int) or limit < 1:
        raise InvalidArgument(message=f"limit: must be a positive number of messages, "
                              f"not {limit!r}")


class SubscriberBuffer(Generic[T]):
    """A bounded FIFO with one reader: ``put`` never blocks, ``await get()`` waits."""

    __slots__ = ("_error", "_items", "_waiter", "closed", "dropped", "limit", "overflow")

    def __init__(self, limit: int = 10_000, overflow: str = "drop_oldest") -> None:
        check_policy(overflow, limit)
        self.limit = limit
        self.overflow = overflow
        self.dropped = 0
        self.closed = False
        self._items: deque[T] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def room(self) -> int:
        return self.limit - len(self._items)

    def put(self, item: T) -> bool:
        """Deliver one item; False if the buffer is closed (or just closed by overflow)."""
        if self.closed:
            return False
        items = self._items
        if len(items) >= self.limit:
            if self.overflow == "close":
                self.fail(ResourceExhausted(
                    message=f"subscriber fell {self.limit} messages behind (buffer limit)"))
                return False
            items.popleft()
            self.dropped += 1
        items.append(item)
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)
        return True

    def put_first(self, item: T) -> None:
        """Put ``item`` before everything buffered (the service's confirmation message)."""
        self._items.appendleft(item)
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def fail(self, exc: BaseException) -> None:
        """End the iteration with ``exc`` once the buffered items are taken... except for
        overflow, which ends it at once (the items are what the subscriber fell behind on)."""
        if self._error is None:
            self._error = exc
        if isinstance(exc, ResourceExhausted):
            self._items.clear()
        self.close()

    def close(self) -> None:
        self.closed = True
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def get(self) -> T:
        """The next item; raises the failure, or ``StopAsyncIteration`` once closed."""
        items = self._items
        while not items:
            if self._error is not None:
                raise self._error
            if self.closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return items.popleft()

    def drain(self) -> list[Any]:
        out = list(self._items)
        self._items.clear()
        return out


def fan_out(subs: list[Any], message: str) -> list[Any] | None:
    """Put ``message`` in every subscription's ``buffer``, as ``sub.convert(message)`` where
    it has one, made once per message for all the subscriptions with the same ``convert``
    (on a server, one reply object for all its subscribers). Returns the subscriptions whose
    buffer closed on overflow (policy ``close``), or None."""
    closed = None
    made: dict[Any, Any] = {}
    for sub in subs:
        conv = sub.convert
        if conv is None:
            item: Any = message
        else:
            item = made.get(conv)
            if item is None:
                item = made[conv] = conv(message)
        buf = sub.buffer
        if not buf.put(item) and buf.closed:
            closed = [*(closed or ()), sub]
    return closed
