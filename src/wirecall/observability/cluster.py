"""The cluster view: endpoint and breaker states of cluster clients, for the dashboard and
Prometheus.

A process that calls other services through ``wirecall.connect("static://...")`` (or
``dns://``, ``etcd://``, ``zk://``) holds :class:`~wirecall.cluster.client.ClusterClient`
objects; each knows its endpoints (``endpoints()``: state, breaker, pending, latency EWMA,
calls, failures, ejections) and its decisions (``events``: counters and a bounded log).
:class:`ClusterView` reads them when asked, nothing on the call path::

    view = ClusterView(orders_client, stock_client)
    Admin(server, metrics=metrics, cluster=view)   # the dashboard's cluster panel
    view.register(metrics.registry)                # wirecall_cluster_* families

Only the clients' public reading API is used (``target``, ``endpoints()``,
``events.counters``, ``events.recent()``): any object offering it can be watched.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

__all__ = ["ClusterView"]

class ClusterView:
    """Watch cluster clients; call it for the dashboard's JSON (``Admin(cluster=view)``)."""

    def __init__(self, *clients: Any, recent: int = 20) -> None:
        self.clients: list[Any] = list(clients)
        self.recent = recent

    def add(self, client: Any) -> None:
        self.clients.append(client)

    def __call__(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        out = []
        for c in self.clients:
            events = getattr(c, "events", None)
            recent = events.recent(self.recent) if events is not None else []
            out.append({
                "target": str(getattr(c, "target", repr(c))),
                "endpoints": list(c.endpoints()),
                "counters": dict(events.counters) if events is not None else {},
                "events": [{"ago_s": round(now - e.at, 3), "kind": e.kind,
                            "endpoint": e.endpoint, "detail": e.detail} for e in recent],
            })
        return out

    # -- Prometheus (a collector: view.register(registry)) --------------------------------

    def register(self, registry: Any) -> None:
        """Export ``wirecall_cluster_*`` families in ``registry`` (a prometheus-client
        ``CollectorRegistry``, e.g. ``Metrics.registry``)."""
        registry.register(self)

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from .metrics import require_prometheus

        require_prometheus()
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        state = GaugeMetricFamily(
            "wirecall_cluster_endpoint_state",
            "1 for the state each endpoint is in (ok, ejected, breaker-open, ...)",
            labels=["target", "endpoint", "state"])
        pending = GaugeMetricFamily(
            "wirecall_cluster_endpoint_pending", "Calls in flight to the endpoint",
            labels=["target", "endpoint"])
        latency = GaugeMetricFamily(
            "wirecall_cluster_endpoint_latency_ewma_seconds",
            "Peak-EWMA latency the balancer sees", labels=["target", "endpoint"])
        calls = CounterMetricFamily(
            "wirecall_cluster_endpoint_calls", "Calls sent to the endpoint",
            labels=["target", "endpoint"])
        failures = CounterMetricFamily(
            "wirecall_cluster_endpoint_failures", "Calls to the endpoint that failed",
            labels=["target", "endpoint"])
        events = CounterMetricFamily(
            "wirecall_cluster_events", "Cluster decisions by kind (retry, hedge, breaker...)",
            labels=["target", "kind"])
        for c in self.clients:
            target = str(getattr(c, "target", repr(c)))
            for ep in c.endpoints():
                url = str(ep.get("url", ep.get("id", "?")))
                state.add_metric([target, url, str(ep.get("state", "?"))], 1)
                pending.add_metric([target, url], float(ep.get("pending", 0)))
                latency.add_metric([target, url], float(ep.get("ewma_ms", 0.0)) / 1e3)
                calls.add_metric([target, url], float(ep.get("calls", 0)))
                failures.add_metric([target, url], float(ep.get("failures", 0)))
            ev = getattr(c, "events", None)
            for kind, n in sorted((ev.counters if ev is not None else {}).items()):
                events.add_metric([target, kind], float(n))
        yield from (state, pending, latency, calls, failures, events)
