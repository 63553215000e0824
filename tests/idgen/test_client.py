"""IdClient: prefetching from a buffer, spreading over nodes and moving away from a node that
refuses (static targets), and nodes found through etcd registration."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from support.idgen import NodeProcess, data_dir
from wirecall.errors import Unavailable
from wirecall.idgen.client import IdClient
from wirecall.idgen.node import IdNode, NodeConfig
from wirecall.idgen.snowflake import Layout

LAYOUT = Layout()


async def start_nodes(tmp: Path, n: int) -> list[IdNode]:
    nodes = []
    for i in range(n):
        node = IdNode(NodeConfig(listen=["tcp://127.0.0.1:0"], worker_id=i + 1,
                                 data_dir=tmp / f"n{i}"))
        await node.start()
        nodes.append(node)
    return nodes


def addr(node: IdNode) -> str:
    return node.server.urls[0].removeprefix("tcp://")


async def test_prefetches_and_spreads_over_the_nodes(tmp_path: Path) -> None:
    nodes = await start_nodes(tmp_path, 3)
    try:
        target = "static://" + ",".join(addr(n) for n in nodes)
        async with await IdClient.open(target, prefetch=200) as ids:
            got = [await ids.next() for _ in range(3000)]
            big = await ids.batch(150_000)
        every = got + big
        assert len(set(every)) == len(every) == 153_000
        assert {LAYOUT.decode(i).worker for i in got} == {1, 2, 3}
        # 3000 IDs by 200: about 15 refills, not one call per ID
        assert ids.calls <= 3000 // 200 + 5
    finally:
        for n in nodes:
            await n.close()


async def test_moves_away_from_a_node_that_refuses(tmp_path: Path) -> None:
    nodes = await start_nodes(tmp_path, 3)
    try:
        svc = nodes[1].service
        assert svc is not None
        svc.generator.set_fence(0.0)  # type: ignore[union-attr]  (node 2 stops issuing)
        target = "static://" + ",".join(addr(n) for n in nodes)
        async with await IdClient.open(target, prefetch=50, low_water=0.0) as ids:
            got = [await ids.next() for _ in range(2000)]
        assert len(set(got)) == 2000
        assert {LAYOUT.decode(i).worker for i in got} == {1, 3}
        # one address only, the refusing node: the client's own attempts, then the error
        async with await IdClient.open(f"tcp://{addr(nodes[1])}", attempts=2) as one:
            with pytest.raises(Unavailable, match="fence"):
                await one.next()
            assert one.failovers == 2
    finally:
        for n in nodes:
            await n.close()


async def test_nodes_found_through_etcd(etcd_server: Any, tmp_path: Path) -> None:
    procs = [NodeProcess("--registry", etcd_server.url, "--prefix", "/t/client", "--ttl", "4",
                         "--register", etcd_server.url, "--service", "idgen-t",
                         "--data-dir", data_dir(tmp_path, f"n{i}")).start() for i in range(3)]
    try:
        target = etcd_server.url + "/idgen-t"
        async with await IdClient.open(target, prefetch=100) as ids:
            got = await asyncio.wait_for(asyncio.gather(*(ids.next() for _ in range(3000))), 60)
        assert len(set(got)) == 3000
        assert {LAYOUT.decode(i).worker for i in got} == {p.worker for p in procs}
    finally:
        for p in procs:
            p.stop()
