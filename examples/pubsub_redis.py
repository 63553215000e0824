"""The tutorial's Pub/Sub (section 3.3) on Redis, at-most-once and at-least-once.

Starts a private redis-server on a free loopback port (or uses the Redis URL given as the
first argument), then:

1. Pub/Sub (``redis://``): one PubSub server on grpc:// and tcp://; a subscriber on each wire,
   confirmed live before anything is published; a publisher; both receive every message.
2. Streams (``redis+streams://``): a consumer group with a worker that dies holding
   unacknowledged messages; a second worker of the group gets them (claimed after
   ``claim_ms``); then a replay of the whole stream from id 0.

    python examples/pubsub_redis.py [redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import wirecall
from wirecall.pubsub.client import publish, remote_subscription
from wirecall.pubsub.service import PubSub


@contextmanager
def private_redis() -> Iterator[str]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server not found: apt-get install -y redis-server, "
                         "or pass a redis:// URL")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", data,
                                 "--save", "", "--appendonly", "no"],
                                stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(5)


async def pubsub_on_two_wires(redis_url: str) -> None:
    server = wirecall.Server()
    service = PubSub(redis_url)  # at-most-once fan-out, the tutorial's semantics
    server.register(service)
    grpc_url, tcp_url = await server.start("grpc://127.0.0.1:0", "tcp://127.0.0.1:0")
    try:
        async with remote_subscription(grpc_url, "topic1") as on_grpc, \
                remote_subscription(tcp_url, "topic1") as on_tcp:
            print("subscribed on grpc:// and tcp:// (confirmed live)")
            for text in ("你好 世界", "gRPC 流", "推送"):
                ok = await publish(tcp_url, "topic1", text)
                print(f"发布到主题 topic1 成功: {ok}, 消息内容: {text}")
            for name, sub in (("grpc", on_grpc), ("tcp", on_tcp)):
                got = [await asyncio.wait_for(sub.recv(), 5) for _ in range(3)]
                print(f"{name} subscriber received: {' | '.join(got)}")
    finally:
        await server.close(drain_timeout=1)
        await service.broker.aclose()


async def streams_at_least_once(redis_url: str) -> None:
    streams_url = redis_url.replace("redis://", "redis+streams://") + "?claim_ms=300"
    server = wirecall.Server()
    service = PubSub(streams_url)
    server.register(service)
    [url] = await server.start("tcp://127.0.0.1:0")
    try:
        dying = remote_subscription(url, "jobs", group="workers", consumer="worker-1")
        await dying.__aenter__()
        for i in range(5):
            await publish(url, "jobs", f"job-{i}")
        first = await asyncio.wait_for(dying.recv(), 5)
        print(f"worker-1 took {first}, then died: nothing of it acknowledged (on tcp:// a "
              "message is acked once 16 more were sent after it)")
        await dying.aclose()
        async with remote_subscription(url, "jobs", group="workers",
                                       consumer="worker-2") as worker:
            got = sorted({await asyncio.wait_for(worker.recv(), 10) for _ in range(5)})
        print(f"worker-2 got (claimed after claim_ms, at-least-once): {', '.join(got)}")
        async with remote_subscription(url, "jobs", start="0") as replay:
            history = [await asyncio.wait_for(replay.recv(), 5) for _ in range(5)]
        print(f"replay from 0: {', '.join(history)}")
    finally:
        await server.close(drain_timeout=1)
        await service.broker.aclose()


async def run(redis_url: str) -> None:
    await pubsub_on_two_wires(redis_url)
    await streams_at_least_once(redis_url)


def main() -> None:
    if len(sys.argv) > 1:
        asyncio.run(run(sys.argv[1]))
        return
    with private_redis() as url:
        asyncio.run(run(url))


if __name__ == "__main__":
    main()
