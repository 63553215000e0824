"""Connection pool for one endpoint: the tutorial's ``RPCPool``, done properly.

``size`` connections, dialled lazily; calls go to the connection with the fewest calls in
flight (all are multiplexed, so nothing is "checked out"). A connection that closes or breaks
is replaced on the next call; while dialling fails, calls fail fast with ``UNAVAILABLE`` and
redials back off exponentially (with jitter) instead of hammering a dead server. Keepalive
pings (transport level) find dead peers; :meth:`check` pings every connection on demand.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

from ..errors import ConnectError, RpcError, Unavailable
from ..transport.base import ClientConnection

__all__ = ["Pool"]


#: seconds a replaced connection (told GOAWAY) is left to finish its calls at most
REPLACED_GRACE = 300.0


async def _close_when_idle(conn: ClientConnection) -> None:
    """Close a replaced connection once its calls in flight are done (the server answers
    them before it closes: a rolling restart loses none) or after ``REPLACED_GRACE``."""
    end = time.monotonic() + REPLACED_GRACE
    while conn.pending and time.monotonic() < end:
        await asyncio.sleep(0.05)
    await conn.aclose()


class Pool:
    def __init__(
        self,
        dial: Callable[[], Awaitable[ClientConnection]],
        size: int = 1,
        *,
        backoff_initial: float = 0.05,
        backoff_max: float = 5.0,
        name: str = "",
    ) -> None:
        if size < 1:
            raise ValueError("pool size must be at least 1")
        self._dial = dial
        self.size = size
        self.name = name
        self._conns: list[ClientConnection | None] = [None] * size
        self._dialing: list[asyncio.Task[ClientConnection] | None] = [None] * size
        #: replaced connections finishing their calls (closed by aclose too)
        self._retiring: dict[ClientConnection, asyncio.Task[None]] = {}
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._backoff = 0.0
        self._retry_at = 0.0
        self._last_error: RpcError | None = None
        self._closed = False
        self._rr = 0

    @property
    def connections(self) -> list[ClientConnection]:
        return [c for c in self._conns if c is not None and not c.closed]

    def get_nowait(self) -> ClientConnection | None:
        """A live connection without awaiting (the hot path), or None."""
        conns = self._conns
        if self.size == 1:
            c = conns[0]
            return c if c is not None and not c.closed else None
        best: ClientConnection | None = None
        missing = False
        for c in conns:
            if c is None or c.closed:
                missing = True
                continue
            if best is None or c.pending < best.pending:
                best = c
        if missing and best is not None and best.pending > 0:
            return None  # grow the pool before stacking calls on a busy connection
        return best

    async def get(self) -> ClientConnection:
        c = self.get_nowait()
        if c is not None:
            return c
        if self._closed:
            raise Unavailable(message=f"pool {self.name} is closed")
        # pick a free slot to (re)dial
        slots = [i for i, c in enumerate(self._conns) if c is None or c.closed]
        if not slots:  # all alive (a race): use one
            live = self.connections
            if live:
                return min(live, key=lambda x: x.pending)
        i = slots[0] if slots else 0
        task = self._dialing[i]
        if task is None:
            now = time.monotonic()
            if now < self._retry_at:
                live = self.connections
                if live:
                    return min(live, key=lambda x: x.pending)
                raise ConnectError(  # never sent: a cluster client re-routes it
                    message=f"{self.name}: reconnecting in {self._retry_at - now:.2f}s; "
                    f"last error: {self._last_error.message if self._last_error else '-'}"
                )
            task = asyncio.ensure_future(self._dial_slot(i))
            self._dialing[i] = task
        return await asyncio.shield(task)

    async def _dial_slot(self, i: int) -> ClientConnection:
        try:
            conn = await self._dial()
        except RpcError as exc:
            self._last_error = exc
            self._backoff = min(
                self._backoff_max, max(self._backoff_initial, self._backoff * 2)
            )
            self._retry_at = time.monotonic() + self._backoff * (0.5 + random.random() / 2)
            raise
        except OSError as exc:
            err = ConnectError(message=f"{self.name}: {exc}")
            self._last_error = err
            raise err from None
        finally:
            self._dialing[i] = None
        self._backoff = 0.0
        self._retry_at = 0.0
        old = self._conns[i]
        self._conns[i] = conn
        if old is not None and old.pending:  # told GOAWAY: its calls in flight finish first
            self._retire(old)
        elif old is not None:
            await old.aclose()
        if self._closed:
            await conn.aclose()
            raise Unavailable(message=f"pool {self.name} is closed")
        return conn

    def _retire(self, conn: ClientConnection) -> None:
        task = self._retiring[conn] = asyncio.ensure_future(_close_when_idle(conn))
        task.add_done_callback(lambda _t: self._retiring.pop(conn, None))

    async def fill(self) -> None:
        """Dial every slot now (connect eagerly); raises if none could be dialled. A slot a
        call is already dialling is awaited, not dialled twice (a second dial would replace,
        and close, the connection the call is using)."""
        tasks = []
        for i in range(self.size):
            conn = self._conns[i]
            if conn is not None and not conn.closed:
                continue
            task = self._dialing[i]
            if task is None:
                task = asyncio.ensure_future(self._dial_slot(i))
                self._dialing[i] = task
            tasks.append(asyncio.shield(task))
        results = await asyncio.gather(*tasks, return_exceptions=True)
        if results and all(isinstance(r, BaseException) for r in results):
            err = results[0]
            assert isinstance(err, BaseException)
            raise err

    async def check(self, timeout: float = 2.0) -> int:
        """Ping every connection; close the ones that do not answer. Returns live count."""
        alive = 0
        for c in self.connections:
            try:
                await c.ping(timeout)
                alive += 1
            except (RpcError, OSError):
                await c.aclose()
        return alive

    async def aclose(self) -> None:
        self._closed = True
        for t in self._dialing:
            if t is not None:
                t.cancel()
        conns, self._conns = self._conns, [None] * self.size
        for c in [*conns, *self._retiring]:
            if c is not None:
                await c.aclose()
