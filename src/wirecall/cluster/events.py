"""Every decision the cluster layer takes, readable in code: counters and a bounded event log.

::

    client.events.counters["retries"]          # totals by name
    client.events.recent(10)                   # the last events (Event tuples)
    client.events.subscribe(print)             # a callback per event (keep it cheap)

Event kinds: ``endpoint_added`` / ``endpoint_removed`` (discovery), ``endpoints_kept``
(a registry outage or an empty update: the last set keeps serving), ``breaker`` (a
transition: ``detail`` is ``"closed->open"``...), ``ejected`` / ``uneject`` (outlier
detection), ``retry``, ``retry_throttled`` (budget empty), ``hedge``, ``throttled`` (adaptive
throttling rejected locally), ``pushback`` (the server asked to back off).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["Event", "Events"]

log = logging.getLogger("wirecall.cluster")


class Event(NamedTuple):
    at: float  # time.monotonic()
    kind: str
    endpoint: str
    detail: str


class Events:
    def __init__(self, keep: int = 1000) -> None:
        self.counters: Counter[str] = Counter()
        self._log: deque[Event] = deque(maxlen=keep)
        self._subscribers: list[Callable[[Event], None]] = []

    def emit(self, kind: str, endpoint: str = "", detail: str = "") -> None:
        self.counters[kind] += 1
        ev = Event(time.monotonic(), kind, endpoint, detail)
        self._log.append(ev)
        if kind in ("breaker", "ejected", "endpoints_kept", "endpoint_removed"):
            log.info("cluster %s %s %s", kind, endpoint, detail)
        for fn in self._subscribers:
            try:
                fn(ev)
            except Exception:
                log.exception("cluster event subscriber failed")

    def count(self, kind: str) -> int:
        self.counters[kind] += 1
        return self.counters[kind]

    def recent(self, n: int | None = None, kind: str | None = None) -> list[Event]:
        evs = [e for e in self._log if kind is None or e.kind == kind]
        return evs if n is None else evs[-n:]

    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``fn(event)`` for every event; returns an unsubscribe function."""
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn)
