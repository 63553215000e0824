"""Every public client entry point takes a cluster target (issue #11: "any client API that
takes a URL takes a target"): ``wirecall.Client(...)`` (the constructor), ``wirecall.connect``,
``wirecall.cluster.client.connect``, ``ClusterClient``, ``wirecall.sync.connect``,
``wirecall.sync.SyncClient``, and the CLI (``wirecall call``, ``list``, ``describe``,
``bench``, ``cluster endpoints``), each with a ``static://`` and an ``etcd://`` target (a
real etcd)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

import wirecall
import wirecall.sync
from support.cluster_nodes import Node, all_ready, static_target
from wirecall.cluster import client as cluster_client
from wirecall.cluster.client import ClusterClient

NAMES = {"n0", "n1"}


@contextlib.asynccontextmanager
async def fleet(kind: str, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """Two servers behind a target of ``kind`` (round robin, so two calls reach both)."""
    servers: list[wirecall.Server] = []
    urls: list[str] = []
    for i in range(2):
        s = wirecall.Server()
        s.register(Node(f"n{i}"), name="Node")
        urls += await s.start("tcp://127.0.0.1:0")
        servers.append(s)
    try:
        if kind == "static":
            yield static_target(urls) + "?balancer=round_robin"
        else:
            etcd = request.getfixturevalue("etcd_server")
            service = f"entry{time.time_ns() % 10**9}"
            for s in servers:
                await s.register_in(etcd.url, service, ttl=5, propagation_wait=0.05)
            yield f"{etcd.url}/{service}?balancer=round_robin"
    finally:
        for s in servers:
            await s.close()


async def spread(client: Any, n: int = 6) -> Counter[str]:
    await all_ready(client)
    return Counter([await client.call("Node.Who") for _ in range(n)])


@pytest.mark.parametrize("kind", ["static", "etcd"])
async def test_async_entry_points_take_a_target(kind: str, request: pytest.FixtureRequest,
                                                ) -> None:
    async with fleet(kind, request) as target:
        # the constructor: a ClusterClient, discovery started on first use
        c = wirecall.Client(target, call_timeout=10)
        assert isinstance(c, ClusterClient) and c.call_timeout == 10
        async with c:
            assert await c.call("Node.Who") in NAMES
            assert set(await spread(c)) == NAMES
            assert c.url.scheme == "tcp"
        c = await wirecall.Client(target).connect()  # as Client(url).connect() dials
        try:
            assert set(await spread(c)) == NAMES
        finally:
            await c.close()
        for connect in (wirecall.connect, cluster_client.connect):
            c = await connect(target, timeout=10)
            try:
                assert isinstance(c, ClusterClient)
                assert set(await spread(c)) == NAMES
            finally:
                await c.close()
        async with ClusterClient(target) as c:
            assert set(await spread(c)) == NAMES
        with pytest.raises(ValueError, match="bogus"):  # unknown options are errors, at once
            wirecall.Client(target, bogus=1)


@pytest.mark.parametrize("kind", ["static", "etcd"])
async def test_sync_entry_points_take_a_target(kind: str, request: pytest.FixtureRequest,
                                               ) -> None:
    async with fleet(kind, request) as target:
        def calls() -> list[Counter[str]]:
            out = []
            with wirecall.sync.connect(target) as c:
                out.append(Counter(c.call("Node.Who") for _ in range(6)))
            with wirecall.sync.SyncClient(target, timeout=10) as c:
                out.append(Counter(c.call("Node.Who") for _ in range(6)))
            return out
        for got in await asyncio.to_thread(calls):
            assert set(got) == NAMES and sum(got.values()) == 6


@pytest.mark.parametrize("kind", ["static", "etcd"])
async def test_cli_entry_points_take_a_target(kind: str, request: pytest.FixtureRequest,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from wirecall.cli import main

    async with fleet(kind, request) as target:
        rc = await asyncio.to_thread(main, ["call", target, "Node.Who"])
        out = capsys.readouterr()
        assert rc == 0, out.err
        assert out.out.strip().strip('"') in NAMES
        rc = await asyncio.to_thread(main, ["list", target])
        out = capsys.readouterr()
        assert rc == 0 and "Node.Who" in out.out, out.err
        rc = await asyncio.to_thread(main, ["describe", target, "Node.Who"])
        out = capsys.readouterr()
        assert rc == 0 and "Node.Who() -> str" in out.out, out.err
        rc = await asyncio.to_thread(main, ["cluster", "endpoints", target, "--json"])
        out = capsys.readouterr()
        assert rc == 0 and out.out.count('"state": "ok"') == 2, out
        # wirecall bench installs signal handlers: its own process (stopped by PID)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wirecall.cli", "bench", target, "Node.Who", "-n", "40",
            "-c", "2", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            text = (await asyncio.wait_for(proc.communicate(), 30))[0].decode()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 0 and "[OK] 40 calls" in text, text
