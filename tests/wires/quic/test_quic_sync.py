"""The blocking client (``wirecall.sync``) on ``quic://``: it runs the async QUIC client on
its private loop thread, against a server on another thread's loop."""

from __future__ import annotations

import asyncio
import tempfile
import threading

import wirecall
import wirecall.sync
from support.services import Calc
from wirecall.transport.quic import write_self_signed


def test_sync_client_unary_and_server_stream_on_quic() -> None:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as d:
        crt, key = write_self_signed(d)

        def run() -> None:
            asyncio.set_event_loop(loop)

            async def main() -> None:
                server = wirecall.Server()
                server.register(Calc(), name="Calc")
                [box["url"]] = await server.start("quic://127.0.0.1:0", certfile=crt,
                                                  keyfile=key)
                box["server"] = server
                ready.set()

            loop.run_until_complete(main())
            loop.run_forever()

        t = threading.Thread(target=run, daemon=True)
        t.start()
        assert ready.wait(10)
        try:
            with wirecall.sync.connect(str(box["url"]), cafile=crt) as c:
                assert c.call("Calc.Add", 2, 40) == 42
                assert list(c.stream("Calc.Count", [5], result_type=int)) == [0, 1, 2, 3, 4]
        finally:
            server = box["server"]
            assert isinstance(server, wirecall.Server)
            asyncio.run_coroutine_threadsafe(server.close(drain_timeout=2), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            t.join(10)
