"""The admin listener: /metrics, the dashboard's files, /api/snapshot and /api/events (SSE),
refusals (methods, header size, unknown paths), and nothing administrative on service ports."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from support.observability import Args, Shop
from wirecall import Client, Server
from wirecall.observability.admin import Admin, parse_admin_url


async def http(url: str, path: str, verb: str = "GET", extra: str = ""
               ) -> tuple[int, dict[str, str], bytes]:
    host, port = parse_admin_url(url)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"{verb} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(x.split(": ", 1) for x in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.fixture
async def admin() -> AsyncIterator[tuple[Server, Admin, list[str]]]:
    server = Server()
    server.register(Shop(), "Shop")
    adm = Admin(server, metrics=True, interval=0.1)
    urls = await server.start("tcp://127.0.0.1:0", "http://127.0.0.1:0")
    await adm.start("http://127.0.0.1:0")
    yield server, adm, urls
    await adm.close()
    await server.close(drain_timeout=1)


async def test_snapshot_and_metrics(admin: tuple[Server, Admin, list[str]]) -> None:
    _, adm, urls = admin
    async with Client(urls[0]) as c:
        for i in range(20):
            await c.call("Shop.Add", Args(i, i))
        for _ in range(5):
            with pytest.raises(Exception, match="no item"):
                await c.call("Shop.Fail", Args(1, 1))
        status, headers, body = await http(adm.url, "/api/snapshot")
        assert status == 200 and headers["content-type"] == "application/json"
        snap = json.loads(body)
    rows = {(r["method"], r["wire"]): r for r in snap["methods"]}
    add, fail = rows[("Shop.Add", "tcp")], rows[("Shop.Fail", "tcp")]
    assert add["count"] == 20 and add["rate"] > 0 and add["error_rate"] == 0
    assert fail["count"] == 5 and fail["error_rate"] == 1.0
    assert fail["statuses"] == {"NOT_FOUND": 5}
    assert 0 < add["p50_ms"] <= add["p99_ms"]
    assert snap["connections"]["tcp"]["open"] == 1
    assert abs(snap["error_rate"] - 5 / 25) < 1e-9
    assert snap["slowest"] and {s["method"] for s in snap["slowest"]} <= {"Shop.Add", "Shop.Fail"}
    assert snap["cluster"] is None
    status, headers, body = await http(adm.url, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert ('wirecall_server_calls_total{method="Add",service="Shop",status="OK",wire="tcp"} 20.0'
            in body.decode())


async def test_dashboard_files(admin: tuple[Server, Admin, list[str]]) -> None:
    _, adm, _ = admin
    for path, ctype, needle in [("/", "text/html", b"<table id=\"methods\""),
                                ("/dashboard.js", "text/javascript", b"EventSource"),
                                ("/dashboard.css", "text/css", b"--bg")]:
        status, headers, body = await http(adm.url, path)
        assert status == 200, path
        assert headers["content-type"].startswith(ctype)
        assert needle in body
    status, headers, body = await http(adm.url, "/", verb="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


async def test_events_stream_snapshots(admin: tuple[Server, Admin, list[str]]) -> None:
    _, adm, urls = admin
    host, port = parse_admin_url(adm.url)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert b"text/event-stream" in head
    first = json.loads((await asyncio.wait_for(reader.readuntil(b"\n\n"), 5))[6:])
    assert first["methods"] == []
    async with Client(urls[0]) as c:
        await c.call("Shop.Add", Args(1, 1))
    seen: list[Any] = []
    for _ in range(30):
        event = json.loads((await asyncio.wait_for(reader.readuntil(b"\n\n"), 5))[6:])
        seen = [r["method"] for r in event["methods"]]
        if seen:
            break
    assert seen == ["Shop.Add"]
    writer.close()


async def test_refusals(admin: tuple[Server, Admin, list[str]]) -> None:
    _, adm, urls = admin
    assert (await http(adm.url, "/nope"))[0] == 404
    status, headers, _ = await http(adm.url, "/metrics", verb="POST")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    status, _, _ = await http(adm.url, "/", extra="X-Big: " + "a" * 9000 + "\r\n")
    assert status == 431
    # the service's own HTTP port serves no admin page
    status, _, _ = await http(urls[1], "/metrics")
    assert status == 404


async def test_metrics_off_says_how_to_turn_on() -> None:
    server = Server()
    adm = Admin(server)
    await adm.start("http://127.0.0.1:0")
    try:
        status, _, body = await http(adm.url, "/metrics")
        assert status == 404 and b"--metrics" in body
    finally:
        await adm.close()


@pytest.mark.parametrize("bad", ["https://127.0.0.1:9090", "127.0.0.1:9090",
                                 "http://127.0.0.1", "http://127.0.0.1:9090/x", "http://:80"])
def test_bad_admin_url(bad: str) -> None:
    with pytest.raises(ValueError, match="admin URL"):
        parse_admin_url(bad)
