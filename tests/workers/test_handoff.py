"""The hand-over a retiring worker makes (``Server.handoff``), on real sockets in one process:
the native wire's two-step GOAWAY serves a call that crossed the first GOAWAY, and a gRPC
call that never left the client when the GOAWAY came is sent again on a live connection."""

from __future__ import annotations

import asyncio
import socket

import msgspec

import wirecall
from wirecall.client import Client
from wirecall.protocol import frames as fr
from wirecall.status import Status


class Svc:
    def __init__(self, name: str) -> None:
        self.name = name

    def Name(self) -> str:
        return self.name

    async def Hold(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return self.name


async def _read_events(reader: asyncio.StreamReader, conn: fr.FrameConnection,
                       want: type, timeout: float = 5.0) -> list[fr.Event]:
    """Read (and process) until an event of type ``want`` arrives; all events read."""
    out: list[fr.Event] = []
    async with asyncio.timeout(timeout):
        while not any(isinstance(e, want) for e in out):
            data = await reader.read(65536)
            assert data, f"connection closed; events so far {out}"
            out += conn.receive_data(data)
    return out


def test_native_two_step_goaway_serves_a_call_that_crossed_it() -> None:
    async def run() -> None:
        server = wirecall.Server()
        server.register(Svc("one"), name="Svc")
        server.handoff = 0.2
        [url] = await server.start("tcp://127.0.0.1:0")
        host, port = url.rsplit("/", 1)[1].split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        conn = fr.FrameConnection(client=True)
        conn.initiate()
        writer.write(conn.data_to_send())
        await _read_events(reader, conn, fr.PrefaceReceived)
        closing = asyncio.ensure_future(server.close())
        # the first GOAWAY (and its PING) arrive: read the bytes, but as a client that sent
        # a call before reading them, send the call first, then process them (the PONG)
        async with asyncio.timeout(5):
            raw = await reader.read(65536)
        conn.send_request(1, "Svc.Name", msgspec.msgpack.encode([]))
        writer.write(conn.data_to_send())
        first = conn.receive_data(raw)
        goaways = [e for e in first if isinstance(e, fr.GoAwayReceived)]
        assert [g.last_call_id for g in goaways] == [0xFFFFFFFF], first
        assert any(isinstance(e, fr.PingReceived) for e in first), first
        writer.write(conn.data_to_send())  # the PONG, after the call
        events = await _read_events(reader, conn, fr.GoAwayReceived)
        if not any(isinstance(e, fr.ResponseReceived) for e in events):  # (a thread's reply)
            events += await _read_events(reader, conn, fr.ResponseReceived)
        [resp] = [e for e in events if isinstance(e, fr.ResponseReceived)]
        assert resp.call_id == 1 and msgspec.msgpack.decode(resp.body) == "one"
        [final] = [e for e in events if isinstance(e, fr.GoAwayReceived)]
        assert final.last_call_id == 1
        # after the final GOAWAY a new call is refused (UNAVAILABLE), or finds the
        # connection already closed (the server may finish its drain first): never served
        conn.send_request(3, "Svc.Name", msgspec.msgpack.encode([]))
        writer.write(conn.data_to_send())
        after: list[fr.Event] = []
        async with asyncio.timeout(5):
            while not any(isinstance(e, fr.ErrorReceived) for e in after):
                data = await reader.read(65536)
                if not data:
                    break
                after += conn.receive_data(data)
        assert not any(isinstance(e, fr.ResponseReceived) for e in after), after
        for err in [e for e in after if isinstance(e, fr.ErrorReceived)]:
            assert (err.call_id, err.status) == (3, Status.UNAVAILABLE)
        writer.close()
        await closing

    asyncio.run(run())


def test_grpc_call_queued_when_goaway_arrives_is_sent_again_on_a_live_connection() -> None:
    """One stream allowed per connection: call B waits for it while A runs; the server's
    GOAWAY means B will never be sent there: wirecall.Client sends it to the server now
    listening on the same port (SO_REUSEPORT), which answers."""

    async def run() -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = f"grpc://127.0.0.1:{port}"
        old, new = wirecall.Server(), wirecall.Server()
        old.register(Svc("old"), name="Svc")
        new.register(Svc("new"), name="Svc")
        old.handoff = 0.05
        await old.start(url, reuse_port=True, max_concurrent_streams=1)
        client = Client(url)
        await client.connect()
        assert await client.call("Svc.Name") == "old"
        a = asyncio.ensure_future(client.call("Svc.Hold", 1.0))
        await asyncio.sleep(0.2)
        b = asyncio.ensure_future(client.call("Svc.Name"))  # queued: the one stream is A's
        await asyncio.sleep(0.2)
        assert not b.done()
        await new.start(url, reuse_port=True)
        closing = asyncio.ensure_future(old.close())
        assert await asyncio.wait_for(b, 5) == "new"
        assert await asyncio.wait_for(a, 5) == "old"  # the call in flight drained
        await closing
        assert await client.call("Svc.Name") == "new"
        await client.close()
        await new.close()

    asyncio.run(run())
