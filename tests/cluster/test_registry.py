"""The registry clients (``wirecall.cluster.registry``) against a real etcd 3.4 and a real
ZooKeeper 3.8: keys, atomic create, leases (renewal, revoke, expiry), prefix watches, an etcd
restart under a watch, and the missing-extra message."""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from support.etcd import EtcdServer
from wirecall.cluster.registry import (
    LeaseLost,
    Registry,
    WatchEvent,
    open_registry,
)


@pytest.fixture(params=["etcd", "zk"])
async def registry(request: pytest.FixtureRequest) -> AsyncIterator[Registry]:
    server = request.getfixturevalue("etcd_server" if request.param == "etcd"
                                     else "zookeeper_server")
    reg = open_registry(server.url)
    try:
        yield reg
    finally:
        await reg.close()


def ns() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


async def next_batch(it: AsyncIterator[list[WatchEvent]], timeout: float = 5.0) -> list[WatchEvent]:
    return await asyncio.wait_for(it.__anext__(), timeout)


async def test_put_get_prefix_delete(registry: Registry) -> None:
    p = ns()
    assert await registry.get(f"{p}/a") is None
    await registry.put(f"{p}/a", b"1")
    await registry.put(f"{p}/b", b"2")
    await registry.put(f"{p}x/c", b"other")          # shares the text prefix, not the dir
    await registry.put(f"{p}/a", b"3")                # overwrite
    assert await registry.get(f"{p}/a") == b"3"
    assert await registry.get_prefix(f"{p}/") == {f"{p}/a": b"3", f"{p}/b": b"2"}
    await registry.delete(f"{p}/a")
    await registry.delete(f"{p}/missing")             # deleting nothing is fine
    assert await registry.get_prefix(f"{p}/") == {f"{p}/b": b"2"}


async def test_create_is_atomic(registry: Registry) -> None:
    key = f"{ns()}/worker/7"
    results = await asyncio.gather(*(registry.create(key, str(i).encode()) for i in range(8)))
    assert sorted(results) == [False] * 7 + [True]
    winner = results.index(True)
    assert await registry.get(key) == str(winner).encode()
    assert await registry.create(key, b"again") is False


async def test_lease_keys_vanish_on_revoke(registry: Registry) -> None:
    p = ns()
    lease = await registry.grant_lease(3.0)
    lost: list[Any] = []
    lease.on_lost(lost.append)
    assert lease.ttl >= 3.0
    assert lease.expires_at - time.monotonic() == pytest.approx(lease.ttl, abs=1.0)
    assert await registry.create(f"{p}/w1", b"x", lease=lease)
    await registry.put(f"{p}/w2", b"y", lease=lease)
    before = lease.expires_at
    await asyncio.sleep(0.05)
    await lease.keepalive_once()
    assert lease.expires_at > before
    assert lease.alive
    await lease.revoke()
    assert lost == [lease] and lease.lost.is_set() and not lease.alive
    deadline = time.monotonic() + 5
    while await registry.get_prefix(f"{p}/") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert await registry.get_prefix(f"{p}/") == {}
    with pytest.raises(LeaseLost):
        await registry.put(f"{p}/w3", b"z", lease=lease)
    with pytest.raises(LeaseLost):
        await lease.keepalive_once()


async def test_watch_prefix_reset_then_changes(registry: Registry) -> None:
    p = ns()
    await registry.put(f"{p}/a", b"1")
    it = registry.watch_prefix(f"{p}/").__aiter__()
    first = await next_batch(it)
    assert first == [WatchEvent("reset", f"{p}/"), WatchEvent("put", f"{p}/a", b"1")]
    await registry.put(f"{p}/b", b"2")
    assert WatchEvent("put", f"{p}/b", b"2") in await next_batch(it)
    await registry.delete(f"{p}/a")
    assert await next_batch(it) == [WatchEvent("delete", f"{p}/a")]
    await it.aclose()  # type: ignore[attr-defined]


async def test_etcd_lease_expires_when_not_renewed(etcd_server: EtcdServer) -> None:
    reg = open_registry(etcd_server.url)
    try:
        lease = await reg.grant_lease(2.0)
        await reg.put("expiry/k", b"v", lease=lease)
        lease.stop()  # type: ignore[attr-defined]  # the process "dies": no more renewals
        t0 = time.monotonic()
        while await reg.get("expiry/k") is not None and time.monotonic() - t0 < 8:
            await asyncio.sleep(0.1)
        gone_after = time.monotonic() - t0
        assert await reg.get("expiry/k") is None
        assert gone_after <= lease.ttl + 1.5
        with pytest.raises(LeaseLost):
            await lease.keepalive_once()
    finally:
        await reg.close()


async def test_zk_session_expiry_deletes_ephemerals_and_loses_the_lease(
    zookeeper_server: Any,
) -> None:
    from kazoo.client import KazooClient

    reg = open_registry(zookeeper_server.url)
    try:
        lease = await reg.grant_lease(2.0)
        assert await reg.create("zkexp/k", b"v", lease=lease)
        # Expire the session from outside, the way kazoo's own test harness does: a second
        # client joins the same session and closes it; the lease's client sees it LOST.
        host = zookeeper_server.url.removeprefix("zk://")
        twin = KazooClient(hosts=host, client_id=lease.client.client_id)  # type: ignore[attr-defined]
        await asyncio.to_thread(twin.start, 5)
        await asyncio.to_thread(twin.stop)
        twin.close()
        assert await reg.get("zkexp/k") is None
        await asyncio.wait_for(lease.lost.wait(), 10)
        assert not lease.alive
    finally:
        await reg.close()


async def test_etcd_watch_survives_a_registry_restart() -> None:
    server = EtcdServer().start()
    errors: list[BaseException] = []
    reg = open_registry(server.url)
    try:
        await reg.put("svc/a", b"1")
        it = reg.watch_prefix("svc/", on_error=errors.append).__aiter__()
        assert [e.kind for e in await next_batch(it)] == ["reset", "put"]
        server.stop()
        pending = asyncio.ensure_future(it.__anext__())
        await asyncio.sleep(1.0)
        assert not pending.done()            # no events invented, iterator not ended
        assert errors                        # the outage was reported
        server.start()
        writer = open_registry(server.url)
        await writer.put("svc/b", b"2")
        await writer.close()
        batch = await asyncio.wait_for(pending, 10)
        assert WatchEvent("put", "svc/b", b"2") in batch
        await it.aclose()  # type: ignore[attr-defined]
    finally:
        await reg.close()
        server.cleanup()


def test_missing_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    for mod, extra in (("wirecall.cluster.registry.etcd", "etcd"),
                       ("wirecall.cluster.registry.zookeeper", "zookeeper")):
        monkeypatch.delitem(sys.modules, mod, raising=False)
        monkeypatch.setitem(sys.modules, "aetcd", None)
        monkeypatch.setitem(sys.modules, "kazoo.client", None)
        with pytest.raises(ImportError, match=rf"pip install 'wirecall\[{extra}\]'"):
            importlib.import_module(mod)
        monkeypatch.delitem(sys.modules, mod, raising=False)


def test_bad_urls() -> None:
    for url in ("redis://x:1", "etcd://", "etcd://h:notaport", "etcd://h:1?x=1"):
        with pytest.raises(ValueError, match="registry URL"):
            open_registry(url)
