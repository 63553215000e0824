"""``wirecall pubsub publish|subscribe``: the tutorial's Pub/Sub from a shell.

URL is either a server with the ``pubsub.PubSub`` service (grpc://, tcp://, ws://: a wirecall
server, or the tutorial's Go server) or a broker itself (redis://host:port/db,
redis+streams://host:port/db: straight to Redis, no server). ``subscribe`` prints
``{"subscribed": TOPIC}`` once each subscription is live, then one JSON line per message:
``{"topic": TOPIC, "message": TEXT}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from .common import CommandError, Subparsers, add_command, client_options, positive

__all__ = ["add_parser", "publish", "subscribe"]

BROKER_SCHEMES = ("redis", "rediss", "redis+streams", "rediss+streams")

PUBLISH_EXAMPLES = (
    "wirecall pubsub publish grpc://127.0.0.1:50051 topic1 '你好 世界'",
    "wirecall pubsub publish tcp://127.0.0.1:7000 news one two three   # three messages",
    "wirecall pubsub publish redis://127.0.0.1:6379/0 topic1 hello      # straight to Redis",
)
SUBSCRIBE_EXAMPLES = (
    "wirecall pubsub subscribe grpc://127.0.0.1:50051 topic1 topic2 topic3",
    "wirecall pubsub subscribe tcp://127.0.0.1:7000 news --count 10",
    "wirecall pubsub subscribe tcp://127.0.0.1:7000 'news.*' --pattern",
    "wirecall pubsub subscribe redis+streams://127.0.0.1:6379/0 orders --group billing",
    "wirecall pubsub subscribe redis+streams://127.0.0.1:6379/0 orders --from 0  # replay",
)


def add_parser(sub: Subparsers) -> None:
    group = sub.add_parser("pubsub", help="publish to and subscribe to topics "
                           "(a PubSub server, or Redis directly)",
                           description=__doc__).add_subparsers(
        dest="action", required=True, metavar="ACTION")
    p = add_command(group, "publish", "publish messages to a topic", PUBLISH_EXAMPLES)
    p.add_argument("url", help="a PubSub server (grpc://, tcp://, ws://) or a broker "
                   "(redis://, redis+streams://)")
    p.add_argument("topic")
    p.add_argument("messages", nargs="+", metavar="MESSAGE", help="one publish each")
    client_options(p)
    p.set_defaults(handler=publish)
    s = add_command(group, "subscribe", "print a topic's messages as JSON lines",
                    SUBSCRIBE_EXAMPLES)
    s.add_argument("url", help="a PubSub server (grpc://, tcp://, ws://) or a broker "
                   "(redis://, redis+streams://)")
    s.add_argument("topics", nargs="+", metavar="TOPIC")
    s.add_argument("--count", type=positive(int), default=None,
                   help="exit after this many messages (all topics together)")
    s.add_argument("--pattern", action="store_true", help="topics are glob patterns")
    s.add_argument("--group", default=None, help="Streams: the consumer group")
    s.add_argument("--consumer", default=None, help="Streams: this consumer's name")
    s.add_argument("--from", dest="start", default=None, metavar="ID|@MS|0",
                   help="Streams: replay from a stream id, a unix time in ms (@MS) or 0")
    s.add_argument("--no-confirm", action="store_true",
                   help="the server does not confirm subscriptions (the tutorial's Go one)")
    client_options(s)
    s.set_defaults(handler=subscribe)


def _is_broker(url: str) -> bool:
    return url.split("://", 1)[0].lower() in BROKER_SCHEMES


def _broker(url: str) -> Any:
    from wirecall.pubsub import open_broker

    return open_broker(url)


async def publish(args: argparse.Namespace) -> int:
    if _is_broker(args.url):
        broker = _broker(args.url)
        try:
            for m in args.messages:
                n = await broker.publish(args.topic, m)
                print(json.dumps({"topic": args.topic, "success": True, "receivers": n},
                                 ensure_ascii=False), flush=True)
        finally:
            await broker.aclose()
        return 0
    from wirecall.pubsub.client import publish as remote_publish

    for m in args.messages:
        ok = await remote_publish(args.url, args.topic, m, timeout=args.timeout or 10)
        print(json.dumps({"topic": args.topic, "success": ok}, ensure_ascii=False),
              flush=True)
    return 0


async def subscribe(args: argparse.Namespace) -> int:
    options = {"pattern": args.pattern, "group": args.group, "consumer": args.consumer,
               "start": args.start}
    if args.start is not None and (args.group or args.consumer):
        raise CommandError("--from replays without a group: give --group/--consumer or "
                           "--from, not both")
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(1000)
    if _is_broker(args.url):
        broker = _broker(args.url)
        opts = {k: v for k, v in options.items() if v}
        subs = [broker.subscribe(t, **opts) for t in args.topics]
        for t, s in zip(args.topics, subs, strict=True):
            await s.live()
            _line({"subscribed": t})
        readers = [_pump(t, s, queue) for t, s in zip(args.topics, subs, strict=True)]
        try:
            return await _print(readers, queue, args.count)
        finally:
            for s in subs:
                await s.aclose()
            await broker.aclose()
    from wirecall.pubsub.client import remote_subscription

    remote = [remote_subscription(args.url, t, timeout=args.timeout,
                                  confirm=not args.no_confirm, **options)
              for t in args.topics]
    try:
        for t, r in zip(args.topics, remote, strict=True):
            await r.__aenter__()
            _line({"subscribed": t})
        readers = [_pump(t, r, queue) for t, r in zip(args.topics, remote, strict=True)]
        return await _print(readers, queue, args.count)
    finally:
        for r in remote:
            await r.aclose()


def _line(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, ensure_ascii=False), flush=True)


async def _pump(topic: str, sub: Any, queue: asyncio.Queue[tuple[str, str]]) -> None:
    async for m in sub:
        await queue.put((topic, m))


async def _print(readers: list[Any], queue: asyncio.Queue[tuple[str, str]],
                 count: int | None) -> int:
    tasks = [asyncio.ensure_future(r) for r in readers]
    seen = 0
    try:
        while count is None or seen < count:
            get = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait([get, *tasks], return_when=asyncio.FIRST_COMPLETED)
            if get not in done:
                get.cancel()
                for t in done:  # a subscription ended: its error, or the end
                    t.result()
                print("wirecall: the subscription ended", file=sys.stderr)
                return 1
            topic, message = get.result()
            _line({"topic": topic, "message": message})
            seen += 1
        return 0
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
