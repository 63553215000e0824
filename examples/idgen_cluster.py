"""A small ID cluster in one process (docs/idgen.md): two snowflake nodes with static worker
ids, one segment-mode node on SQLite, and the prefetching IdClient.

    python examples/idgen_cluster.py

In production each node is its own process, with worker ids leased from etcd/ZooKeeper:

    wirecall idgen serve --registry etcd://10.0.0.2:2379 --register etcd://10.0.0.2:2379 \\
        --listen tcp://0.0.0.0:7070
    wirecall idgen next tcp://10.0.0.5:7070 -n 3 --decode
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from wirecall import Client
from wirecall.idgen.client import IdClient
from wirecall.idgen.node import IdNode, NodeConfig


async def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="wirecall-idgen-example-"))
    nodes = [
        IdNode(NodeConfig(listen=["tcp://127.0.0.1:0"], worker_id=1, data_dir=tmp / "a")),
        IdNode(NodeConfig(listen=["tcp://127.0.0.1:0", "grpc://127.0.0.1:0"], worker_id=2,
                          data_dir=tmp / "b")),
        IdNode(NodeConfig(listen=["tcp://127.0.0.1:0"], store=f"sqlite://{tmp}/segments.db",
                          tags=[("order", 1000, 100)])),
    ]
    for n in nodes:
        await n.start()
    a, b, seg = (n.server.urls for n in nodes)
    try:
        # one node, any wire: Next, Batch, Decode
        async with Client(b[1]) as c:  # grpc://
            one = await c.call("IdGen.Next", "")
            d = await c.call("IdGen.Decode", one)
            print(f"grpc Next: {one} -> worker {d['worker']}, sequence {d['sequence']}")
            print(f"grpc Batch: {len(await c.call('IdGen.Batch', '', 1000))} IDs")

        # the cluster: batches prefetched, spread over the nodes
        target = "static://" + ",".join(u[0].removeprefix("tcp://") for u in (a, b))
        async with await IdClient.open(target, prefetch=500) as ids:
            got = [await ids.next() for _ in range(5000)]
        print(f"IdClient: {len(got)} IDs, {len(set(got))} unique, from "
              f"{ids.calls} batch calls")

        # segment mode: plain increasing numbers per business tag
        async with Client(seg[0]) as c:
            print("segment order:", await c.call("IdGen.Batch", "order", 5))
            try:
                await c.call("IdGen.Next", "invoice")
            except Exception as exc:
                print(f"unknown tag: {type(exc).__name__}")
    finally:
        for n in nodes:
            await n.close()
    print("idgen example done")


if __name__ == "__main__":
    asyncio.run(main())
