"""The tutorial's 2.2.3: a real nginx (least_conn) in front of two wirecall HTTP servers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import wirecall

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "nginx"))
import run_nginx  # noqa: E402
from run_nginx import CountingCalculator, Nginx  # noqa: E402

PAYLOAD = {"jsonrpc": "2.0", "method": "Calculator.Add", "params": [{"A": 10, "B": 5}], "id": 1}


class Cluster:
    def __init__(self) -> None:
        self.calcs = [CountingCalculator(), CountingCalculator()]
        self.servers: list[wirecall.Server] = []
        self.nginx: Nginx | None = None

    async def start(self) -> str:
        ports = []
        for c in self.calcs:
            s = wirecall.Server()
            s.register(c, name="Calculator")
            [url] = await s.start("http://127.0.0.1:0")
            self.servers.append(s)
            ports.append(int(url.rsplit(":", 1)[1]))
        self.nginx = Nginx((ports[0], ports[1]))
        await asyncio.to_thread(self.nginx.start)
        return f"http://127.0.0.1:{self.nginx.port}/rpc"

    def accepted(self) -> list[int]:
        return [s.listeners[0].service.accepted for s in self.servers]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self.nginx is not None:
            await asyncio.to_thread(self.nginx.stop)
        for s in self.servers:
            await s.close(drain_timeout=1)


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[Cluster, str]]:
    run_nginx.nginx_binary()  # fails with "apt-get install -y nginx" when missing
    c = Cluster()
    url = await c.start()
    yield c, url
    await c.stop()


async def post_many(url: str, n: int, concurrency: int) -> list[Any]:
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as http:

        async def one() -> Any:
            async with sem, http.post(url, json=PAYLOAD) as r:
                assert r.status == 200
                return (await r.json())["result"]

        return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(n))), 60)


async def test_calls_reach_both_servers_over_keepalive(cluster: tuple[Cluster, str]) -> None:
    c, url = cluster
    results = await post_many(url, 40, 1)
    assert results == [15] * 40
    assert all(calc.calls > 0 for calc in c.calcs), [x.calls for x in c.calcs]
    assert sum(calc.calls for calc in c.calcs) == 40
    # nginx reused its upstream connections (keepalive, HTTP/1.1, Connection "")
    assert sum(c.accepted()) < 10, c.accepted()


async def test_wirecall_client_through_nginx(cluster: tuple[Cluster, str]) -> None:
    _c, url = cluster
    async with await wirecall.connect(url) as client:
        got = await asyncio.gather(*(client.call("Calculator.Add", {"A": i, "B": 1})
                                     for i in range(20)))
        assert got == [i + 1 for i in range(20)]
        out = await wirecall.transport.http.batch(client, [
            ("Calculator.Add", [{"A": 1, "B": 2}]), ("Calculator.Nope", [])])
        assert out[0] == 3 and isinstance(out[1], wirecall.Unimplemented)


async def test_least_conn_sends_fewer_calls_to_the_slow_server(
    cluster: tuple[Cluster, str],
) -> None:
    c, url = cluster
    slow, fast = c.calcs
    slow.delay = 0.25
    results = await post_many(url, 120, 8)
    assert results == [15] * 120
    # round robin would split 60/60; least_conn keeps the busy (slow) server's share low
    assert slow.calls + fast.calls == 120
    print("slow/fast:", slow.calls, fast.calls)
    assert slow.calls < fast.calls / 3, (slow.calls, fast.calls)
    assert slow.calls > 0


async def test_nginx_healthz_through_the_proxy(cluster: tuple[Cluster, str]) -> None:
    _c, url = cluster
    async with aiohttp.ClientSession() as http, http.get(url.replace("/rpc", "/healthz")) as r:
        assert r.status == 200 and await r.text() == "ok\n"


def test_example_script_runs() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "nginx" / "run_nginx.py")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Calculator.Add via nginx: 15" in out.stdout
    assert "[10, 10]" in out.stdout  # least_conn with sequential calls alternates
