"""quic:// under the cluster layer like every other wire: a static:// target of three QUIC
servers (TLS with a generated certificate) spreads calls over all of them."""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter

import wirecall
from support.cluster_nodes import all_ready
from wirecall.cluster.client import ClusterClient
from wirecall.transport.quic import write_self_signed


class Node:
    def __init__(self, name: str) -> None:
        self.name = name

    async def Work(self) -> str:
        return self.name


async def test_a_static_target_of_quic_servers_spreads_the_calls() -> None:
    with tempfile.TemporaryDirectory(prefix="wirecall-quic-") as d:
        crt, key = write_self_signed(d)
        servers: list[wirecall.Server] = []
        urls: list[str] = []
        for i in range(3):
            s = wirecall.Server()
            s.register(Node(f"n{i}"), name="Node")
            urls += await s.start("quic://127.0.0.1:0", certfile=crt, keyfile=key)
            servers.append(s)
        hostports = ",".join(u.split("://", 1)[1] for u in urls)
        client = await wirecall.connect(f"static://{hostports}?wire=quic", cafile=crt)
        try:
            assert isinstance(client, ClusterClient)
            await all_ready(client)  # a QUIC endpoint takes calls once its handshake is done
            assert {r["state"] for r in client.endpoints()} == {"ok"}
            got = Counter(await asyncio.gather(*(client.call("Node.Work", timeout=20)
                                                 for _ in range(90))))
            assert set(got) == {"n0", "n1", "n2"}, got
            assert sum(got.values()) == 90
        finally:
            await client.close()
            for s in servers:
                await s.close(drain_timeout=1)
