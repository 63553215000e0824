"""Metrics: every wire labelled right, statuses, histograms, in-flight gauges, streams,
connections and bytes, in the Prometheus text format as prometheus-client parses it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.observability import WIRES, Args, Shop, listen_urls
from wirecall import Client, Context, InvalidArgument, NotFound, RpcError, Server
from wirecall.observability.metrics import Metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(metrics.exposition().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(smp: dict[Any, float], name: str, **labels: str) -> float:
    return smp.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Server, Metrics, list[str]]]:
    server = Server()
    server.register(Shop(), "Shop")
    metrics = Metrics(server)
    urls = await server.start(*listen_urls(tmp_path))
    yield server, metrics, urls
    await server.close(drain_timeout=1)


async def test_calls_counted_per_wire_and_status(
        served: tuple[Server, Metrics, list[str]]) -> None:
    _, metrics, urls = served
    for url in urls:
        async with Client(url) as c:
            for i in range(3):
                assert await c.call("Shop.Add", Args(i, 1), result_type=int) == i + 1
            # NOT_FOUND (UNKNOWN on the Go wires' clients: they carry only the text)
            with pytest.raises(RpcError, match="no item 7"):
                await c.call("Shop.Fail", Args(7, 0), result_type=int)
    smp = samples(metrics)
    for wire in WIRES:
        lab = {"service": "Shop", "method": "Add", "wire": wire}
        assert value(smp, "wirecall_server_calls_total", status="OK", **lab) == 3, wire
        # the fast lane (tcp, unix) times one call in TIME_EVERY; the others, every call
        timed = 0 if wire in ("tcp", "unix") else 3
        assert value(smp, "wirecall_server_call_duration_seconds_count", **lab) == timed, wire
        assert value(smp, "wirecall_server_call_duration_seconds_bucket", le="+Inf",
                     **lab) == timed
        assert value(smp, "wirecall_server_calls_in_flight", **lab) == 0
        fail = {"service": "Shop", "method": "Fail", "wire": wire}
        # the server counts the status it sent (the Go wires carry only the text)
        assert value(smp, "wirecall_server_calls_total", status="NOT_FOUND", **fail) == 1
        assert value(smp, "wirecall_server_calls_total", status="OK", **fail) == 0


async def test_in_flight_gauge_and_histogram_buckets(
        served: tuple[Server, Metrics, list[str]]) -> None:
    _, metrics, urls = served
    async with Client(urls[0]) as c:
        calls = [asyncio.ensure_future(c.call("Shop.Slow", Args(300, 0))) for _ in range(5)]
        for _ in range(100):
            smp = samples(metrics)
            lab = {"service": "Shop", "method": "Slow", "wire": "tcp"}
            if value(smp, "wirecall_server_calls_in_flight", **lab) == 5:
                break
            await asyncio.sleep(0.01)
        assert value(smp, "wirecall_server_calls_in_flight", **lab) == 5
        await asyncio.gather(*calls)
    smp = samples(metrics)
    assert value(smp, "wirecall_server_calls_in_flight", **lab) == 0
    # 300 ms calls: none in the 0.25 s bucket, all in the 0.5 s one
    assert value(smp, "wirecall_server_call_duration_seconds_bucket", le="0.25", **lab) == 0
    assert value(smp, "wirecall_server_call_duration_seconds_bucket", le="0.5", **lab) == 5
    total = value(smp, "wirecall_server_call_duration_seconds_sum", **lab)
    assert 1.5 <= total < 2.5


async def test_streams_counted(served: tuple[Server, Metrics, list[str]]) -> None:
    _, metrics, urls = served
    for url in urls[:5]:  # the wires with streams: tcp unix http(no) ws grpc
        if url.startswith("http"):
            continue
        async with Client(url) as c:
            got = [x async for x in c.stream("Shop.Count", Args(4, 0), result_type=int)]
            assert got == [0, 1, 2, 3]
    smp = samples(metrics)
    for wire in ("tcp", "unix", "ws", "grpc"):
        lab = {"service": "Shop", "method": "Count", "wire": wire}
        assert value(smp, "wirecall_server_streams_total", status="OK", **lab) == 1, wire
        assert value(smp, "wirecall_server_streams_in_flight", **lab) == 0
        assert value(smp, "wirecall_server_calls_total", status="OK", **lab) == 0


async def test_connections_and_bytes(served: tuple[Server, Metrics, list[str]]) -> None:
    _, metrics, urls = served
    tcp = urls[0]
    big = "x" * 200_000
    async with Client(tcp, pool_size=2) as c:
        await c.connect()
        smp = samples(metrics)
        assert value(smp, "wirecall_server_connections_open", wire="tcp") == 2
        await c.call("Shop.Add", Args(1, 2))
        # INVALID_ARGUMENT: what matters is the 200 kB that crossed the wire
        with pytest.raises(InvalidArgument):
            await c.call("Shop.Add", big)
    for _ in range(100):
        smp = samples(metrics)
        if value(smp, "wirecall_server_connections_open", wire="tcp") == 0:
            break
        await asyncio.sleep(0.01)
    assert value(smp, "wirecall_server_connections_open", wire="tcp") == 0
    assert value(smp, "wirecall_server_connections_accepted_total", wire="tcp") == 2
    received = value(smp, "wirecall_server_received_bytes_total", wire="tcp")
    assert received >= 200_000  # the kernel's count of what arrived on tcp://, closed too
    assert value(smp, "wirecall_server_sent_bytes_total", wire="tcp") > 0


class Quiet:
    """An observer without ``fast_handler``."""

    def call_started(self, method: str, ctx: Context, on_done: Any) -> Any:
        return on_done

    def stream_started(self, method: str, ctx: Context, on_done: Any) -> Any:
        return on_done


async def test_fast_lane_kept_by_metrics_and_by_a_plain_observer() -> None:
    server = Server()
    server.register(Shop(), "Shop")
    lane = server.fast_lane(msgspec.msgpack)
    assert lane["Shop.Add"] is not None
    metrics = Metrics(server)
    entry = lane["Shop.Add"]
    assert entry is not None and entry[0] is not server.find("Shop.Add").func  # wrapped
    quiet = Quiet()
    server.add_observer(quiet)
    wrapped = lane["Shop.Add"]
    # an observer without fast_handler is run around the lane's handler by the server
    assert wrapped is not None and wrapped[0] is not entry[0]
    seen: list[Any] = []
    server.start_call("Shop.Add", [{"A": 2, "B": 3}], Context(transport="tcp"),
                      lambda r, e: seen.append((r, e)))
    assert seen == [(5, None)]  # finished before start_call returned: still inline
    server.remove_observer(quiet)
    assert lane["Shop.Add"] is not None
    smp = samples(metrics)
    assert value(smp, "wirecall_server_calls_total", service="Shop", method="Add",
                 wire="tcp", status="OK") == 1


async def test_fast_lane_calls_counted_on_a_real_connection(tmp_path: Path) -> None:
    server = Server()
    server.register(Shop(), "Shop")
    metrics = Metrics(server)
    tcp, unix = await server.start("tcp://127.0.0.1:0", f"unix://{tmp_path}/s.sock")
    taken: list[str] = []
    lane = server.fast_lane(msgspec.msgpack)
    try:
        for url in (tcp, unix):
            async with Client(url) as c:
                assert await c.call("Shop.Add", Args(1, 2), result_type=int) == 3
                taken.append("fast" if lane.get("Shop.Add") is not None else "general")
                with pytest.raises(NotFound, match="refused 4"):
                    await c.call("Shop.Refuse", Args(4, 0))
                with pytest.raises(RpcError) as err:
                    await c.call("Shop.Refuse", Args(-1, 0))
                assert err.value.status.name == "INTERNAL"
        async with Client(tcp) as c:  # 16 more: two of them timed (one in TIME_EVERY=8)
            for i in range(16):
                assert await c.call("Shop.Add", Args(i, 0), result_type=int) == i
    finally:
        await server.close(drain_timeout=1)
    assert taken == ["fast", "fast"]  # the lane served these calls
    smp = samples(metrics)
    for wire in ("tcp", "unix"):
        lab = {"service": "Shop", "wire": wire}
        assert value(smp, "wirecall_server_calls_total", method="Add", status="OK", **lab) == (
            17 if wire == "tcp" else 1)
        assert value(smp, "wirecall_server_calls_total", method="Refuse", status="NOT_FOUND",
                     **lab) == 1
        assert value(smp, "wirecall_server_calls_total", method="Refuse", status="INTERNAL",
                     **lab) == 1
    # the per-closure tick counts calls on the lane: 17 Add calls on tcp and 1 on unix
    # share one wrapper, so 18 calls -> two timed (the 8th and the 16th)
    timed = sum(value(smp, "wirecall_server_call_duration_seconds_count", service="Shop",
                      method="Add", wire=w) for w in ("tcp", "unix"))
    assert timed == 2
