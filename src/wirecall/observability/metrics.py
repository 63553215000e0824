"""Prometheus metrics for a :class:`~wirecall.Server` (extra ``metrics``: prometheus-client).

::

    metrics = Metrics(server)          # watches every call; nothing else to install
    text = metrics.exposition()         # what GET /metrics on the admin listener serves

The counts live in :class:`~wirecall.observability.stats.CallStats` (plain Python, updated on
the loop thread); this module turns them into Prometheus metric families when scraped, so a
call pays for one dict lookup, two clock reads and a few integer additions, not for
prometheus-client's locks. Connections and bytes are read at scrape time from the server's
listeners (bytes: the kernel's per-socket counters, Linux TCP only).

Metric names (labels):

- ``wirecall_server_calls_total`` (service, method, wire, status): finished unary calls
- ``wirecall_server_call_duration_seconds`` (service, method, wire): latency histogram
- ``wirecall_server_calls_in_flight`` (service, method, wire)
- ``wirecall_server_streams_total`` (service, method, wire, status), ``..._streams_in_flight``,
  ``wirecall_server_stream_duration_seconds``
- ``wirecall_server_connections_open`` (wire), ``wirecall_server_connections_accepted_total``
- ``wirecall_server_received_bytes_total`` / ``wirecall_server_sent_bytes_total`` (wire)
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .stats import BUCKETS, CallStats, split_method

if TYPE_CHECKING:
    from ..server import Server

__all__ = ["Metrics", "listener_counts", "require_prometheus"]


def require_prometheus() -> Any:
    """The ``prometheus_client`` module, or a RuntimeError naming the extra to install."""
    try:
        return importlib.import_module("prometheus_client")
    except ImportError:
        raise RuntimeError(
            "metrics need prometheus-client: pip install 'wirecall[metrics]'") from None


def listener_counts(server: Server) -> dict[str, dict[str, int]]:
    """Per wire (the listener's scheme): open and accepted connections, bytes received and
    sent. Listeners that do not keep a connection set (``any://``) are left out."""
    out: dict[str, dict[str, int]] = {}
    for lst in server.listeners:
        conns = getattr(lst, "connections", None)
        if conns is None:
            svc = getattr(lst, "service", None)
            conns = getattr(svc, "connections", None)
        if conns is None or not hasattr(conns, "byte_totals"):
            continue
        wire = lst.url.split(":", 1)[0]
        row = out.setdefault(wire, {"open": 0, "accepted": 0, "received": 0, "sent": 0})
        received, sent = conns.byte_totals()
        row["open"] += len(conns)
        row["accepted"] += conns.accepted
        row["received"] += received
        row["sent"] += sent
    return out


class Metrics:
    """Install call statistics on ``server`` and expose them in the Prometheus format.

    ``stats``: share an existing :class:`CallStats` (the dashboard and the access log use the
    same one); by default one is created and added as an observer. ``registry``: a
    ``prometheus_client.CollectorRegistry`` to register in (default: a new one, so several
    servers in one process do not collide; pass ``prometheus_client.REGISTRY`` to join the
    process-wide one).
    """

    def __init__(self, server: Server, *, stats: CallStats | None = None,
                 registry: Any = None) -> None:
        prom = require_prometheus()
        self._prom = prom
        self.server = server
        if stats is None:
            stats = CallStats()
            server.add_observer(stats)
        self.stats = stats
        self.registry = registry if registry is not None else prom.CollectorRegistry(
            auto_describe=False)
        self.registry.register(self)

    def exposition(self) -> bytes:
        """The text format a Prometheus scrape receives."""
        data: bytes = self._prom.generate_latest(self.registry)
        return data

    @property
    def content_type(self) -> str:
        ct: str = self._prom.CONTENT_TYPE_LATEST
        return ct

    # -- prometheus_client collector protocol -------------------------------------------

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        core = importlib.import_module("prometheus_client.core")
        yield from self._calls(core, "call", "calls")
        yield from self._calls(core, "stream", "streams")
        yield from self._connections(core)

    def _calls(self, core: Any, kind: str, noun: str) -> Iterator[Any]:
        labels = ["service", "method", "wire"]
        total = core.CounterMetricFamily(
            f"wirecall_server_{noun}", f"{noun.capitalize()} finished, by status",
            labels=[*labels, "status"])
        hist = core.HistogramMetricFamily(
            f"wirecall_server_{kind}_duration_seconds", f"{kind.capitalize()} latency",
            labels=labels)
        inflight = core.GaugeMetricFamily(
            f"wirecall_server_{noun}_in_flight", f"{noun.capitalize()} being served",
            labels=labels)
        for st in self.stats.methods():
            if st.kind != kind:
                continue
            svc, meth = split_method(st.method)
            lv = [svc, meth, st.wire]
            for status, n in sorted(st.all_statuses().items()):
                total.add_metric([*lv, status], n)
            cum, buckets = 0, []
            for bound, n in zip((*BUCKETS, float("inf")), st.buckets, strict=True):
                cum += n
                buckets.append((_le(bound), cum))
            hist.add_metric(lv, buckets, st.total_seconds)
            inflight.add_metric(lv, st.inflight)
        yield total
        yield hist
        yield inflight

    def _connections(self, core: Any) -> Iterator[Any]:
        open_ = core.GaugeMetricFamily(
            "wirecall_server_connections_open", "Connections open", labels=["wire"])
        accepted = core.CounterMetricFamily(
            "wirecall_server_connections_accepted", "Connections accepted", labels=["wire"])
        received = core.CounterMetricFamily(
            "wirecall_server_received_bytes", "Bytes received (TCP, kernel count)",
            labels=["wire"])
        sent = core.CounterMetricFamily(
            "wirecall_server_sent_bytes", "Bytes sent and acknowledged (TCP, kernel count)",
            labels=["wire"])
        for wire, row in sorted(listener_counts(self.server).items()):
            open_.add_metric([wire], row["open"])
            accepted.add_metric([wire], row["accepted"])
            received.add_metric([wire], row["received"])
            sent.add_metric([wire], row["sent"])
        yield open_
        yield accepted
        yield received
        yield sent


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)
