"""The per-endpoint pool (``wirecall.cluster.pool.Pool``): connections dialled lazily and
reused, never more than ``size``, the least busy one picked, broken ones replaced, failed
dials backed off, closing. Fake connections for the bookkeeping; a real tcp:// server for
a connection broken under a client."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

import wirecall
from wirecall import ConnectError, Unavailable, method
from wirecall.cluster.pool import Pool
from wirecall.transport.base import ClientConnection


class FakeConn(ClientConnection):
    def __init__(self, n: int) -> None:
        self.n = n
        self._closed = False
        self.busy = 0
        self.answers_ping = True

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        return self.busy

    async def call(self, method: str, params: list[Any] | dict[str, Any],
                   timeout: float | None, metadata: Mapping[str, str] | None,
                   result_type: Any) -> Any:
        return self.n

    async def ping(self, timeout: float | None = None) -> float:
        if not self.answers_ping:
            raise Unavailable(message="no pong")
        return 0.0

    async def aclose(self) -> None:
        self._closed = True


class Dialer:
    """Counts dials; fails the next ``fail`` of them; ``delay`` seconds per dial."""

    def __init__(self) -> None:
        self.dials = 0
        self.made: list[FakeConn] = []
        self.fail = 0
        self.oserror = False
        self.delay = 0.0

    async def __call__(self) -> ClientConnection:
        self.dials += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            self.fail -= 1
            if self.oserror:
                raise OSError("connection refused")
            raise ConnectError(message="refused")
        conn = FakeConn(len(self.made))
        self.made.append(conn)
        return conn


async def test_a_connection_is_dialled_lazily_and_reused() -> None:
    d = Dialer()
    pool = Pool(d, 1)
    assert d.dials == 0 and pool.get_nowait() is None
    first = await pool.get()
    assert d.dials == 1
    for _ in range(5):
        assert await pool.get() is first
        assert pool.get_nowait() is first
    assert d.dials == 1
    await pool.aclose()


async def test_concurrent_first_calls_share_one_dial() -> None:
    d = Dialer()
    d.delay = 0.05
    pool = Pool(d, 1)
    conns = await asyncio.gather(*(pool.get() for _ in range(10)))
    assert d.dials == 1 and len(set(map(id, conns))) == 1
    await pool.aclose()


async def test_the_pool_grows_to_its_size_and_no_further() -> None:
    d = Dialer()
    pool = Pool(d, 3)
    a = await pool.get()
    a.busy = 1  # type: ignore[attr-defined]  # a call in flight: grow before stacking
    b = await pool.get()
    assert b is not a
    b.busy = 1  # type: ignore[attr-defined]
    c = await pool.get()
    assert len({id(a), id(b), id(c)}) == 3
    c.busy = 2  # type: ignore[attr-defined]
    for _ in range(10):
        await pool.get()
    assert d.dials == 3 and len(pool.connections) == 3
    await pool.aclose()


async def test_calls_go_to_the_connection_with_the_fewest_in_flight() -> None:
    d = Dialer()
    pool = Pool(d, 3)
    await pool.fill()
    a, b, c = d.made
    a.busy, b.busy, c.busy = 5, 1, 3
    assert pool.get_nowait() is b
    b.busy = 9
    assert await pool.get() is c


async def test_a_closed_connection_is_replaced_on_the_next_call() -> None:
    d = Dialer()
    pool = Pool(d, 1)
    first = await pool.get()
    await first.aclose()  # broken under the pool
    assert pool.get_nowait() is None
    second = await pool.get()
    assert second is not first and not second.closed and d.dials == 2
    assert pool.connections == [second]
    await pool.aclose()


async def test_check_closes_connections_that_do_not_answer() -> None:
    d = Dialer()
    pool = Pool(d, 2)
    await pool.fill()
    a, b = d.made
    a.answers_ping = False
    assert await pool.check() == 1
    assert a.closed and not b.closed
    assert pool.connections == [b]
    b.busy = 1
    fresh = await pool.get()  # a's slot is dialled again
    assert fresh not in (a, b) and d.dials == 3
    await pool.aclose()


async def test_failed_dials_back_off_and_fail_fast_meanwhile() -> None:
    d = Dialer()
    d.fail = 1
    pool = Pool(d, 1, backoff_initial=0.2, name="ep")
    with pytest.raises(ConnectError):
        await pool.get()
    with pytest.raises(Unavailable, match="reconnecting in") as ei:
        await pool.get()  # within the backoff: no dial, a fast UNAVAILABLE
    assert "refused" in ei.value.message  # naming the last error
    assert d.dials == 1
    await asyncio.sleep(0.25)
    conn = await pool.get()  # backoff over: dialled again, and it works
    assert d.dials == 2 and not conn.closed
    await pool.aclose()


async def test_an_os_error_while_dialling_is_a_connect_error() -> None:
    d = Dialer()
    d.fail, d.oserror = 1, True
    pool = Pool(d, 1, name="ep")
    with pytest.raises(ConnectError, match="ep: connection refused"):
        await pool.get()
    await pool.aclose()


async def test_fill_raises_only_when_no_slot_could_be_dialled() -> None:
    d = Dialer()
    d.fail = 1
    pool = Pool(d, 2)
    await pool.fill()  # one of two failed: fine
    assert len(pool.connections) == 1
    await pool.aclose()
    d2 = Dialer()
    d2.fail = 2
    with pytest.raises(ConnectError):
        await Pool(d2, 2).fill()


async def test_close_closes_every_connection_and_refuses_more() -> None:
    d = Dialer()
    pool = Pool(d, 2)
    await pool.fill()
    await pool.aclose()
    assert all(c.closed for c in d.made)
    assert pool.connections == []
    with pytest.raises(Unavailable, match="closed"):
        await pool.get()


def test_size_must_be_positive() -> None:
    async def dial() -> ClientConnection:
        raise AssertionError

    with pytest.raises(ValueError, match="at least 1"):
        Pool(dial, 0)


# -- with a real server --------------------------------------------------------------------


class Svc:
    @method(inline=True)
    def Add(self, a: int, b: int) -> int:
        return a + b


async def test_a_connection_the_server_dropped_is_replaced(serve: Any) -> None:
    url = await serve(Svc())
    async with await wirecall.connect(url, pool_size=2) as client:
        before = list(client.pool.connections)
        assert len(before) == 2
        await before[0].aclose()  # as if the peer had reset it
        # concurrent calls: the first goes to the live connection, the next ones find it
        # busy and a slot free, so the pool redials instead of stacking calls
        got = await asyncio.gather(*(client.call("Svc.Add", i, i) for i in range(16)))
        assert got == [2 * i for i in range(16)]
        live = client.pool.connections
        assert len(live) == 2 and before[0] not in live and before[1] in live
        assert all(not c.closed for c in live)


async def test_fill_while_a_call_dials_dials_once() -> None:
    """A warm-up ``fill()`` racing a call's ``get()`` must not dial the slot twice: the second
    dial would replace (and close) the connection the call is using."""
    dials = 0

    async def dial() -> ClientConnection:
        nonlocal dials
        dials += 1
        await asyncio.sleep(0.05)
        return FakeConn(dials)

    pool = Pool(dial, 1)
    got, _ = await asyncio.gather(pool.get(), pool.fill())
    assert dials == 1
    assert not got.closed and pool.connections == [got]
    await pool.aclose()
