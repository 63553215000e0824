"""The four call modes on every wire that carries streams (wirecall's tcp:// and grpc://).

A plain Python class, no .proto: the mode comes from the type hints. Run:
``python examples/streaming_modes.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from wirecall import Server
from wirecall.client import connect


class Numbers:
    async def Add(self, a: int, b: int) -> int:  # unary
        return a + b

    async def Range(self, n: int) -> AsyncIterator[int]:  # server stream
        for i in range(n):
            yield i

    async def Sum(self, nums: AsyncIterator[int]) -> int:  # client stream
        return sum([n async for n in nums])

    async def Square(self, nums: AsyncIterator[int]) -> AsyncIterator[int]:  # bidi
        async for n in nums:
            yield n * n


async def main() -> None:
    server = Server()
    server.register(Numbers())
    urls = await server.start("tcp://127.0.0.1:0", "grpc://127.0.0.1:0")
    for url in urls:
        async with await connect(url) as client:
            add = await client.call("Numbers.Add", 2, 3)
            rng = [i async for i in client.stream("Numbers.Range", [5], result_type=int)]
            total = await client.stream("Numbers.Sum", iter([1, 2, 3, 4]), result_type=int).result()
            sq = client.stream("Numbers.Square", result_type=int)
            squares = []
            for n in (3, 4, 5):
                await sq.send(n)
                squares.append(await sq.recv())
            await sq.done_writing()
            print(f"{url.split(':')[0]}: Add={add} Range={rng} Sum={total} Square={squares}")
    await server.close()


if __name__ == "__main__":
    asyncio.run(main())
