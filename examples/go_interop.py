"""Serve the tutorial's Calculator to Go programs, and call Go servers, with wirecall.

    python examples/go_interop.py            # serves, then calls itself over each Go wire
    python examples/go_interop.py --serve    # keep serving: point the tutorial's Go client
                                             # (rpc.Dial / rpc.DialHTTP / jsonrpc.Dial) at it

One registered service answers on three Go wires at once:

* ``gob://``      Go's ``rpc.Dial("tcp", addr)`` and ``rpc.DialHTTP("tcp", addr)``
* ``jsonrpc://``  Go's ``jsonrpc.Dial("tcp", addr)``

and the same client API calls a Go ``net/rpc`` server (``gob://host:port``, or
``gob://host:port/_goRPC_`` for one behind ``rpc.HandleHTTP``) or a Go JSON-RPC server
(``jsonrpc://host:port``).
"""

from __future__ import annotations

import argparse
import asyncio

import wirecall
from wirecall.tutorial.calculator import Args, Calculator


async def main(serve_forever: bool) -> None:
    server = wirecall.Server()
    server.register(Calculator())
    gob_url, json_url = await server.start("gob://127.0.0.1:0", "jsonrpc://127.0.0.1:0")
    print(f"serving Calculator on {gob_url} and {json_url}")
    if serve_forever:
        await server.serve_forever(handle_signals=True)
        return
    for url in (gob_url, gob_url + "/_goRPC_", json_url):  # rpc.Dial, rpc.DialHTTP, jsonrpc
        client = await wirecall.connect(url)
        try:
            total = await client.call("Calculator.Add", Args(A=10, B=5), result_type=int)
            print(f"{url}: 10 + 5 = {total}")
            call = client.go("Calculator.Divide", Args(A=10, B=5), result_type=float)
            print(f"{url}: 10 / 5 = {await call}")
            try:
                await client.call("Calculator.Divide", Args(A=1, B=0))
            except wirecall.RpcError as exc:
                print(f"{url}: 1 / 0 -> error {exc.message}")
        finally:
            await client.close()
    await server.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", action="store_true", help="keep serving until Ctrl-C")
    asyncio.run(main(ap.parse_args().serve))
