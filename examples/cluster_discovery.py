"""Servers that find each other (docs/cluster.md): registration in etcd or ZooKeeper, a client
that discovers them, balances with P2C, retries an idempotent method, and sees a server come
and go without a failed call.

    python examples/cluster_discovery.py --registry etcd://127.0.0.1:2379
    python examples/cluster_discovery.py --registry zk://127.0.0.1:2181
    python examples/cluster_discovery.py                  # no registry: a static:// target

In production each server is its own process:

    wirecall serve myapp:Calc --listen tcp://0.0.0.0:9000 --register etcd://10.0.0.2:2379/calc
    wirecall cluster endpoints etcd://10.0.0.2:2379/calc
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter

import wirecall
from wirecall.cluster import HedgePolicy, MethodPolicy, RetryPolicy


class Calc:
    def __init__(self, name: str) -> None:
        self.name = name

    @wirecall.method
    async def Add(self, a: int, b: int) -> dict[str, object]:
        await asyncio.sleep(0.002)
        return {"sum": a + b, "by": self.name}


async def start(name: str, registry: str | None, zone: str) -> wirecall.Server:
    server = wirecall.Server()
    server.register(Calc(name), name="Calc")
    await server.start("tcp://127.0.0.1:0")
    if registry:
        # close() will deregister first, wait for clients to see it, then drain
        await server.register_in(registry, "calc", zone=zone, version="1.0",
                                 propagation_wait=0.5, ttl=5)
    return server


async def main(registry: str | None) -> None:
    servers = [await start(f"s{i}", registry, "a" if i else "b") for i in range(3)]
    target = (f"{registry}/calc" if registry
              else "static://" + ",".join(s.urls[0] for s in servers))
    policies = {"Calc.Add": MethodPolicy(idempotent=True, retry=RetryPolicy(max_attempts=3))}
    client = await wirecall.connect(target, policies=policies)
    print(f"target {target}: {len(client.endpoints())} endpoints")

    replies = await asyncio.gather(*(client.call("Calc.Add", i, 1) for i in range(300)))
    print("spread:", dict(sorted(Counter(r["by"] for r in replies).items())))

    if registry:
        servers.append(await start("s3", registry, "a"))
        for _ in range(100):
            if len(client.endpoints()) == 4:
                break
            await asyncio.sleep(0.02)
        answered = False
        for _ in range(20):  # traffic reaches it as soon as its connection is up
            replies = await asyncio.gather(*(client.call("Calc.Add", i, 1) for i in range(50)))
            if any(r["by"] == "s3" for r in replies):
                answered = True
                break
            await asyncio.sleep(0.05)
        print("a 4th server joined; it answered", answered)

        # graceful shutdown of s0 under load: deregister, wait, drain -> nothing fails
        async def load() -> list[object]:
            return await asyncio.gather(*(client.call("Calc.Add", i, 2) for i in range(600)),
                                        return_exceptions=True)
        results, _ = await asyncio.gather(load(), servers[0].close())
        failed = [r for r in results if isinstance(r, BaseException)]
        print(f"s0 left gracefully under load: {len(results)} calls, {len(failed)} failed")

    # hedging: a second attempt after 20 ms if the first has not answered
    client.set_policy("Calc.*", MethodPolicy(idempotent=True, hedge=HedgePolicy(delay=0.02)))
    print("hedged call:", (await client.call("Calc.Add", 40, 2))["sum"])
    for row in client.endpoints():
        print(f"  {row['url']}  {row['state']:<8} zone={row['zone'] or '-'} "
              f"calls={row['calls']}")
    print("events:", dict(sorted(client.events.counters.items())))
    await client.close()
    for s in servers:
        await s.close()
    print("cluster example done")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--registry", help="etcd://host:port or zk://host:port")
    asyncio.run(main(ap.parse_args().registry))
