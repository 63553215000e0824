"""Observability's metrics, tracing and access log installed as one observer
(``observability/fused.py``): on the native fast lane one wrapper counts, times and logs the
calls tracing does not sample; what the server reports is what the three observers installed
one by one report (counts by status, the log's lines, the spans)."""

from __future__ import annotations

import io
import json
from typing import Any

import msgspec
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from support.observability import Args, Shop
from wirecall import Client, Internal, NotFound, Server
from wirecall.observability.accesslog import AccessLog
from wirecall.observability.install import Observability
from wirecall.observability.stats import CallStats
from wirecall.observability.tracing import ServerTracing

SAMPLED = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
UNSAMPLED = "00-" + "ef" * 16 + "-" + "12" * 8 + "-00"


async def _run(fused: bool, sample: float) -> tuple[Any, list[dict[str, Any]], list[Any], Any]:
    """Serve Shop with the three observers (as one, or one by one), make the same calls;
    (stats rows, log records, spans, the fast-lane entry of Shop.Add)."""
    server = Server()
    server.register(Shop(), "Shop")
    out = io.StringIO()
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    if fused:
        obs = Observability(server, admin="http://127.0.0.1:0", tracing=tp,
                            tracing_sample=sample, access_log="json", access_log_stream=out)
        stats, log = obs.stats, obs.access_log
        assert stats is not None and log is not None
    else:
        stats = CallStats()
        server.add_observer(stats)
        ServerTracing(server, tracer_provider=tp, sample=sample)
        log = AccessLog(server, fmt="json", stream=out)
    [url] = await server.start("tcp://127.0.0.1:0")
    try:
        async with Client(url) as c:
            for i in range(20):
                assert await c.call("Shop.Add", Args(i, 1), result_type=int) == i + 1
            with pytest.raises(NotFound):
                await c.call("Shop.Refuse", Args(4, 0))
            with pytest.raises(Internal):
                await c.call("Shop.Refuse", Args(-1, 0))
            for tp_header in (SAMPLED, UNSAMPLED):
                md = {"traceparent": tp_header}
                assert await c.call("Shop.Add", Args(1, 2), result_type=int, metadata=md) == 3
            assert await c.call("Shop.Slow", Args(1, 0), result_type=int) == 1  # general path
        entry = server.fast_entry("Shop.Add", msgspec.msgpack)
    finally:
        await server.close(drain_timeout=1)
    log.close()
    rows = sorted((r["method"], r["wire"], r["count"], r["errors"], r["statuses"])
                  for r in stats.snapshot())
    timed = sorted((st.method, st.wire, st.timed) for st in stats.methods())
    records = [json.loads(x) for x in out.getvalue().splitlines()]
    spans = exporter.get_finished_spans()
    tp.shutdown()
    return (rows, timed), records, list(spans), entry


@pytest.mark.parametrize("sample", [0.0, 1.0])
async def test_fused_reports_what_the_three_observers_report(sample: float) -> None:
    counts, records, spans, entry = await _run(True, sample)
    counts1, records1, spans1, _ = await _run(False, sample)
    # on the fast lane: one wrapper (sample 0) or the three (every call traced)
    assert entry is not None
    assert entry[0].__name__ == ("fused" if sample < 1.0 else "counted")
    assert counts == counts1
    (rows, _) = counts
    assert ("Shop.Add", "tcp", 22, 0, {"OK": 22}) in rows
    assert ("Shop.Refuse", "tcp", 2, 2, {"NOT_FOUND": 1, "INTERNAL": 1}) in rows

    def lines(recs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(r["method"], r["wire"], r["kind"], r["status"], r["request_bytes"],
                 r["response_bytes"]) for r in recs]

    assert lines(records) == lines(records1)
    assert len(records) == 25
    assert all(r["duration_ms"] >= 0 and r["ts"].endswith("Z") for r in records)

    def shape(ss: list[Any]) -> list[tuple[Any, ...]]:
        return [(s.name, s.kind, dict(s.attributes or {}) | {"net.peer.name": "-"},
                 s.parent.trace_id if s.parent else None, s.status.status_code)
                for s in ss]

    assert shape(spans) == shape(spans1)
    if sample == 0.0:  # only the caller's sampled traceparent made a span
        [span] = spans
        assert span.parent is not None and span.parent.trace_id == int("ab" * 16, 16)
    else:
        assert len(spans) == 24  # every call but the caller's unsampled one


async def _five_adds_traced_at_half(**options: Any) -> tuple[InMemorySpanExporter,
                                                               TracerProvider]:
    """Five ``Shop.Add`` calls on tcp:// through ``Observability`` with tracing sampled at
    0.5 (and ``options``); the span exporter and provider, the server closed."""
    server = Server()
    server.register(Shop(), "Shop")
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    Observability(server, tracing=tp, tracing_sample=0.5, **options)
    [url] = await server.start("tcp://127.0.0.1:0")
    try:
        async with Client(url) as c:
            for i in range(5):
                assert await c.call("Shop.Add", Args(i, 1), result_type=int) == i + 1
    finally:
        await server.close(drain_timeout=1)
    return exporter, tp


async def test_fused_head_sampling_draws_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A call the fused wrapper samples is traced: the tracing wrapper behind it does not
    draw again (it would keep sample**2 of the calls)."""
    from wirecall.observability import fused, tracing

    monkeypatch.setattr(fused, "_random", lambda: 0.0)  # the fused draw: sampled
    monkeypatch.setattr(tracing, "_random", lambda: 0.99)  # a second draw would say no
    exporter, tp = await _five_adds_traced_at_half(
        access_log="json", access_log_stream=io.StringIO())
    assert [s.name for s in exporter.get_finished_spans()] == ["Shop.Add"] * 5
    tp.shutdown()


@pytest.mark.parametrize("metrics", [False, True])
async def test_head_sampling_not_sampled(metrics: bool, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    """Tracing at 0.5 whose draws all say no makes no span, alone or with the others."""
    from wirecall.observability import fused, tracing

    monkeypatch.setattr(fused, "_random", lambda: 0.99)
    monkeypatch.setattr(tracing, "_random", lambda: 0.99)
    exporter, tp = await _five_adds_traced_at_half(
        admin="http://127.0.0.1:0" if metrics else None)
    assert exporter.get_finished_spans() == ()
    tp.shutdown()
