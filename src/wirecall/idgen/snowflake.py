"""Snowflake IDs: ``time | worker | sequence`` packed in a 63-bit integer.

:class:`Layout` says how many bits each field has, the time unit and the epoch (Twitter's
41 ms + 10 worker + 12 sequence bits by default). :class:`Snowflake` issues the IDs of one
worker: strictly increasing, decodable, and never two alike as long as the worker id is held
by one generator at a time (``idgen.lease`` sees to that). No I/O here: the clock is a
callable (``time.time_ns`` by default), and the wait for the next time unit goes through an
injectable ``sleep``, or is handed back to the caller (:meth:`Snowflake.take`) so an event
loop can wait without blocking.

What the generator refuses, with :class:`IssueRefused` (the service answers ``UNAVAILABLE``
so clients move to another node):

* the clock is behind the last issued unit by more than ``max_backward_ms`` (a smaller step
  is waited out), including behind the ``floor`` a restart starts from;
* the fence has passed (``fence_monotonic``: the worker-id lease may be about to expire);
* the time unit is beyond the reserved horizon (``reserved_until_ms``: the last timestamp
  persisted as "may be issued", so a later holder of the id starts above it);
* the time field would overflow its bits (the layout's lifetime is over).

Exhausting the sequence within one unit waits for the next unit; it never wraps.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "PRESETS",
    "TWITTER_EPOCH_MS",
    "Decoded",
    "IssueRefused",
    "Layout",
    "Snowflake",
]

TWITTER_EPOCH_MS = 1288834974657


class IssueRefused(Exception):
    """The generator will not issue now (clock behind, fence passed, horizon not reserved)."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """The fields of one snowflake ID (``time_ms``: Unix milliseconds of its time unit).

    Over gob the fields are Go's ``ID``, ``TimeMs``, ``Worker``, ``Sequence`` (a Go struct
    with those exported fields decodes it); every other wire keeps the names below."""

    #: gob's Go field names: Go spells the initialism ``ID`` (the others follow the rule)
    __go_fields__: ClassVar[dict[str, str]] = {"id": "ID"}

    id: int
    time_ms: int
    worker: int
    sequence: int


@dataclass(frozen=True, slots=True)
class Layout:
    """The bit layout: ``time_bits + worker_bits + sequence_bits <= 63`` (the sign bit stays
    clear), the time counted in ``unit_ms`` since ``epoch_ms`` (Unix milliseconds)."""

    time_bits: int = 41
    worker_bits: int = 10
    sequence_bits: int = 12
    unit_ms: int = 1
    epoch_ms: int = TWITTER_EPOCH_MS

    def __post_init__(self) -> None:
        for name in ("time_bits", "worker_bits", "sequence_bits", "unit_ms"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"layout: {name} must be a positive integer, not {v!r}")
        if not isinstance(self.epoch_ms, int) or self.epoch_ms < 0:
            raise ValueError(f"layout: epoch_ms must be an integer >= 0, not {self.epoch_ms!r}")
        total = self.time_bits + self.worker_bits + self.sequence_bits
        if total > 63:
            raise ValueError(f"layout: time_bits + worker_bits + sequence_bits = {total} > 63")

    @property
    def max_worker(self) -> int:
        return (1 << self.worker_bits) - 1

    @property
    def max_sequence(self) -> int:
        return (1 << self.sequence_bits) - 1

    @property
    def max_unit(self) -> int:
        return (1 << self.time_bits) - 1

    @property
    def ids_per_second(self) -> float:
        """The most one worker can issue per second."""
        return (self.max_sequence + 1) * 1000.0 / self.unit_ms

    def unit_of(self, unix_ms: int) -> int:
        return (unix_ms - self.epoch_ms) // self.unit_ms

    def ms_of(self, unit: int) -> int:
        return self.epoch_ms + unit * self.unit_ms

    def compose(self, unit: int, worker: int, sequence: int) -> int:
        if not 0 <= unit <= self.max_unit:
            raise ValueError(f"time unit {unit} outside 0..{self.max_unit}")
        if not 0 <= worker <= self.max_worker:
            raise ValueError(f"worker {worker} outside 0..{self.max_worker}")
        if not 0 <= sequence <= self.max_sequence:
            raise ValueError(f"sequence {sequence} outside 0..{self.max_sequence}")
        return (unit << (self.worker_bits + self.sequence_bits)) | (
            worker << self.sequence_bits) | sequence

    def decode(self, id_: int) -> Decoded:
        if not isinstance(id_, int) or isinstance(id_, bool):
            raise ValueError(f"id must be an integer, not {type(id_).__name__}")
        total = self.time_bits + self.worker_bits + self.sequence_bits
        if not 0 <= id_ < (1 << total):
            raise ValueError(f"id {id_} outside this layout's 0..2^{total}-1")
        seq = id_ & self.max_sequence
        worker = (id_ >> self.sequence_bits) & self.max_worker
        unit = id_ >> (self.worker_bits + self.sequence_bits)
        return Decoded(id_, self.ms_of(unit), worker, seq)

    def describe(self) -> str:
        return (f"time={self.time_bits},worker={self.worker_bits},seq={self.sequence_bits},"
                f"unit={self.unit_ms}ms,epoch={self.epoch_ms}")

    @classmethod
    def parse(cls, text: str) -> Layout:
        """A preset name (``twitter``, ``sonyflake``, ``baidu``) or ``k=v`` pairs separated by
        commas: ``time=41,worker=10,seq=12,unit=1ms,epoch=1288834974657`` (unknown keys are
        errors; missing ones take Twitter's values)."""
        text = text.strip()
        if text in PRESETS:
            return PRESETS[text]
        keys = {"time": "time_bits", "worker": "worker_bits", "seq": "sequence_bits",
                "unit": "unit_ms", "epoch": "epoch_ms"}
        kw: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            k, sep, v = part.partition("=")
            if not sep or k.strip() not in keys:
                raise ValueError(f"layout {text!r}: unknown field {part!r} "
                                 f"(use {', '.join(keys)} or a preset: {', '.join(PRESETS)})")
            v = v.strip()
            if k.strip() == "unit":
                v = v.removesuffix("ms").strip()
                if v.endswith("s"):
                    v = str(int(v[:-1]) * 1000)
            try:
                kw[keys[k.strip()]] = int(v)
            except ValueError:
                raise ValueError(f"layout {text!r}: {k.strip()} must be an integer") from None
        return cls(**kw)


#: named layouts (Sonyflake's and Baidu's bit counts, in wirecall's time|worker|seq order)
PRESETS: dict[str, Layout] = {
    "twitter": Layout(),
    "sonyflake": Layout(time_bits=39, worker_bits=16, sequence_bits=8, unit_ms=10,
                        epoch_ms=1735689600000),
    "baidu": Layout(time_bits=28, worker_bits=22, sequence_bits=13, unit_ms=1000,
                    epoch_ms=1463673600000),
}


def _no_fence() -> float:
    return math.inf


class Snowflake:
    """The IDs of one worker. Thread-safe; :meth:`next` and :meth:`batch` may block for up to
    one time unit (or ``max_backward_ms``), :meth:`take` never blocks.

    ``clock`` returns Unix nanoseconds (``time.time_ns``); ``clock_offset_ms`` is added to it
    (a test or a node started with ``--clock-offset-ms`` moves its clock). ``floor_ms``: issue
    only in time units after it (the last possible timestamp of a previous holder).
    """

    __slots__ = ("__weakref__", "_base_ns", "_clock", "_fence", "_hi_ns", "_last", "_lo_ns",
                 "_lock", "_max_seq", "_monotonic", "_prefix", "_seq", "_sleep", "_time_shift",
                 "_unit_ns", "_until_unit", "_worker_bits", "layout", "max_backward_ms",
                 "worker_id")

    def __init__(
        self,
        worker_id: int,
        layout: Layout | None = None,
        *,
        clock: Callable[[], int] = time.time_ns,
        clock_offset_ms: int = 0,
        max_backward_ms: int = 5,
        floor_ms: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.layout = lay = layout or Layout()
        if not 0 <= worker_id <= lay.max_worker:
            raise ValueError(f"worker id {worker_id} outside 0..{lay.max_worker}")
        if max_backward_ms < 0:
            raise ValueError("max_backward_ms must be >= 0")
        self.worker_id = worker_id
        self.max_backward_ms = max_backward_ms
        self._clock = clock
        self._sleep = sleep
        self._monotonic = monotonic
        self._unit_ns = lay.unit_ms * 1_000_000
        # unit = (clock() - base) // unit_ns, with the offset folded into the base
        self._base_ns = (lay.epoch_ms - clock_offset_ms) * 1_000_000
        self._time_shift = lay.worker_bits + lay.sequence_bits
        self._worker_bits = worker_id << lay.sequence_bits
        self._max_seq = lay.max_sequence
        self._lock = threading.Lock()
        #: the last time unit issued in, and its last sequence (starting "full" at the floor)
        self._last = -1
        self._seq = self._max_seq
        self._prefix = 0
        #: the clock readings (ns) of unit ``_last``: ``_lo_ns <= clock() < _hi_ns`` is
        #: ``t == _last`` without the division (an empty window until a unit is issued in)
        self._lo_ns = self._hi_ns = 0
        #: issuing stops when ``monotonic() >= fence()`` (set by the lease holder)
        self._fence: Callable[[], float] = _no_fence
        #: the first unit not yet reserved (persisted) for issuing; None: no reservation needed
        self._until_unit: int | None = None
        if floor_ms is not None:
            self.raise_floor(floor_ms)

    # -- what the lease holder sets -------------------------------------------------------

    def raise_floor(self, floor_ms: int) -> None:
        """Issue only in units after the one holding ``floor_ms`` (never lowers it)."""
        unit = self.layout.unit_of(floor_ms)
        with self._lock:
            if unit > self._last:
                self._last, self._seq = unit, self._max_seq
                self._prefix = (unit << self._time_shift) | self._worker_bits
                self._lo_ns = self._hi_ns = 0

    def set_fence(self, deadline: float | Callable[[], float]) -> None:
        """Stop issuing at ``deadline`` (``time.monotonic()`` seconds), or at what the
        callable returns, asked once per time unit (a lease's expiry moving forward)."""
        self._fence = deadline if callable(deadline) else (lambda: deadline)

    def reserve_until(self, unix_ms: int | None) -> None:
        """Allow units strictly before the one holding ``unix_ms`` (None: no limit)."""
        self._until_unit = None if unix_ms is None else self.layout.unit_of(unix_ms)

    def now_ms(self) -> int:
        """This generator's clock in Unix milliseconds (offset included)."""
        return (self._clock() - self._base_ns) // 1_000_000 + self.layout.epoch_ms

    @property
    def last_ms(self) -> int:
        """The Unix milliseconds of the last unit issued in (or of the floor)."""
        return self.layout.ms_of(self._last)

    # -- issuing ---------------------------------------------------------------------------

    def next(self) -> int:
        """One ID (blocks at most one unit, or ``max_backward_ms``)."""
        with self._lock:
            now = self._clock()
            if self._lo_ns <= now < self._hi_ns:  # still in the last unit issued in
                seq = self._seq + 1
                if seq <= self._max_seq:
                    self._seq = seq
                    return self._prefix | seq
            base, unit = self._base_ns, self._unit_ns
            t = (now - base) // unit
            if t > self._last:  # a new unit (the common way out of the fast path)
                self._check_new_unit(t)
                self._last, self._seq = t, 0
                self._prefix = prefix = (t << self._time_shift) | self._worker_bits
                self._lo_ns = lo = base + t * unit
                self._hi_ns = lo + unit
                return prefix
            while True:  # the unit is used up, or the clock is behind: wait or refuse
                got, wait = self._take_locked(1, t)
                if got:
                    return got[0].start
                self._sleep(wait)
                t = (self._clock() - self._base_ns) // self._unit_ns

    def take(self, n: int) -> tuple[list[range], float]:
        """Up to ``n`` IDs now, without blocking: ``(runs, wait)``; each run is a ``range``
        of consecutive IDs. Fewer than ``n`` (maybe none) when the current unit is used up:
        ``wait`` is then the seconds until more can be issued (else 0)."""
        with self._lock:
            t = (self._clock() - self._base_ns) // self._unit_ns
            return self._take_locked(n, t)

    def batch(self, n: int) -> list[int]:
        """``n`` IDs, increasing (blocks while the units they need pass)."""
        out: list[int] = []
        while len(out) < n:
            runs, wait = self.take(n - len(out))
            for r in runs:
                out.extend(r)
            if wait:
                self._sleep(wait)
        return out

    def _take_locked(self, n: int, t: int) -> tuple[list[range], float]:
        last = self._last
        if t < last:
            behind_ms = (last - t) * self.layout.unit_ms
            if behind_ms > self.max_backward_ms:
                raise IssueRefused(
                    f"clock is {behind_ms} ms behind the last issued time of worker "
                    f"{self.worker_id}; refusing until it catches up")
            return [], self._wait_for(last)
        if t > last:
            self._check_new_unit(t)
            self._last, self._seq = t, -1
            self._prefix = (t << self._time_shift) | self._worker_bits
            self._lo_ns = lo = self._base_ns + t * self._unit_ns
            self._hi_ns = lo + self._unit_ns
        seq = self._seq
        if seq >= self._max_seq:
            return [], self._wait_for(t)
        end = min(seq + n, self._max_seq)
        self._seq = end
        return [range(self._prefix | (seq + 1), (self._prefix | end) + 1)], 0.0

    def _check_new_unit(self, t: int) -> None:
        if self._monotonic() >= self._fence():
            raise IssueRefused(f"worker {self.worker_id}: lease fence passed; not issuing")
        until = self._until_unit
        if until is not None and t >= until:
            raise IssueRefused(
                f"worker {self.worker_id}: time {self.layout.ms_of(t)} is beyond the reserved "
                f"horizon {self.layout.ms_of(until)} (registry not reachable?)")
        if t > self.layout.max_unit:
            raise IssueRefused("the layout's time field is exhausted (epoch too old)")

    def _wait_for(self, unit: int) -> float:
        """Seconds until the clock reaches ``unit + 1``: a little over, never zero."""
        now_ns = self._clock() - self._base_ns
        return max(((unit + 1) * self._unit_ns - now_ns) / 1e9, 0.0) + 1e-5
