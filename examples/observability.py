"""Observability end to end: one server on tcp:// and http:// with metrics, tracing, an access
log and the admin listener (dashboard, /api/snapshot, /metrics); two services calling each
other, so one request makes one trace across both hops.

    python examples/observability.py          # runs, prints what each part saw, exits
    python examples/observability.py --serve  # keeps serving: open the printed admin URL

Needs ``pip install 'wirecall[metrics,tracing]'``.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import urllib.request

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from wirecall import Client, Context, NotFound, Server, method
from wirecall.observability.install import Observability
from wirecall.observability.tracing import ClientTracing


class Inventory:
    @method(inline=True)
    def Stock(self, item: str) -> int:
        if item == "unicorn":
            raise NotFound(message=f"no item {item!r}")
        return len(item)


class Shop:
    def __init__(self, inventory: Client) -> None:
        self.inventory = inventory

    async def Order(self, item: str, ctx: Context) -> str:
        # an onward call: it joins the caller's trace (the server span is current here)
        left = await self.inventory.call("Inventory.Stock", item)
        return f"ordered {item} ({left} left)"


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        body: bytes = r.read()
        return body


async def main(serve: bool) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    access = io.StringIO()

    server = Server()
    obs = Observability(server, admin="http://127.0.0.1:0", metrics=True, tracing=provider,
                        access_log="json", access_log_stream=access)
    tcp, http = await server.start("tcp://127.0.0.1:0", "http://127.0.0.1:0")
    admin = await obs.start()
    tracing = ClientTracing(tracer_provider=provider)
    inventory = Client(tcp, interceptors=[tracing])
    server.register(Inventory()).register(Shop(inventory))
    print(f"serving {tcp} {http}; admin (dashboard) on {admin}")

    async with Client(http, interceptors=[tracing]) as c:
        print(await c.call("Shop.Order", "apple"))
        try:
            await c.call("Shop.Order", "unicorn")
        except NotFound as exc:
            print(f"as expected: {exc}")

    # one trace: client Shop.Order -> server Shop.Order -> client/server Inventory.Stock
    spans = [s for s in exporter.get_finished_spans()
             if s.context.trace_id == exporter.get_finished_spans()[0].context.trace_id]
    print("trace:", " -> ".join(f"{s.name}({s.kind.name.lower()})" for s in
                                sorted(spans, key=lambda s: s.start_time)))

    assert obs.access_log is not None
    obs.access_log.flush()  # lines are written every 50 ms; now, for this printout
    for line in access.getvalue().splitlines():
        rec = json.loads(line)
        print(f"access: {rec['wire']:5} {rec['method']:16} {rec['status']}")

    # (urllib blocks: in a thread, so this loop keeps serving the admin listener)
    snap = json.loads(await asyncio.to_thread(get, admin + "/api/snapshot"))
    for row in snap["methods"]:
        print(f"dashboard: {row['method']:16} {row['wire']:5} {row['count']} calls, "
              f"errors {row['error_rate']:.0%}")
    metrics = (await asyncio.to_thread(get, admin + "/metrics")).decode()
    wanted = 'wirecall_server_calls_total{method="Order",service="Shop",status="OK",wire="http"}'
    print("metrics:", next(x for x in metrics.splitlines() if x.startswith(wanted)))

    if serve:
        print(f"open {admin} (Ctrl-C to stop)")
        await server.serve_forever(handle_signals=True)
    await inventory.close()
    await obs.close()
    await server.close()
    print("done")


if __name__ == "__main__":
    asyncio.run(main("--serve" in sys.argv))
