"""``Client.stream`` (the public streaming API) on tcp:// and grpc://, and generated stubs
over a ``Client``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from support.services import Calc, Point
from wirecall import Server
from wirecall.client import connect
from wirecall.streaming import EOF
from wirecall.tutorial.greeter import Greeter, GreeterStub, HelloRequest


@pytest.mark.parametrize("scheme", ["tcp", "grpc"])
async def test_client_stream_four_modes(scheme: str) -> None:
    server = Server()
    server.register(Calc(), name="Calc")
    server.register(Greeter())
    [url] = await server.start(f"{scheme}://127.0.0.1:0")
    try:
        async with await connect(url) as client:
            assert await client.call("Calc.Add", 1, 2) == 3
            assert [i async for i in client.stream("Calc.Count", [3], result_type=int)] == [
                0, 1, 2]

            async def pts() -> AsyncIterator[Point]:
                for i in range(20):
                    yield Point(i, 1)

            s = client.stream("Calc.Sum", pts(), result_type=Point, timeout=5)
            assert await s.result() == Point(190, 20)
            bidi = client.stream("Calc.Double", result_type=int)
            await bidi.send(4)
            assert await bidi.recv() == 8
            await bidi.done_writing()
            assert await bidi.recv() is EOF
            if scheme == "grpc":  # protobuf stubs over a Client
                r = await GreeterStub(client).SayHello(HelloRequest(name="Cy"), timeout=5)
                assert r.message == "Hello, Cy"
    finally:
        await server.close(drain_timeout=1)


@pytest.mark.parametrize("scheme", ["tcp", "grpc", "ws"])
async def test_an_unencodable_item_is_invalid_argument_and_the_stream_goes_on(scheme: str) -> None:
    from wirecall import InvalidArgument

    server = Server()
    server.register(Calc(), name="Calc")
    [url] = await server.start(f"{scheme}://127.0.0.1:0")  # ws:// reports ws://h:p/ws
    try:
        async with await connect(url) as client:
            bidi = client.stream("Calc.Double", result_type=int, timeout=5)
            with pytest.raises(InvalidArgument, match=r"cannot encode a message of Calc\.Double"):
                await bidi.send(object())
            await bidi.send(21)
            assert await bidi.recv() == 42
            await bidi.done_writing()
            assert await bidi.recv() is EOF
    finally:
        await server.close(drain_timeout=1)
