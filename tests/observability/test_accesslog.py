"""The access log: one line per call and stream, text or JSON lines, every wire."""

from __future__ import annotations

import asyncio
import io
import json
import re
from pathlib import Path

import pytest

from support.observability import WIRES, Args, Shop, listen_urls
from wirecall import Client, Context, RpcError, Server
from wirecall.observability.accesslog import AccessLog

TEXT = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?P<wire>\S+) (?P<peer>\S+) (?P<method>\S+) "
    r"(?P<kind>call|stream) (?P<status>[A-Z_]+) (?P<ms>\d+\.\d{3})ms (?P<req>\d+|-) "
    r"(?P<resp>\d+|-)$")


async def test_json_lines_on_every_wire(tmp_path: Path) -> None:
    server = Server()
    server.register(Shop(), "Shop")
    out = io.StringIO()
    log = AccessLog(server, fmt="json", stream=out)
    urls = await server.start(*listen_urls(tmp_path))
    try:
        for url in urls:
            async with Client(url) as c:
                await c.call("Shop.Add", Args(1, 2), result_type=int)
                with pytest.raises(RpcError):
                    await c.call("Shop.Fail", Args(1, 2), result_type=int)
        async with Client(urls[0]) as c:
            assert [x async for x in c.stream("Shop.Count", Args(2, 0))] == [0, 1]
    finally:
        await server.close(drain_timeout=1)
    log.close()
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert len(lines) == 2 * len(WIRES) + 1
    for wire in WIRES:
        mine = [x for x in lines if x["wire"] == wire and x["kind"] == "call"]
        assert [(x["method"], x["status"]) for x in mine] == [
            ("Shop.Add", "OK"), ("Shop.Fail", "NOT_FOUND")], wire
        for x in mine:
            assert x["duration_ms"] >= 0
            if wire == "unix":
                assert x["peer"].startswith("unix")
            else:
                assert x["peer"].startswith("127.0.0.1:"), x
    [stream] = [x for x in lines if x["kind"] == "stream"]
    assert (stream["method"], stream["wire"], stream["status"]) == ("Shop.Count", "tcp", "OK")


async def test_text_lines(tmp_path: Path) -> None:
    server = Server()
    server.register(Shop(), "Shop")
    out = io.StringIO()
    log = AccessLog(server, stream=out)
    [url] = await server.start("tcp://127.0.0.1:0")
    try:
        async with Client(url) as c:
            await c.call("Shop.Slow", Args(30, 0))
            assert out.getvalue() == ""  # queued: written every 50 ms or at close
            await asyncio.sleep(0.2)
            assert out.getvalue().count("\n") == 1  # the timer wrote it
    finally:
        await server.close(drain_timeout=1)
    log.close()
    [line] = out.getvalue().splitlines()
    m = TEXT.match(line)
    assert m is not None, line
    assert (m["wire"], m["method"], m["kind"], m["status"]) == ("tcp", "Shop.Slow", "call", "OK")
    assert float(m["ms"]) >= 29.0


def test_unknown_format_is_an_error() -> None:
    with pytest.raises(ValueError, match="access log format must be one of"):
        AccessLog(fmt="xml")


def test_line_without_a_loop_is_flushed_at_once() -> None:
    out = io.StringIO()
    log = AccessLog(stream=out, fmt="json")
    done: list[object] = []
    wrapped = log.call_started("A.B", Context("A.B", peer="1.2.3.4:5", transport="grpc"),
                               lambda r, e: done.append(r))
    wrapped(7, None)
    assert done == [7]
    rec = json.loads(out.getvalue())
    assert rec["method"] == "A.B" and rec["wire"] == "grpc" and rec["peer"] == "1.2.3.4:5"
