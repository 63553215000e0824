"""``Auth.install(server)``: the bearer-token check as a call observer. Inline handlers stay
inline and the native fast lane stays open; refused calls are reported to the other observers
(the access log logs them); streams are checked too; an ``async`` token check falls back to
the interceptor. ``test_auth_wires.py`` runs the same rules on every wire."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Awaitable

import msgspec
import pytest

import wirecall
from wirecall import Context, Status, method
from wirecall.auth import Auth, bearer
from wirecall.observability.accesslog import AccessLog


class Calc:
    @method(inline=True)
    def Add(self, a: int, b: int) -> int:
        ctx = wirecall.current_context()
        assert ctx is not None and ctx.metadata.get("authorization", "").startswith("Bearer ")
        return a + b

    async def Who(self, ctx: Context) -> str:
        return ctx.metadata.get("authorization", "")

    async def Count(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i


def _auth(tokens: object = None) -> Auth:
    return Auth(tokens=tokens or {"tok-a": "alice", "tok-o": "ops"},  # type: ignore[arg-type]
                rules={"Calc.Who": ["ops"]}, public=["Calc.Count"])


async def _status(c: wirecall.Client, name: str, *args: object, **kw: object) -> object:
    try:
        return await c.call(name, *args, timeout=5, **kw)  # type: ignore[arg-type]
    except wirecall.RpcError as exc:
        return exc.status


async def test_fast_lane_stays_open_and_refusals_are_logged() -> None:
    server = wirecall.Server()
    server.register(Calc())
    _auth().install(server)
    out = io.StringIO()
    log = AccessLog(server, fmt="json", stream=out)  # added after Auth: still sees refusals
    assert server.interceptors == ()
    assert server.fast_entry("Calc.Add", msgspec.msgpack) is not None
    [url] = await server.start("tcp://127.0.0.1:0")
    try:
        async with await wirecall.connect(url) as c:
            assert await _status(c, "Calc.Add", 1, 2) == Status.UNAUTHENTICATED
            assert await _status(c, "Calc.Add", 1, 2, metadata=bearer("bad")) \
                == Status.UNAUTHENTICATED
            assert await _status(c, "Calc.Add", 1, 2, metadata=bearer("tok-a")) == 3
            assert await _status(c, "Calc.Who", metadata=bearer("tok-a")) \
                == Status.PERMISSION_DENIED
            assert await _status(c, "Calc.Who", metadata=bearer("tok-o")) == "Bearer tok-o"
            # checked before the lookup: no credentials, no hint about what exists
            assert await _status(c, "Calc.Nope") == Status.UNAUTHENTICATED
            assert await _status(c, "Calc.Nope", metadata=bearer("tok-a")) \
                == Status.UNIMPLEMENTED
            assert [x async for x in c.stream("Calc.Count", [2])] == [0, 1]  # public
    finally:
        await server.close(drain_timeout=1)
    log.close()
    got = [(x["method"], x["status"]) for x in map(json.loads, out.getvalue().splitlines())]
    assert got[:5] == [("Calc.Add", "UNAUTHENTICATED"), ("Calc.Add", "UNAUTHENTICATED"),
                       ("Calc.Add", "OK"), ("Calc.Who", "PERMISSION_DENIED"), ("Calc.Who", "OK")]
    # the interceptor form closes the lane (every call runs in a task)
    server2 = wirecall.Server()
    server2.register(Calc())
    server2.add_interceptor(_auth())
    assert server2.fast_entry("Calc.Add", msgspec.msgpack) is None


async def test_streams_are_checked() -> None:
    server = wirecall.Server()
    server.register(Calc())
    Auth(tokens={"tok-a"}).install(server)
    [url] = await server.start("tcp://127.0.0.1:0")
    try:
        async with await wirecall.connect(url) as c:
            with pytest.raises(wirecall.Unauthenticated):
                [x async for x in c.stream("Calc.Count", [2])]
            assert [x async for x in c.stream("Calc.Count", [2],
                                              metadata=bearer("tok-a"))] == [0, 1]
    finally:
        await server.close(drain_timeout=1)


@pytest.mark.parametrize("wire", ["tcp", "grpc", "http"])
async def test_token_callables_sync_observer_async_interceptor(wire: str) -> None:
    def sync_check(token: str) -> str | None:
        return "ops" if token == "dyn" else None

    async def async_check(token: str) -> str | None:
        return "ops" if token == "dyn" else None

    for check, observer in ((sync_check, True), (async_check, False)):
        server = wirecall.Server()
        server.register(Calc())
        auth = _auth(check)
        auth.install(server)
        assert (auth in server.observers, auth in server.interceptors) == (observer, not observer)
        [url] = await server.start(f"{wire}://127.0.0.1:0")
        try:
            async with await wirecall.connect(url) as c:
                assert await _status(c, "Calc.Who", metadata=bearer("dyn")) == "Bearer dyn"
                assert await _status(c, "Calc.Who", metadata=bearer("x")) \
                    == Status.UNAUTHENTICATED
                assert await _status(c, "Calc.Who") == Status.UNAUTHENTICATED
        finally:
            await server.close(drain_timeout=1)


async def test_interceptor_form_still_checks_every_wire_path() -> None:
    server = wirecall.Server(interceptors=[_auth()])
    server.register(Calc())
    [url] = await server.start("tcp://127.0.0.1:0")
    try:
        async with await wirecall.connect(url) as c:
            assert await _status(c, "Calc.Add", 1, 2) == Status.UNAUTHENTICATED
            assert await _status(c, "Calc.Add", 1, 2, metadata=bearer("tok-a")) == 3
            assert await _status(c, "Calc.Who", metadata=bearer("tok-a")) \
                == Status.PERMISSION_DENIED
    finally:
        await server.close(drain_timeout=1)


async def test_a_sync_check_returning_an_awaitable_is_refused_clearly() -> None:
    async def later(token: str) -> str:
        return "ops"

    def sneaky(token: str) -> Awaitable[str]:
        return later(token)  # a plain function returning a coroutine: cannot be awaited here

    server = wirecall.Server()
    server.register(Calc())
    _auth(sneaky).install(server)
    [url] = await server.start("tcp://127.0.0.1:0")
    try:
        async with await wirecall.connect(url) as c:
            with pytest.raises(wirecall.RpcError, match="returned an awaitable") as ei:
                await c.call("Calc.Who", metadata=bearer("dyn"), timeout=5)
            assert ei.value.status == Status.INTERNAL
    finally:
        await server.close(drain_timeout=1)
