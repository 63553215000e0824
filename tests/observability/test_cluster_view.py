"""The cluster view: a real ClusterClient over two loopback servers; its endpoints, breaker
states and events on the admin snapshot and as wirecall_cluster_* Prometheus families."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from support.cluster_nodes import start_nodes, static_target
from wirecall import RpcError, Server
from wirecall.cluster.client import ClusterClient
from wirecall.observability.admin import Admin
from wirecall.observability.cluster import ClusterView


def families(text: str) -> dict[str, list[Any]]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


async def test_endpoint_and_breaker_states_shown() -> None:
    servers, nodes, urls = await start_nodes(2)
    client = ClusterClient(static_target(urls), outlier=None, throttle=False,
                           balancer="round_robin",
                           breaker={"consecutive_failures": 3, "open_for": 30.0})
    own = Server()
    view = ClusterView(client)
    admin = Admin(own, metrics=True, cluster=view)
    view.register(admin.metrics.registry)  # type: ignore[union-attr]
    await admin.start("http://127.0.0.1:0")
    try:
        await client.connect()
        for _ in range(10):
            await client.call("Node.Work", 0.0)
        snap = admin.snapshot()
        [c] = snap["cluster"]
        assert c["target"] == static_target(urls)
        assert sorted(e["url"] for e in c["endpoints"]) == sorted(urls)
        assert {e["state"] for e in c["endpoints"]} == {"ok"}
        assert sum(e["calls"] for e in c["endpoints"]) == 10
        assert c["counters"]["endpoint_added"] == 2
        # one node fails every call: its breaker opens after 3 failures
        nodes[1].failing = "INTERNAL"
        for _ in range(12):
            with contextlib.suppress(RpcError):
                await client.call("Node.Work", 0.0)
        snap = json.loads(json.dumps(admin.snapshot()))
        states = {e["url"]: e["state"] for e in snap["cluster"][0]["endpoints"]}
        assert states == {urls[0]: "ok", urls[1]: "breaker-open"}
        assert any(ev["kind"] == "breaker" and ev["detail"] == "closed->open"
                   for ev in snap["cluster"][0]["events"])
        fam = families(admin.metrics.exposition().decode())  # type: ignore[union-attr]
        on = {(s.labels["endpoint"], s.labels["state"]) for s in
              fam["wirecall_cluster_endpoint_state"] if s.value == 1}
        assert on == {(urls[0], "ok"), (urls[1], "breaker-open")}
        failures = {s.labels["endpoint"]: s.value
                    for s in fam["wirecall_cluster_endpoint_failures"]}
        assert failures[urls[1]] >= 3 and failures[urls[0]] == 0
        kinds = {s.labels["kind"]: s.value for s in fam["wirecall_cluster_events"]}
        assert kinds["breaker"] == 1
    finally:
        await admin.close()
        await client.close()
        for s in servers:
            await s.close()


async def test_a_failing_view_is_reported_not_raised() -> None:
    def broken() -> Any:
        raise RuntimeError("registry gone")

    admin = Admin(Server(), cluster=broken)
    assert admin.snapshot()["cluster"] == {"error": "RuntimeError: registry gone"}
    await asyncio.sleep(0)


def test_view_of_nothing() -> None:
    assert ClusterView()() == []
