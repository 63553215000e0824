"""JSON-RPC 2.0 over HTTP and WebSocket with wirecall (the tutorial's section 2.2, in Python).

One server, one port (``any://``) for every protocol; then:

1. the tutorial's Python ``requests`` client against ``POST /jsonrpc`` (answered as Go does);
2. wirecall's client over HTTP keep-alive, including a batch;
3. a WebSocket client that receives the server's notifications and answers its calls;
4. ``rpc.discover`` (OpenRPC) and the health probes.

    python examples/http_jsonrpc.py
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import requests

import wirecall
from wirecall.observability.openrpc import register_discover
from wirecall.transport import http
from wirecall.tutorial.calculator import Args, Calculator


class Clock:
    """Server code that talks back over the WebSocket it was called on."""

    async def Countdown(self, n: int) -> str:
        ws = http.current_websocket()
        if ws is None:
            return "countdown needs a WebSocket"
        for i in range(n, 0, -1):
            await ws.notify("countdown.tick", {"left": i})
        name = await ws.call("client.name", [], timeout=5)  # the server calls the client
        return f"liftoff, {name}!"


def tutorial_client(url: str) -> Any:
    headers = {"Content-Type": "application/json"}
    payload = {"method": "Calculator.Add", "params": [{"A": 10, "B": 5}], "id": 1,
               "jsonrpc": "2.0"}
    response = requests.post(url, headers=headers, data=json.dumps(payload))
    print("服务器响应:", response.json())
    return response.json()


async def main() -> None:
    server = wirecall.Server()
    server.register(Calculator())
    server.register(Clock())
    register_discover(server)  # rpc.discover: the OpenRPC document (idempotent)
    [url] = await server.start("any://127.0.0.1:0")  # every protocol on one port
    port = url.rsplit(":", 1)[1]
    base = f"http://127.0.0.1:{port}"

    # 1. the tutorial's requests client, verbatim apart from the port
    await asyncio.to_thread(tutorial_client, f"{base}/jsonrpc")

    # 2. wirecall's client over pooled HTTP keep-alive connections
    async with await wirecall.connect(f"{base}/rpc") as client:  # JSON-RPC 2.0
        print("Add:", await client.call("Calculator.Add", Args(A=10, B=5)))
        try:
            await client.call("Calculator.Divide", Args(A=1, B=0))
        except wirecall.InvalidArgument as exc:
            print("Divide by zero:", exc.message)
        results = await http.batch(client, [
            ("Calculator.Add", [{"A": 1, "B": 2}]),
            ("Calculator.Divide", [{"A": 9, "B": 3}]),
            ("Calculator.Divide", [{"A": 1, "B": 0}]),
        ])
        print("batch:", [r if not isinstance(r, Exception) else r.status.name for r in results])
        doc = await client.call("rpc.discover")
        print("OpenRPC methods:", [m["name"] for m in doc["methods"]])

    # 3. WebSocket: calls both ways, notifications from the server
    async with await wirecall.connect(f"ws://127.0.0.1:{port}/ws") as ws_client:
        conn = await ws_client.pool.get()
        assert isinstance(conn, http.WebSocketConnection)
        conn.on_notification("countdown.tick", lambda p: print("tick", p["left"]))
        conn.register("client.name", lambda: "example client")
        print(await ws_client.call("Clock.Countdown", 3))

    # 4. probes
    health = await asyncio.to_thread(requests.get, f"{base}/healthz")
    ready = await asyncio.to_thread(requests.get, f"{base}/readyz")
    print("healthz:", health.status_code, "readyz:", ready.status_code)
    await server.close()


if __name__ == "__main__":
    asyncio.run(main())
