"""gRPC write batching: a write goes out every 16 unary requests (client) and replies
(server), not only once per loop iteration, so the peer can start on the first batch."""

from __future__ import annotations

import asyncio
from typing import Any

from wirecall import Server, method
from wirecall.transport import grpc as tg
from wirecall.transport.base import parse_url


class Calc:
    @method(inline=True)
    def Add(self, a: int, b: int) -> int:
        return a + b


def _count_writes(transport: Any) -> list[int]:
    sizes: list[int] = []
    orig = transport.write

    def write(data: bytes) -> None:
        sizes.append(len(data))
        orig(data)

    transport.write = write  # asyncio's selector transport (the tests' loop) allows it
    return sizes


async def test_client_and_server_write_every_16_unary_messages() -> None:
    server = Server()
    server.register(Calc())
    (url,) = await server.start("grpc://127.0.0.1:0")
    conn = await tg.connect(parse_url(url))
    try:
        await conn.call("Calc.Add", [0, 0], 5, None, int)  # SETTINGS exchanged
        [proto] = [p for lst in server.listeners for p in lst.connections]  # type: ignore[attr-defined]
        client_writes = _count_writes(conn.transport)
        server_writes = _count_writes(proto.transport)
        calls = [asyncio.ensure_future(conn.call("Calc.Add", [i, 1], 5, None, int))
                 for i in range(48)]
        await asyncio.sleep(0)  # every call queued its request in this one iteration
        # 48 requests: three full batches written while queuing, nothing left for the flush
        assert len(client_writes) >= 3
        assert await asyncio.gather(*calls) == [i + 1 for i in range(48)]
        # the server answered in batches too: more than one write for 48 replies
        assert len(server_writes) >= 3
    finally:
        await conn.aclose()
        await server.close(drain_timeout=1)
