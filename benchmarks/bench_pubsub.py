"""Pub/Sub fan-out, side by side in one run (issue #12): messages/s delivered and
publish-to-receive latency (p50/p99) with 1, 10 and 100 subscribers, for

* wirecall's PubSub server (a subprocess) on Redis Pub/Sub (grpc:// and tcp://), on Redis
  Streams (each subscriber its own consumer group, so every one gets every message: fan-out)
  and on the in-memory broker;
* the tutorial's Go server (redigo, a SUBSCRIBE connection per subscriber) on the same Redis,
  driven over gRPC by the same wirecall client as wirecall's grpc:// server;
* redis-py publishing and subscribing directly (one PubSub connection per subscriber): the
  floor a Python user would write by hand.

Throughput: the publisher keeps ``--window`` publishes in flight; throughput = deliveries /
(last delivery - first publish). Latency: then 200 messages one at a time, each published once
every subscriber has the previous one; latency = publish to the last subscriber's receipt.
Rounds are interleaved (system order rotates) and medians reported. Clients run in this
process; servers and Redis in their own.

    .venv/bin/python benchmarks/bench_pubsub.py --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import wirecall  # noqa: E402
from interop.grpc_go import harness  # noqa: E402
from support.redis import RedisServer  # noqa: E402
from support.servers import free_port  # noqa: E402
from wirecall.pubsub.service import (  # noqa: E402
    PublishRequest,
    PubSubStub,
    SubscribeRequest,
)

Publish = Callable[[str], Awaitable[Any]]


class Result:
    def __init__(self, rate: float, p50: float, p99: float, lost: int) -> None:
        self.rate, self.p50, self.p99, self.lost = rate, p50, p99, lost


async def drive(publish: Publish, streams: list[Any], read: Callable[[Any], Awaitable[str]],
                n_msgs: int, window: int) -> Result:
    """Publish ``n_msgs`` with ``window`` in flight; each stream reads them all."""
    lat: list[float] = []
    last = [0.0]
    if window == 1:  # paced: the next publish once every subscriber has the previous one
        return await paced(publish, streams, read, n_msgs, lat)

    async def reader(st: Any) -> int:
        got = 0
        try:
            while got < n_msgs:
                text = await asyncio.wait_for(read(st), 10)
                now = time.perf_counter()
                lat.append(now - float(text.split(" ", 1)[0]))
                last[0] = max(last[0], now)
                got += 1
        except TimeoutError:
            pass
        return got

    readers = [asyncio.ensure_future(reader(s)) for s in streams]
    sem = asyncio.Semaphore(window)

    async def one(i: int) -> None:
        try:
            await publish(f"{time.perf_counter()} m{i} " + "x" * 64)
        finally:
            sem.release()

    t0 = time.perf_counter()
    pubs = []
    for i in range(n_msgs):
        await sem.acquire()
        pubs.append(asyncio.ensure_future(one(i)))
    await asyncio.gather(*pubs)
    counts = await asyncio.gather(*readers)
    total = sum(counts)
    lat.sort()
    elapsed = (last[0] or time.perf_counter()) - t0
    return Result(total / elapsed, lat[len(lat) // 2] * 1e3 if lat else 0,
                  lat[int(len(lat) * 0.99)] * 1e3 if lat else 0, n_msgs * len(streams) - total)


LATENCY_MESSAGES = 200


async def throughput_and_latency(publish: Publish, streams: list[Any],
                                 read: Callable[[Any], Awaitable[str]], n_msgs: int,
                                 window: int) -> Result:
    """Throughput with ``window`` publishes in flight, then latency one publish at a time
    (each waits until every subscriber has it: the path's latency, not a queue's)."""
    loaded = await drive(publish, streams, read, n_msgs, window)
    paced = await drive(publish, streams, read, LATENCY_MESSAGES, 1)
    return Result(loaded.rate, paced.p50, paced.p99, loaded.lost + paced.lost)


async def paced(publish: Publish, streams: list[Any], read: Callable[[Any], Awaitable[str]],
                n_msgs: int, lat: list[float]) -> Result:
    lost = 0
    for i in range(n_msgs):
        t = time.perf_counter()
        await publish(f"{t} p{i}")
        for st in streams:
            try:
                await asyncio.wait_for(read(st), 10)
            except TimeoutError:
                lost += 1
                continue
        lat.append(time.perf_counter() - t)  # when the last subscriber had it
    lat.sort()
    return Result(0, lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.99)] * 1e3, lost)


def numsub(r: RedisServer, ch: str) -> int:
    return int(r.command("PUBSUB", "NUMSUB", ch).split(b"\r\n")[-2][1:])


async def rpc_system(url: str, n_subs: int, n_msgs: int, window: int, *, confirm: bool,
                     redis: RedisServer | None, streams: bool = False) -> Result:
    """A PubSub server at ``url`` (wirecall or Go), driven by wirecall's client."""
    topic = f"bench{time.monotonic_ns()}"
    kw = {"codec": "proto"} if url.startswith("tcp") else {}
    pub = await wirecall.connect(url, **kw)
    sub_clients = [await wirecall.connect(url, **kw) for _ in range(max(1, n_subs // 10))]
    stub = PubSubStub(pub)
    subs = []
    try:
        for i in range(n_subs):
            md = {"wirecall-group": f"g{i}"} if streams else {}
            if confirm:
                md["wirecall-pubsub-confirm"] = "1"
            st = PubSubStub(sub_clients[i % len(sub_clients)]).Subscribe(
                SubscribeRequest(topic=topic), metadata=md)
            subs.append(st)
        if confirm:  # wirecall: the first message says the subscription is live
            for st in subs:
                await asyncio.wait_for(st.recv(), 20)
        else:  # the Go server: one Redis subscription per subscriber
            assert redis is not None
            deadline = time.monotonic() + 20
            while numsub(redis, topic) < n_subs and time.monotonic() < deadline:
                await asyncio.sleep(0.02)

        async def publish(m: str) -> Any:
            return await stub.Publish(PublishRequest(topic=topic, message=m), timeout=30)

        async def read(st: Any) -> str:
            return str((await st.recv()).message)

        return await throughput_and_latency(publish, subs, read, n_msgs, window)
    finally:
        for st in subs:
            st.cancel()
        for c in (pub, *sub_clients):
            await c.close()


async def redis_direct(redis: RedisServer, n_subs: int, n_msgs: int, window: int) -> Result:
    import redis.asyncio as aioredis

    topic = f"bench{time.monotonic_ns()}"
    r = aioredis.Redis.from_url(redis.url, protocol=2, max_connections=4 * n_subs + 64)
    pss = []
    try:
        for _ in range(n_subs):
            ps = r.pubsub(ignore_subscribe_messages=True)
            await ps.subscribe(topic)
            await ps.get_message(timeout=5)  # the subscribe confirmation
            pss.append(ps)

        async def publish(m: str) -> Any:
            return await r.publish(topic, m)

        async def read(ps: Any) -> str:
            while True:
                msg = await ps.get_message(timeout=None)
                if msg is not None and msg["type"] == "message":
                    return str(msg["data"].decode())

        return await throughput_and_latency(publish, pss, read, n_msgs, window)
    finally:
        for ps in pss:
            await ps.aclose()
        await r.aclose()


class Servers:
    """Redis, the wirecall servers (one per broker) and the Go server, for the whole run."""

    def __init__(self) -> None:
        self.redis = RedisServer().start()
        self.procs: list[subprocess.Popen[str]] = []
        self.urls: dict[str, str] = {}

    def wirecall(self, name: str, scheme: str, broker: str) -> None:
        url = f"{scheme}://127.0.0.1:{free_port()}"
        log = open(f"/tmp/bench_pubsub-{name}.log", "w")  # noqa: SIM115  (the server's log)
        p = subprocess.Popen([sys.executable, "-m", "wirecall.tutorial.pubsub", "serve", url,
                              broker], stdout=subprocess.PIPE, stderr=log,
                             text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        assert p.stdout is not None
        line = p.stdout.readline()
        assert line.startswith("listening on"), line
        self.procs.append(p)
        self.urls[name] = url

    def go(self) -> None:
        srv = harness.start("pubsub_server", "127.0.0.1:0", self.redis.address)
        self.procs.append(srv.proc)
        self.urls["go"] = f"grpc://{srv.addr}"

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait(5)
        self.redis.close()


SYSTEMS = ["redis-py direct", "wirecall grpc Pub/Sub", "wirecall tcp Pub/Sub",
           "wirecall grpc Streams", "wirecall tcp Streams", "wirecall grpc memory",
           "Go server (redigo)"]


async def measure(servers: Servers, system: str, n_subs: int, n_msgs: int,
                  window: int) -> Result:
    r = servers.redis
    if system == "redis-py direct":
        return await redis_direct(r, n_subs, n_msgs, window)
    if system == "Go server (redigo)":
        return await rpc_system(servers.urls["go"], n_subs, n_msgs, window, confirm=False,
                                redis=r)
    key = {"wirecall grpc Pub/Sub": "ps-grpc", "wirecall tcp Pub/Sub": "ps-tcp",
           "wirecall grpc Streams": "st-grpc", "wirecall tcp Streams": "st-tcp",
           "wirecall grpc memory": "mem-grpc"}[system]
    return await rpc_system(servers.urls[key], n_subs, n_msgs, window, confirm=True, redis=r,
                            streams=key.startswith("st"))


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--deliveries", type=int, default=20_000,
                    help="messages x subscribers per measurement (at least 200 messages)")
    ap.add_argument("--window", type=int, default=32, help="publishes in flight")
    ap.add_argument("--subs", default="1,10,100")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    args = ap.parse_args()
    systems = args.systems.split(",")
    servers = Servers()
    try:
        await asyncio.to_thread(harness.build, "pubsub_server")
        redis_url = servers.redis.url
        servers.wirecall("ps-grpc", "grpc", redis_url)
        servers.wirecall("ps-tcp", "tcp", redis_url)
        servers.wirecall("st-grpc", "grpc", redis_url.replace("redis://", "redis+streams://")
                         + "?maxlen=100000")
        servers.wirecall("st-tcp", "tcp", redis_url.replace("redis://", "redis+streams://")
                         + "?maxlen=100000")
        servers.wirecall("mem-grpc", "grpc", "memory://")
        servers.go()
        results: dict[tuple[str, int], list[Result]] = {}
        for rnd in range(args.rounds):
            order = systems[rnd % len(systems):] + systems[:rnd % len(systems)]
            for n in (int(x) for x in args.subs.split(",")):
                n_msgs = max(200, args.deliveries // n)
                for system in order:
                    res = await measure(servers, system, n, n_msgs, args.window)
                    results.setdefault((system, n), []).append(res)
                    print(f"round {rnd + 1} {system:24} subs={n:<4} {res.rate:>10,.0f} msg/s "
                          f"p50 {res.p50:7.2f} ms p99 {res.p99:7.2f} ms lost {res.lost}",
                          file=sys.stderr, flush=True)
        report(results, systems, [int(x) for x in args.subs.split(",")], args)
    finally:
        servers.close()


def report(results: dict[tuple[str, int], list[Result]], systems: list[str],
           subs: list[int], args: argparse.Namespace) -> None:
    def med(system: str, n: int, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in results[(system, n)])

    print(f"\n{args.rounds} interleaved rounds, medians; {args.deliveries} deliveries per "
          f"throughput measurement, {args.window} publishes in flight; latency: "
          f"{LATENCY_MESSAGES} paced messages, publish to the last subscriber; "
          f"{os.cpu_count()} cores (shared)\n")
    print("| system | subscribers | messages/s delivered | p50 ms | p99 ms | lost |")
    print("|---|---|---|---|---|---|")
    for n in subs:
        for s in systems:
            print(f"| {s} | {n} | {med(s, n, 'rate'):,.0f} | {med(s, n, 'p50'):.2f} | "
                  f"{med(s, n, 'p99'):.2f} | {med(s, n, 'lost'):.0f} |")
    print("\n| subscribers | grpc Pub/Sub / redis-py | tcp Pub/Sub / redis-py | "
          "grpc Pub/Sub / Go | tcp Pub/Sub / Go | grpc Streams / grpc Pub/Sub | "
          "tcp Streams / tcp Pub/Sub |")
    print("|---|---|---|---|---|---|---|")
    def ratio(a: str, b: str, n: int) -> str:
        if (a, n) not in results or (b, n) not in results:
            return "-"
        return f"{med(a, n, 'rate') / med(b, n, 'rate'):.2f}x"

    for n in subs:
        print(f"| {n} | {ratio('wirecall grpc Pub/Sub', 'redis-py direct', n)} | "
              f"{ratio('wirecall tcp Pub/Sub', 'redis-py direct', n)} | "
              f"{ratio('wirecall grpc Pub/Sub', 'Go server (redigo)', n)} | "
              f"{ratio('wirecall tcp Pub/Sub', 'Go server (redigo)', n)} | "
              f"{ratio('wirecall grpc Streams', 'wirecall grpc Pub/Sub', n)} | "
              f"{ratio('wirecall tcp Streams', 'wirecall tcp Pub/Sub', n)} |")


if __name__ == "__main__":
    try:  # clients on uvloop too, when installed (servers: wirecall.tutorial.pubsub does it)
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
