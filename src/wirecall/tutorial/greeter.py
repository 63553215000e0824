"""The tutorial's Greeter (section 3.2), served by wirecall from ``helloworld.proto``.

The same class answers grpc-go and grpcio clients over ``grpc://`` and wirecall clients over
``tcp://`` (protobuf codec)::

    python -m wirecall.tutorial.greeter serve grpc://127.0.0.1:50051
    python -m wirecall.tutorial.greeter call grpc://127.0.0.1:50051 Alice
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from wirecall import Server
from wirecall.context import Context
from wirecall.gen import load_proto

__all__ = ["Greeter", "GreeterStub", "HelloReply", "HelloRequest", "main"]

PROTO = Path(__file__).parent / "protos" / "helloworld.proto"
helloworld_pb2, _wc = load_proto(PROTO)
assert _wc is not None
HelloRequest: Any = helloworld_pb2.HelloRequest
HelloReply: Any = helloworld_pb2.HelloReply
GreeterStub: Any = _wc.GreeterStub


class Greeter(_wc.GreeterBase):  # type: ignore[misc,name-defined]
    """``helloworld.Greeter``: SayHello answers "Hello, <name>"."""

    async def SayHello(self, request: Any, context: Context) -> Any:
        return HelloReply(message="Hello, " + request.name)


async def serve(url: str) -> None:
    server = Server()
    server.register(Greeter())
    print("listening on", *(await server.start(url)), flush=True)
    await server.serve_forever(handle_signals=True)


async def call(url: str, name: str) -> str:
    from wirecall.client import connect

    async with await connect(url) as client:
        reply = await GreeterStub(client).SayHello(HelloRequest(name=name), timeout=5)
        return str(reply.message)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) >= 2 and args[0] == "serve":
        asyncio.run(serve(args[1]))
        return 0
    if len(args) >= 2 and args[0] == "call":
        print("服务端返回:", asyncio.run(call(args[1], args[2] if len(args) > 2 else "Alice")))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
