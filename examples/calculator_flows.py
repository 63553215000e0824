"""The tutorial's client flows (section 2.1.2 and 2.1.3) with wirecall.

Sync ``Call``, async ``Go`` + ``Done``, a connection pool, a dial timeout and a call timeout,
against the tutorial's Calculator served in the same process. Run: ``python
examples/calculator_flows.py``.
"""

from __future__ import annotations

import asyncio
import threading

import wirecall
import wirecall.sync
from wirecall import RpcError, Server
from wirecall.tutorial.calculator import Args, Calculator


class SlowCalculator(Calculator):
    async def SlowAdd(self, args: Args) -> int:
        await asyncio.sleep(2)
        return args.A + args.B


def start_server() -> str:
    """Serve the Calculator on a free port in a background thread (like `go rpc.ServeConn`)."""
    ready: list[str] = []
    event = threading.Event()

    async def run() -> None:
        server = Server()
        server.register(SlowCalculator(), name="Calculator")  # rpc.RegisterName
        ready.extend(await server.start("tcp://127.0.0.1:0"))
        event.set()
        await server.serve_forever()

    threading.Thread(target=lambda: asyncio.run(run()), daemon=True).start()
    event.wait(10)
    return ready[0]


def sync_flows(url: str) -> None:
    # rpc.Dial + client.Call (blocking)
    with wirecall.sync.connect(url, timeout=2) as client:
        result1 = client.call("Calculator.Add", Args(A=10, B=5))
        print("10 + 5 =", result1)
        # client.Go + <-divCall.Done
        div_call = client.go("Calculator.Divide", Args(A=10, B=5))
        print("10 / 5 =", div_call.result())
        try:
            client.call("Calculator.Divide", Args(A=10, B=0))
        except RpcError as err:
            print("RPC 调用失败:", err.message)


async def async_flows(url: str) -> None:
    # the tutorial's RPCPool: N connections to one address, reused by every call
    async with await wirecall.connect(url, pool_size=4) as pool:
        sums = await asyncio.gather(*(pool.call("Calculator.Add", Args(i, i)) for i in range(40)))
        print(f"pool: {len(pool.pool.connections)} connections, {len(sums)} calls, "
              f"sum {sum(sums)}")
        # context.WithTimeout(..., 2*time.Second) + CallContext: a call timeout
        try:
            await pool.call("Calculator.SlowAdd", Args(1, 2), timeout=0.2)
        except RpcError as err:
            print(f"timeout: {err.status.name}")
    # net.DialTimeout: a dial timeout
    try:
        await wirecall.connect("tcp://127.0.0.1:9", timeout=0.5)
    except wirecall.ConnectError as err:
        print("dial failed:", err.message)


if __name__ == "__main__":
    address = start_server()
    print("server:", address)
    sync_flows(address)
    asyncio.run(async_flows(address))
