"""Tracing with OpenTelemetry's SDK and its in-memory exporter: a span per call on client and
server, the W3C traceparent carried in metadata on every wire that has metadata, onward calls
joined into one trace; the Go wires (no metadata) start a new trace at the server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from support.observability import METADATA_WIRES, Args, Shop, listen_urls
from wirecall import Client, Context, RpcError, Server, method
from wirecall.observability.tracing import ClientTracing, ServerTracing


@pytest.fixture
def provider() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    yield tp, exporter
    tp.shutdown()


@pytest.fixture
async def served(tmp_path: Path, provider: tuple[TracerProvider, InMemorySpanExporter]
                 ) -> AsyncIterator[tuple[Server, Shop, dict[str, str]]]:
    server = Server()
    shop = Shop()
    server.register(shop, "Shop")
    ServerTracing(server, tracer_provider=provider[0])
    wires = ("tcp", "unix", "http", "ws", "grpc", "gob", "jsonrpc")
    urls = await server.start(*listen_urls(tmp_path, wires))
    yield server, shop, dict(zip(wires, urls, strict=True))
    await server.close(drain_timeout=1)


def by_name(spans: Any, name: str, kind: SpanKind) -> list[Any]:
    return [s for s in spans if s.name == name and s.kind == kind]


@pytest.mark.parametrize("wire", METADATA_WIRES)
async def test_onward_calls_join_one_trace(
        wire: str, served: tuple[Server, Shop, dict[str, str]],
        provider: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    _, shop, urls = served
    tp, exporter = provider
    url = urls[wire]
    async with Client(url, interceptors=[ClientTracing(tracer_provider=tp)]) as onward, \
            Client(url, interceptors=[ClientTracing(tracer_provider=tp)]) as c:
        shop.onward = onward
        assert await c.call("Shop.Relay", Args(2, 3), result_type=int) == 5
    spans = exporter.get_finished_spans()
    [c_relay] = by_name(spans, "Shop.Relay", SpanKind.CLIENT)
    [s_relay] = by_name(spans, "Shop.Relay", SpanKind.SERVER)
    [c_add] = by_name(spans, "Shop.Add", SpanKind.CLIENT)
    [s_add] = by_name(spans, "Shop.Add", SpanKind.SERVER)
    trace_id = c_relay.context.trace_id
    assert {s.context.trace_id for s in (s_relay, c_add, s_add)} == {trace_id}
    assert c_relay.parent is None
    assert s_relay.parent.span_id == c_relay.context.span_id
    assert c_add.parent.span_id == s_relay.context.span_id
    assert s_add.parent.span_id == c_add.context.span_id
    assert s_add.attributes["rpc.wirecall.wire"] == wire
    assert s_add.attributes["rpc.service"] == "Shop"
    assert s_add.attributes["rpc.method"] == "Add"
    assert s_add.attributes["rpc.wirecall.status"] == "OK"


@pytest.mark.parametrize("wire", ["tcp", "grpc"])
async def test_onward_call_without_client_tracing_still_joins(
        wire: str, served: tuple[Server, Shop, dict[str, str]],
        provider: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    """The server span's traceparent is in the handler's metadata, which onward calls
    inherit: the next server's span is its child even if the onward client does not trace."""
    _, shop, urls = served
    tp, exporter = provider
    async with Client(urls[wire]) as onward, \
            Client(urls[wire], interceptors=[ClientTracing(tracer_provider=tp)]) as c:
        shop.onward = onward
        assert await c.call("Shop.Relay", Args(1, 1), result_type=int) == 2
    spans = exporter.get_finished_spans()
    [s_relay] = by_name(spans, "Shop.Relay", SpanKind.SERVER)
    [s_add] = by_name(spans, "Shop.Add", SpanKind.SERVER)
    assert not by_name(spans, "Shop.Add", SpanKind.CLIENT)
    assert s_add.context.trace_id == s_relay.context.trace_id
    assert s_add.parent.span_id == s_relay.context.span_id


@pytest.mark.parametrize("wire", ["gob", "jsonrpc"])
async def test_go_wires_start_a_new_trace(
        wire: str, served: tuple[Server, Shop, dict[str, str]],
        provider: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    _, _, urls = served
    tp, exporter = provider
    async with Client(urls[wire], interceptors=[ClientTracing(tracer_provider=tp)]) as c:
        assert await c.call("Shop.Add", Args(1, 2), result_type=int) == 3
    spans = exporter.get_finished_spans()
    [client] = by_name(spans, "Shop.Add", SpanKind.CLIENT)
    [server] = by_name(spans, "Shop.Add", SpanKind.SERVER)
    assert server.parent is None  # no metadata on this wire: nothing carried the parent
    assert server.context.trace_id != client.context.trace_id
    assert server.attributes["rpc.wirecall.wire"] == wire


@pytest.mark.parametrize("wire", ["tcp", "http", "ws", "grpc"])
async def test_errors_mark_both_spans(
        wire: str, served: tuple[Server, Shop, dict[str, str]],
        provider: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    _, _, urls = served
    tp, exporter = provider
    async with Client(urls[wire], interceptors=[ClientTracing(tracer_provider=tp)]) as c:
        with pytest.raises(RpcError, match="no item 4"):
            await c.call("Shop.Fail", Args(4, 0), result_type=int)
    spans = exporter.get_finished_spans()
    [client] = by_name(spans, "Shop.Fail", SpanKind.CLIENT)
    [server] = by_name(spans, "Shop.Fail", SpanKind.SERVER)
    for span in (client, server):
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes["rpc.wirecall.status"] == "NOT_FOUND"
    assert server.parent.span_id == client.context.span_id


@pytest.mark.parametrize("wire", ["tcp", "ws", "grpc"])
async def test_a_stream_is_one_server_span(
        wire: str, served: tuple[Server, Shop, dict[str, str]],
        provider: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    _, _, urls = served
    _, exporter = provider
    async with Client(urls[wire]) as c:
        got = [x async for x in c.stream("Shop.Count", Args(3, 0), result_type=int)]
    assert got == [0, 1, 2]
    [span] = by_name(exporter.get_finished_spans(), "Shop.Count", SpanKind.SERVER)
    assert span.attributes["rpc.wirecall.wire"] == wire
    assert span.attributes["rpc.wirecall.status"] == "OK"


async def test_fast_lane_calls_get_a_root_span(
        served: tuple[Server, Shop, dict[str, str]],
        provider: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    """A plain call (no metadata) takes the native fast lane, traced too: a root span."""
    server, _, urls = served
    _, exporter = provider
    import msgspec

    async with Client(urls["tcp"]) as c:
        assert await c.call("Shop.Add", Args(1, 2), result_type=int) == 3
        with pytest.raises(RpcError, match="refused 5"):
            await c.call("Shop.Refuse", Args(5, 0))
    assert server.fast_lane(msgspec.msgpack).get("Shop.Add") is not None
    [span] = by_name(exporter.get_finished_spans(), "Shop.Add", SpanKind.SERVER)
    assert span.parent is None and span.attributes["rpc.wirecall.wire"] == "tcp"
    [bad] = by_name(exporter.get_finished_spans(), "Shop.Refuse", SpanKind.SERVER)
    assert bad.status.status_code is StatusCode.ERROR
    assert bad.attributes["rpc.wirecall.status"] == "NOT_FOUND"


async def test_head_sampling_and_following_the_caller(
        served: tuple[Server, Shop, dict[str, str]]) -> None:
    """sample=0: no call starts a trace here, but a caller's sampled traceparent is
    followed; a caller's unsampled one is followed too (no span)."""
    server, _, urls = served
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    for obs in server.observers:
        server.remove_observer(obs)
    ServerTracing(server, tracer_provider=tp, sample=0.0)
    sampled = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    unsampled = "00-" + "ef" * 16 + "-" + "12" * 8 + "-00"
    for wire in ("tcp", "grpc", "http"):
        async with Client(urls[wire]) as c:
            for _ in range(20):
                await c.call("Shop.Add", Args(1, 2))
                await c.call("Shop.Slow", Args(0, 0))
            await c.call("Shop.Add", Args(1, 2), metadata={"traceparent": sampled})
            await c.call("Shop.Slow", Args(0, 0), metadata={"traceparent": sampled})
            await c.call("Shop.Add", Args(1, 2), metadata={"traceparent": unsampled})
    spans = exporter.get_finished_spans()
    assert len(spans) == 6  # two per wire: the calls whose caller sampled them
    assert {format(s.context.trace_id, "032x") for s in spans} == {"ab" * 16}
    assert {s.parent.span_id for s in spans} == {int("cd" * 8, 16)}
    tp.shutdown()


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_sample_out_of_range(bad: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        ServerTracing(sample=bad)
    with pytest.raises(ValueError, match="between 0 and 1"):
        ClientTracing(sample=bad)


async def test_client_sampling(provider: tuple[TracerProvider, InMemorySpanExporter],
                               served: tuple[Server, Shop, dict[str, str]]) -> None:
    _, _, urls = served
    tp, exporter = provider
    async with Client(urls["tcp"], interceptors=[ClientTracing(tracer_provider=tp,
                                                               sample=0.0)]) as c:
        for _ in range(10):
            await c.call("Shop.Add", Args(1, 2))
    assert not by_name(exporter.get_finished_spans(), "Shop.Add", SpanKind.CLIENT)
    # the server still traces these (sample=1 there): new traces, no parent
    assert len(by_name(exporter.get_finished_spans(), "Shop.Add", SpanKind.SERVER)) == 10


async def test_plain_w3c_header_over_http(
        served: tuple[Server, Shop, dict[str, str]],
        provider: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    """An HTTP client instrumented by OpenTelemetry sends a bare ``traceparent`` header
    (not wirecall's metadata header): the server span joins its trace."""
    import aiohttp

    _, _, urls = served
    _, exporter = provider
    parent = "00-" + "5a" * 16 + "-" + "6b" * 8 + "-01"
    body = {"jsonrpc": "2.0", "id": 1, "method": "Shop.Add", "params": [{"A": 2, "B": 2}]}
    async with aiohttp.ClientSession() as s, s.post(
            urls["http"] + "/rpc", json=body, headers={"traceparent": parent}) as r:
        assert (await r.json())["result"] == 4
    [span] = by_name(exporter.get_finished_spans(), "Shop.Add", SpanKind.SERVER)
    assert format(span.context.trace_id, "032x") == "5a" * 16
    assert span.parent.span_id == int("6b" * 8, 16)


async def test_handler_metadata_carries_the_server_span(
        provider: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    """On the general path (an async handler) the call's metadata reads as the caller's plus
    the server span's traceparent (built when first read), whether read by key or merged."""
    class Meta:
        @method
        async def Show(self, ctx: Context) -> list[str]:
            md = ctx.metadata
            return [md.get("x-caller", ""), md["traceparent"], ",".join(sorted(md)),
                    str("traceparent" in md), {**md}["traceparent"]]

    tp, exporter = provider
    server = Server()
    server.register(Meta())
    ServerTracing(server, tracer_provider=tp)
    [url] = await server.start("grpc://127.0.0.1:0")
    try:
        async with Client(url) as c:
            got = await c.call("Meta.Show", metadata={"x-caller": "a"}, result_type=list[str])
    finally:
        await server.close(drain_timeout=1)
    [span] = by_name(exporter.get_finished_spans(), "Meta.Show", SpanKind.SERVER)
    sc = span.context
    want = f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags):02x}"
    assert got == ["a", want, "traceparent,x-caller", "True", want]
