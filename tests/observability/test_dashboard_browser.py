"""The dashboard in a real browser: headless Chromium (DevTools protocol) loads the admin page
of a server under load on three wires; the test reads what the page shows (method names,
non-zero rates, errors, connections, slowest calls) and keeps a screenshot as an artefact."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

from support.cluster_nodes import start_nodes, static_target
from support.observability import Args, Browser, Shop
from wirecall import Client, RpcError, Server
from wirecall.cluster.client import ClusterClient
from wirecall.observability.admin import Admin
from wirecall.observability.cluster import ClusterView

READ_PAGE = """(() => {
  const rows = [...document.querySelectorAll('#methods tbody tr')].map(
      tr => [...tr.cells].map(td => td.textContent));
  return {status: document.getElementById('status').textContent,
          rate: document.getElementById('rate').textContent,
          errors: document.getElementById('error-rate').textContent,
          open: document.getElementById('open-connections').textContent,
          rows: rows,
          slowest: document.querySelectorAll('#slowest tbody tr').length,
          conns: [...document.querySelectorAll('#connections tbody tr')].map(
              tr => tr.cells[0].textContent),
          cluster: [...document.querySelectorAll('#cluster-endpoints tbody tr')].map(
              tr => [...tr.cells].map(td => td.textContent)),
          clusterShown: !document.getElementById('cluster-section').hidden,
          text: document.body.innerText};
})()"""


async def load(client: Client, stop: asyncio.Event) -> None:
    i = 0
    while not stop.is_set():
        i += 1
        await client.call("Shop.Add", Args(i, 1))
        if i % 10 == 0:
            with contextlib.suppress(RpcError):
                await client.call("Shop.Fail", Args(i, 0))
        if i % 25 == 0:
            await client.call("Shop.Slow", Args(20, 0))
        await asyncio.sleep(0.002)


async def onward(cluster: ClusterClient, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await cluster.call("Node.Work", 0.001)
        await asyncio.sleep(0.005)


async def test_dashboard_shows_live_calls() -> None:
    server = Server()
    server.register(Shop(), "Shop")
    # this process also calls a cluster of two nodes: the cluster panel shows them
    nodes_servers, _, node_urls = await start_nodes(2)
    cluster = ClusterClient(static_target(node_urls), outlier=None)
    await cluster.connect()
    admin = Admin(server, metrics=True, interval=0.25, cluster=ClusterView(cluster))
    urls = await server.start("tcp://127.0.0.1:0", "http://127.0.0.1:0", "grpc://127.0.0.1:0")
    page_url = await admin.start("http://127.0.0.1:0")
    stop = asyncio.Event()
    clients = [Client(u) for u in urls]
    loads = [asyncio.create_task(load(c, stop)) for c in clients]
    loads.append(asyncio.create_task(onward(cluster, stop)))
    browser = Browser()
    shown: dict[str, Any] = {}
    try:
        await browser.start()
        await browser.goto(page_url + "/")
        for _ in range(150):
            await asyncio.sleep(0.1)
            shown = await browser.evaluate(READ_PAGE) or {}
            methods = {(r[0], r[1]) for r in shown.get("rows", [])}
            if {("Shop.Add", w) for w in ("tcp", "http", "grpc")} <= methods \
                    and ("Shop.Fail", "tcp") in methods and shown.get("slowest") \
                    and len(shown.get("cluster", [])) == 2:
                break
        # the page updates in place: the numbers move between two reads
        first_rate = shown.get("rate")
        await asyncio.sleep(1.0)
        later = await browser.evaluate(READ_PAGE)
        out_dir = Path(os.environ.get("WIRECALL_ARTEFACTS") or tempfile.mkdtemp(
            prefix="wirecall-dashboard-"))
        shot = await browser.screenshot(out_dir / "dashboard.png")
        print(f"dashboard screenshot: {shot}")
    finally:
        stop.set()
        await asyncio.gather(*loads, return_exceptions=True)
        for c in clients:
            await c.close()
        await browser.close()
        await admin.close()
        await cluster.close()
        await server.close(drain_timeout=1)
        for s in nodes_servers:
            await s.close()
    assert shown.get("status") == "live", shown
    rows = {(r[0], r[1]): r for r in shown["rows"]}
    for wire in ("tcp", "http", "grpc"):
        add = rows[("Shop.Add", wire)]
        assert float(add[3]) > 0, add  # calls/s
        assert add[4] == "0.00 %"  # no errors for Add
    fail = rows[("Shop.Fail", "tcp")]
    assert fail[4] == "100.00 %", fail
    assert float(shown["rate"]) > 0
    assert shown["errors"] != "0.00 %"
    assert int(shown["open"]) == 3  # tcp + http keep-alive + grpc
    assert set(shown["conns"]) == {"tcp", "http", "grpc"}
    assert "Shop.Slow" in shown["text"]  # among the slowest recent calls
    assert later["rate"] != first_rate or later["rows"] != shown["rows"]
    assert shot.stat().st_size > 10_000
    assert shown["clusterShown"]
    assert sorted(row[1] for row in shown["cluster"]) == sorted(node_urls)
    assert {row[2] for row in shown["cluster"]} == {"ok"}  # state column
    assert all(int(row[7]) > 0 for row in shown["cluster"])  # calls went to both
