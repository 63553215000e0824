"""The IdGen service on every wire (in-process server, real sockets on 127.0.0.1), its
argument checks and refusals, and a static node restarted with its clock set back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from support.idgen import ManualClock
from wirecall.client import Client
from wirecall.errors import InvalidArgument, Unavailable
from wirecall.idgen.node import IdNode, NodeConfig
from wirecall.idgen.service import SnowflakeIdGen, register
from wirecall.idgen.snowflake import Decoded, Layout, Snowflake
from wirecall.server import Server

WIRES = ["tcp://127.0.0.1:0", "grpc://127.0.0.1:0", "http://127.0.0.1:0", "ws://127.0.0.1:0",
         "any://127.0.0.1:0"]


@pytest.fixture
async def served() -> tuple[Server, list[str], Snowflake]:
    gen = Snowflake(9)
    server = Server()
    register(server, SnowflakeIdGen(gen))
    urls = await server.start(*WIRES, "jsonrpc://127.0.0.1:0", "gob://127.0.0.1:0")
    yield server, urls, gen  # type: ignore[misc]
    await server.close()


async def test_next_batch_decode_on_every_wire(served: tuple[Server, list[str], Snowflake],
                                               tmp_path: Path) -> None:
    _server, urls, _gen = served
    seen: list[int] = []
    for url in urls[: len(WIRES)]:
        async with Client(url) as c:
            one = await c.call("IdGen.Next", "orders")
            many = await c.call("IdGen.Batch", "orders", 500)
            d = await c.call("IdGen.Decode", one)
        assert isinstance(one, int) and len(many) == 500, url
        assert many == sorted(many) and many[0] > one, url
        assert d["worker"] == 9 and d["id"] == one, url
        seen += [one, *many]
    # Go's wires: one argument, so Next(tag) and Decode(id). Over gob, Decode's reply is a
    # Go struct whose fields have Go's exported names (a Go client can decode only those):
    # read plain, it is {"ID", "TimeMs", "Worker", "Sequence"}; Go JSON-RPC keeps the JSON
    # names of every other wire. With result_type=Decoded both give the dataclass.
    for url in urls[len(WIRES):]:
        async with Client(url) as c:
            one = await c.call("IdGen.Next", "orders")
            d = await c.call("IdGen.Decode", one)
            typed = await c.call("IdGen.Decode", one, result_type=Decoded)
        want = _gen.layout.decode(one)
        if url.startswith("gob://"):
            assert d == {"ID": one, "TimeMs": want.time_ms, "Worker": 9,
                         "Sequence": want.sequence}, d
        else:
            assert d == dataclasses.asdict(want), (url, d)
        assert typed == want, url
        seen.append(one)
    assert len(set(seen)) == len(seen) and seen == sorted(seen)


async def test_bad_arguments_name_the_field(served: tuple[Server, list[str], Snowflake]) -> None:
    _, urls, _ = served
    async with Client(urls[0]) as c:
        with pytest.raises(InvalidArgument, match="n must be between 1 and 100000, got 0"):
            await c.call("IdGen.Batch", "", 0)
        with pytest.raises(InvalidArgument, match="n must be between 1 and 100000"):
            await c.call("IdGen.Batch", "", 100_001)
        with pytest.raises(InvalidArgument, match="tag"):
            await c.call("IdGen.Next", "x" * 200)
        with pytest.raises(InvalidArgument, match="id"):
            await c.call("IdGen.Decode", -5)
        with pytest.raises(InvalidArgument, match="tag"):
            await c.call("IdGen.Next", 12)


async def test_refusals_are_unavailable_with_the_reason() -> None:
    clock = ManualClock()
    gen = Snowflake(2, clock=clock, sleep=clock.sleep)
    server = Server()
    register(server, SnowflakeIdGen(gen))
    (url,) = await server.start("tcp://127.0.0.1:0")
    try:
        async with Client(url) as c:
            first = await c.call("IdGen.Next", "")
            clock.advance_ms(-10_000)
            with pytest.raises(Unavailable, match="10000 ms behind"):
                await c.call("IdGen.Next", "")
            with pytest.raises(Unavailable, match="behind"):
                await c.call("IdGen.Batch", "", 10)
            clock.advance_ms(10_001)
            assert await c.call("IdGen.Next", "") > first
            gen.set_fence(0.0)
            clock.advance_ms(1)
            with pytest.raises(Unavailable, match="fence"):
                await c.call("IdGen.Next", "")
    finally:
        await server.close()


async def test_batch_waits_across_units_without_blocking_the_loop() -> None:
    server = Server()
    gen = Snowflake(1, Layout(sequence_bits=4))  # 16 IDs per ms
    register(server, SnowflakeIdGen(gen))
    (url,) = await server.start("tcp://127.0.0.1:0")
    try:
        async with Client(url) as c:
            ids = await c.call("IdGen.Batch", "", 2000)  # >= 125 ms of units
        assert len(set(ids)) == 2000 and ids == sorted(ids)
        units = {gen.layout.decode(i).time_ms for i in ids}
        assert len(units) >= 125
        assert max(gen.layout.decode(i).sequence for i in ids) == 15
    finally:
        await server.close()


async def test_static_node_restart_with_clock_set_back_never_repeats(tmp_path: Path) -> None:
    cfg = NodeConfig(listen=["tcp://127.0.0.1:0"], worker_id=4, data_dir=tmp_path, ttl=2.0)
    node = IdNode(cfg)
    (url,) = await node.start()
    async with Client(url) as c:
        before = await c.call("IdGen.Batch", "", 5000)
    await node.close()
    # restart 10 s in the past: the persisted horizon is ahead, so it refuses
    cfg2 = NodeConfig(listen=["tcp://127.0.0.1:0"], worker_id=4, data_dir=tmp_path, ttl=2.0,
                      clock_offset_ms=-10_000)
    node2 = IdNode(cfg2)
    (url2,) = await node2.start()
    try:
        async with Client(url2) as c:
            with pytest.raises(Unavailable, match="behind"):
                await c.call("IdGen.Next", "")
    finally:
        await node2.close()
    # restart with a correct clock: a clean stop recorded the last time issued in, so it
    # issues at once, above every earlier ID
    node3 = IdNode(NodeConfig(listen=["tcp://127.0.0.1:0"], worker_id=4, data_dir=tmp_path,
                              ttl=2.0))
    (url3,) = await node3.start()
    try:
        async with Client(url3) as c:
            after = await c.call("IdGen.Batch", "", 100)
        assert min(after) > max(before)
    finally:
        await node3.close()


def test_static_node_kill9_restart_waits_out_the_horizon(tmp_path: Path) -> None:
    """kill -9 a static node: its reserved horizon (ttl ahead) is the floor; the restart
    waits it out before listening, then issues above everything before."""
    import asyncio as aio

    from support.idgen import NodeProcess

    # the horizon is ttl ahead, renewed every ttl/4: at least 0.75 ttl of it is left when
    # the node dies; ttl 5 keeps some left after a restart that is slow on a loaded machine
    # (with ttl 2 a restart taking over 1.5 s found nothing to wait for)
    args = ("--worker-id", "6", "--ttl", "5", "--data-dir", str(tmp_path))
    first = NodeProcess(*args).start()

    async def batch(url: str) -> list[int]:
        async with Client(url) as c:
            return list(await c.call("IdGen.Batch", "", 2000))

    before = aio.run(batch(first.url))
    first.kill()
    again = NodeProcess(*args).start()
    try:
        assert any(e.startswith("waiting ") for e in again.events), again.events
        after = aio.run(batch(again.url))
        assert min(after) > max(before)
    finally:
        again.stop()
