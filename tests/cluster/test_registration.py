"""Server registration on real registries: the entry's content, re-registration after a lost
lease (etcd lease revoked from outside, ZooKeeper session expired), etcd compaction under a
client's watch, dns:// targets, and the order of a graceful shutdown."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import wirecall
from support.cluster_nodes import Node
from support.etcd import EtcdServer
from wirecall.cluster.client import ClusterClient
from wirecall.cluster.entry import decode_entry, service_prefix
from wirecall.cluster.registry import open_registry


async def node_server() -> wirecall.Server:
    s = wirecall.Server()
    s.register(Node("r0"), name="Node")
    await s.start("tcp://127.0.0.1:0", "grpc://127.0.0.1:0")
    return s


async def wait_for(pred: Any, timeout: float = 8.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if await pred():
            return time.monotonic() - t0
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.parametrize("registry", ["etcd", "zk"])
async def test_entry_content_and_reregistration_after_lease_loss(
    registry: str, request: pytest.FixtureRequest
) -> None:
    rs = request.getfixturevalue("etcd_server" if registry == "etcd" else "zookeeper_server")
    service = f"reg{registry}{time.time_ns() % 10**6}"
    server = await node_server()
    reg = await server.register_in(rs.url, service, ttl=2, zone="z1", version="9",
                                   metadata={"k": 1}, weight=7, propagation_wait=0.1)
    other = open_registry(rs.url)
    try:
        raw = await other.get_prefix(service_prefix(service))
        assert list(raw) == [reg.key]
        entry = decode_entry(raw[reg.key])
        assert entry.addrs == {"tcp": server.urls[0], "grpc": server.urls[1]}
        assert (entry.zone, entry.version, entry.weight, entry.metadata) == ("z1", "9", 7,
                                                                             {"k": "1"})
        lease = reg.lease
        if registry == "etcd":  # revoked by someone else: the keepalive finds out
            await other.lease_stub.LeaseRevoke(  # type: ignore[attr-defined]
                __import__("aetcd").rpc.LeaseRevokeRequest(ID=lease.id), timeout=5)
        else:  # the session expired: a twin client closes it
            from kazoo.client import KazooClient

            twin = KazooClient(hosts=rs.url.removeprefix("zk://"),
                               client_id=lease.client.client_id)
            await asyncio.to_thread(twin.start, 5)
            await asyncio.to_thread(twin.stop)
            twin.close()

        async def back() -> bool:
            return reg.registrations == 2 and await other.get(reg.key) is not None
        took = await wait_for(back)
        print(f"{registry}: re-registered {took:.2f}s after the lease was lost")
        assert took < 3.0
        assert reg.lease is not lease
    finally:
        await server.close()
        assert await other.get(reg.key) is None  # deregistered on close
        await other.close()


async def test_graceful_close_deregisters_before_it_stops_serving(
    etcd_server: EtcdServer,
) -> None:
    server = await node_server()
    reg = await server.register_in(etcd_server.url, "order", propagation_wait=0.3)
    watcher = open_registry(etcd_server.url)
    seen: list[tuple[str, bool]] = []

    async def watch() -> None:
        async for batch in watcher.watch_prefix(service_prefix("order")):
            for ev in batch:
                if ev.kind == "delete":
                    seen.append(("deleted", server.closing))
    task = asyncio.ensure_future(watch())
    client = await wirecall.connect(server.urls[0])
    try:
        await asyncio.sleep(0.2)
        closing = asyncio.ensure_future(server.close())
        await wait_for(lambda: asyncio.sleep(0, bool(seen)))
        assert seen == [("deleted", False)]  # the entry went while the server still served
        assert await client.call("Node.Who") == "r0"  # and it still answers
        await closing
        assert reg.lease is not None and reg.lease.lost.is_set()
    finally:
        task.cancel()
        await client.close()
        await watcher.close()


async def test_etcd_compaction_under_a_watch_relists() -> None:
    etcd = EtcdServer().start()
    try:
        reg = open_registry(etcd.url)
        client = ClusterClient(f"{etcd.url}/compact")
        s1 = await node_server()
        r1 = await s1.register_in(etcd.url, "compact")
        await client.connect()
        # take the watch down, change things and compact the history meanwhile
        etcd.stop()
        await asyncio.sleep(0.5)
        etcd.start()
        s2 = await node_server()
        await s2.register_in(etcd.url, "compact")
        for i in range(5):
            await reg.put(f"noise/{i}", b"x")
        rev = (await reg.kv.Range(__import__("aetcd").rpc.RangeRequest(  # type: ignore[attr-defined]
            key=b"noise/0"), timeout=5)).header.revision
        await reg.kv.Compact(__import__("aetcd").rpc.CompactionRequest(  # type: ignore[attr-defined]
            revision=rev, physical=True), timeout=5)

        async def both() -> bool:
            return len(client.live) == 2
        await wait_for(both, 10)
        assert {ep.url for ep in client.live} == {s1.urls[0], s2.urls[0]}
        assert r1.registrations >= 1
        await client.close()
        await s1.close()
        await s2.close()
        await reg.close()
    finally:
        etcd.cleanup()


async def test_dns_target_resolves_localhost() -> None:
    s = wirecall.Server()
    s.register(Node("d0"), name="Node")
    (url,) = await s.start("tcp://127.0.0.1:0")
    port = url.rsplit(":", 1)[1]
    client = await wirecall.connect(f"dns://localhost:{port}?interval=0.5")
    try:
        # localhost may resolve to ::1 too, where nothing listens: those calls are re-routed
        assert [await client.call("Node.Who") for _ in range(10)] == ["d0"] * 10
        assert any(row["url"] == f"tcp://127.0.0.1:{port}" for row in client.endpoints())
    finally:
        await client.close()
        await s.close()


async def test_entry_update_reaches_clients(etcd_server: EtcdServer) -> None:
    server = await node_server()
    reg = await server.register_in(etcd_server.url, "upd", weight=10, propagation_wait=0)
    client = ClusterClient(f"{etcd_server.url}/upd", balancer="weighted_round_robin")
    try:
        await client.connect()
        assert client.endpoints()[0]["weight"] == 10
        await reg.update(weight=50, version="2")

        async def updated() -> bool:
            rows = client.endpoints()
            return bool(rows) and rows[0]["weight"] == 50 and rows[0]["version"] == "2"
        await wait_for(updated)
        with pytest.raises(ValueError, match="cannot update id"):
            await reg.update(id="x")
    finally:
        await client.close()
        await server.close()


async def test_cli_endpoints_of_a_registry_target_and_register_errors(
    etcd_server: EtcdServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from wirecall.cli import main

    server = await node_server()
    await server.register_in(etcd_server.url, "clisvc", zone="z9", propagation_wait=0)
    try:
        rc = await asyncio.to_thread(main, ["cluster", "endpoints",
                                            f"{etcd_server.url}/clisvc", "--json"])
        out = capsys.readouterr().out
        assert rc == 0 and '"zone": "z9"' in out and server.urls[0] in out
    finally:
        await server.close()
    rc = await asyncio.to_thread(main, ["serve", "support.cluster_nodes:Node", "--listen",
                                        "tcp://127.0.0.1:0", "--register", etcd_server.url])
    assert rc != 0 and "name the service" in capsys.readouterr().err
