"""The tutorial's Pub/Sub programs (section 3.3): the server, a publisher and a subscriber,
as the tutorial's Go programs print them. The service itself is
:class:`wirecall.pubsub.service.PubSub`; BROKER_URL is ``memory://`` (the default),
``redis://127.0.0.1:6379/0`` (the tutorial's Redis) or ``redis+streams://...``.

    python -m wirecall.tutorial.pubsub serve grpc://127.0.0.1:50051 [BROKER_URL]
    python -m wirecall.tutorial.pubsub subscribe grpc://127.0.0.1:50051 topic1
    python -m wirecall.tutorial.pubsub publish grpc://127.0.0.1:50051 topic1 你好 世界
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from wirecall import Server
from wirecall.pubsub.service import PublishRequest, PubSub, PubSubStub, SubscribeRequest

__all__ = ["main", "publish", "serve", "subscribe"]


async def serve(url: str, broker: str = "memory://") -> None:
    server = Server()
    server.register(PubSub(broker))
    print("listening on", *(await server.start(url)), flush=True)
    await server.serve_forever(handle_signals=True)


async def publish(url: str, topic: str, messages: list[str]) -> None:
    from wirecall.client import connect

    async with await connect(url) as client:
        stub = PubSubStub(client)
        for m in messages:
            r = await stub.Publish(PublishRequest(topic=topic, message=m), timeout=5)
            print(f"发布到主题 {topic} 成功: {r.success}, 消息内容: {m}", flush=True)


async def subscribe(url: str, topic: str, count: int | None = None) -> list[str]:
    from wirecall.transport.base import load_transport, parse_url

    u = parse_url(url)
    conn = await load_transport(u.scheme).connect(u)
    got: list[str] = []
    try:
        async for msg in PubSubStub(conn).Subscribe(SubscribeRequest(topic=topic)):
            print(f"Received message from topic {topic}: {msg.message}", flush=True)
            got.append(msg.message)
            if count is not None and len(got) >= count:
                break
    finally:
        await conn.aclose()
    return got


def _run(coro: Any) -> None:
    """On uvloop when it is installed (the speed extra), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) in (2, 3) and args[0] == "serve":
        _run(serve(*args[1:]))
    elif len(args) >= 3 and args[0] == "subscribe":
        _run(subscribe(args[1], args[2]))
    elif len(args) >= 4 and args[0] == "publish":
        _run(publish(args[1], args[2], args[3:]))
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
