"""grpc-go programs built from the tutorial's Greeter and Pub/Sub code, against wirecall in both
directions (Go client -> wirecall server, wirecall client -> Go server)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator

import pytest

from interop.grpc_go import harness
from support.grpc_peer import http2_backend
from support.redis import RedisServer
from wirecall import Server
from wirecall.pubsub.service import PublishRequest, PubSub, PubSubStub, SubscribeRequest
from wirecall.transport import grpc as tg
from wirecall.transport.base import parse_url
from wirecall.tutorial.greeter import Greeter, GreeterStub, HelloRequest

#: every test on both HTTP/2 backends of the gRPC core (ngh2, h2)
pytestmark = pytest.mark.usefixtures("http2_backend")
__all__ = ["http2_backend"]


@pytest.fixture
async def wc_server() -> AsyncIterator[tuple[Server, str]]:
    server = Server()
    server.register(Greeter())
    server.register(PubSub())
    [url] = await server.start("grpc://127.0.0.1:0")
    yield server, url.removeprefix("grpc://")
    await server.close(drain_timeout=1)


async def _run(prog: str, *args: str, timeout: float = 30) -> list[dict[str, object]]:
    exe = await asyncio.to_thread(harness.build, prog)
    proc = await asyncio.create_subprocess_exec(
        str(exe), *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode == 0, f"{prog} failed: {err.decode()}"
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


async def test_go_greeter_client_against_wirecall(wc_server: tuple[Server, str]) -> None:
    out = await _run("greeter_client", wc_server[1], "Alice")
    assert out == [{"message": "Hello, Alice"}]
    out = await _run("greeter_client", wc_server[1], "世界")
    assert out == [{"message": "Hello, 世界"}]


async def test_go_pubsub_clients_against_wirecall(wc_server: tuple[Server, str]) -> None:
    addr = wc_server[1]
    exe = await asyncio.to_thread(harness.build, "pubsub_subscriber")
    await asyncio.to_thread(harness.build, "pubsub_publisher")
    sub = await asyncio.create_subprocess_exec(
        str(exe), addr, "topic1", "3", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        pubsub = next(s for s in wc_server[0].registry.services if s == "PubSub")
        assert pubsub
        svc = wc_server[0].registry.methods["PubSub.Publish"].func.__self__
        deadline = time.monotonic() + 20
        while svc.broker.subscribers("topic1") == 0:  # wait for the Go subscription
            assert time.monotonic() < deadline, "the Go subscriber never subscribed"
            await asyncio.sleep(0.02)
        out = await _run("pubsub_publisher", addr, "topic1", "你好 世界", "gRPC 流", "推送")
        assert out == [{"topic": "topic1", "success": True}] * 3
        got, err = await asyncio.wait_for(sub.communicate(), 20)
        assert sub.returncode == 0, err.decode()
        lines = [json.loads(x) for x in got.decode().splitlines()]
        assert lines == [{"subscribed": "topic1"}, {"message": "你好 世界"},
                         {"message": "gRPC 流"}, {"message": "推送"}]
    finally:
        if sub.returncode is None:
            sub.kill()
            await sub.wait()


async def test_wirecall_clients_against_go_servers() -> None:
    greeter = await asyncio.to_thread(harness.start, "greeter_server")
    redis = RedisServer().start()  # the tutorial's Go server keeps its topics in Redis
    pubsub = await asyncio.to_thread(harness.start, "pubsub_server", "127.0.0.1:0",
                                     redis.address)
    try:
        conn = await tg.connect(parse_url(f"grpc://{greeter.addr}"))
        try:
            reply = await GreeterStub(conn).SayHello(HelloRequest(name="Bob"), timeout=5)
            assert reply.message == "Hello, Bob"
        finally:
            await conn.aclose()
        conn = await tg.connect(parse_url(f"grpc://{pubsub.addr}"))
        try:
            stub = PubSubStub(conn)
            stream = stub.Subscribe(SubscribeRequest(topic="t"), timeout=20)
            got: list[str] = []
            # Messages published before the Go server registered the subscription are lost
            # (pub/sub semantics): publish until the subscriber has seen three.
            for i in range(200):
                r = await stub.Publish(PublishRequest(topic="t", message=f"m{i}"), timeout=5)
                assert r.success is True
                try:
                    msg = await asyncio.wait_for(stream.recv(), 0.05)
                    got.append(msg.message)
                except TimeoutError:
                    continue
                if len(got) == 3:
                    break
            assert len(got) == 3
            first = int(got[0][1:])
            assert got == [f"m{first}", f"m{first + 1}", f"m{first + 2}"]
            stream.cancel()
        finally:
            await conn.aclose()
    finally:
        greeter.stop()
        pubsub.stop()
        redis.close()
