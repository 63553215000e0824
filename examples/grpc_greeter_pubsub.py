"""The tutorial's gRPC section (3.2 Greeter, 3.3 Pub/Sub) with wirecall, in one process.

One server serves the Greeter and the Pub/Sub service (generated from their .proto files) on
``grpc://`` and ``tcp://``, plus the standard health service and reflection. A grpcio client
(if installed) and wirecall clients call it; a subscriber streams what a publisher publishes.
Run: ``python examples/grpc_greeter_pubsub.py``.
"""

from __future__ import annotations

import asyncio

from wirecall import Server
from wirecall.client import connect
from wirecall.observability.health import enable_health
from wirecall.observability.reflection import enable_reflection
from wirecall.pubsub.service import PublishRequest, PubSub, PubSubStub, SubscribeRequest
from wirecall.tutorial.greeter import Greeter, GreeterStub, HelloReply, HelloRequest


async def main() -> None:
    server = Server()
    server.register(Greeter())
    pubsub = PubSub()
    server.register(pubsub)
    enable_health(server)
    enable_reflection(server)
    grpc_url, tcp_url = await server.start("grpc://127.0.0.1:0", "tcp://127.0.0.1:0")
    print("serving on", grpc_url, "and", tcp_url)

    # 3.2: unary, the same class over both wires (protobuf on tcp:// too)
    async with await connect(grpc_url) as client:
        reply = await GreeterStub(client).SayHello(HelloRequest(name="Alice"), timeout=1)
        print("服务端返回 (grpc):", reply.message)
    async with await connect(tcp_url, codec="proto") as client:
        reply = await GreeterStub(client).SayHello(HelloRequest(name="Bob"), timeout=1)
        print("服务端返回 (tcp):", reply.message)

    try:  # the reference implementation as a client, if it is installed
        import grpc

        async with grpc.aio.insecure_channel(grpc_url.removeprefix("grpc://")) as ch:
            say = ch.unary_unary("/helloworld.Greeter/SayHello",
                                 request_serializer=HelloRequest.SerializeToString,
                                 response_deserializer=HelloReply.FromString)
            print("grpcio client:", (await say(HelloRequest(name="grpcio"), timeout=1)).message)
    except ImportError:
        print("grpcio client: not installed")

    # 3.3: Subscribe is a server stream; Publish is unary
    async with await connect(grpc_url) as client:
        stub = PubSubStub(client)
        received: list[str] = []

        async def subscriber() -> None:
            async for msg in stub.Subscribe(SubscribeRequest(topic="topic1"), timeout=5):
                print("Received message from topic topic1:", msg.message)
                received.append(msg.message)
                if len(received) == 3:
                    return

        sub = asyncio.create_task(subscriber())
        while pubsub.broker.subscribers("topic1") == 0:  # type: ignore[attr-defined]
            await asyncio.sleep(0.01)
        for text in ("你好 世界", "gRPC 流", "实时 推送"):
            r = await stub.Publish(PublishRequest(topic="topic1", message=text), timeout=1)
            print(f"发布到主题 topic1 成功: {r.success}, 消息内容: {text}")
        await asyncio.wait_for(sub, 5)
        assert received == ["你好 世界", "gRPC 流", "实时 推送"]
    await server.close()
    print("example passed")


if __name__ == "__main__":
    asyncio.run(main())
