"""``quic://`` for repeat and moving clients: a session ticket from the first connection
resumes the second (and carries its first call in 0-RTT packets, before the handshake
completes); a connection whose client moves to a new UDP socket (a new address) goes on."""

from __future__ import annotations

from typing import Any

import wirecall
from support.quic import quic_server
from wirecall import Context
from wirecall.transport.base import parse_url
from wirecall.transport.quic import TICKETS
from wirecall.transport.quic import connect as quic_connect


class Svc:
    def __init__(self) -> None:
        self.calls = 0

    def Add(self, a: int, b: int) -> int:
        self.calls += 1
        return a + b

    async def Peer(self, ctx: Context) -> str:
        return ctx.peer


async def test_repeat_client_resumes_and_sends_its_first_call_in_0rtt() -> None:
    svc = Svc()
    async with quic_server(svc) as qs:
        url = parse_url(qs.url)
        TICKETS.clear()
        first = await quic_connect(url, cafile=qs.certfile)
        try:
            assert await first.call("Svc.Add", [1, 2], 5, None, Any) == 3
            assert not first.resumed  # a full handshake the first time
        finally:
            await first.aclose()
        assert any(k[:2] == (url.host, url.port) for k in TICKETS)  # the server's ticket

        second = await quic_connect(url, cafile=qs.certfile, early_data=True)
        try:
            assert not second.handshake_done  # connect returned before the handshake ended
            reply = await second.call("Svc.Add", [2, 3], 5, None, Any)  # written as 0-RTT
            assert reply == 5
            assert second.handshake_done and second.resumed
            assert second.early_data_accepted  # the server took the 0-RTT call
            assert svc.calls == 2
        finally:
            await second.aclose()

        # without early_data the client waits for the handshake: a resumed 1-RTT connection
        # whose calls all travel after it (TLS may still have offered early data)
        third = await quic_connect(url, cafile=qs.certfile)
        try:
            assert third.handshake_done and third.resumed
            assert await third.call("Svc.Add", [3, 4], 5, None, Any) == 7
        finally:
            await third.aclose()


async def test_without_session_tickets_the_server_makes_every_client_do_a_full_handshake(
) -> None:
    async with quic_server(Svc(), session_tickets=False) as qs:
        url = parse_url(qs.url)
        TICKETS.clear()
        for _ in range(2):
            conn = await quic_connect(url, cafile=qs.certfile)
            try:
                assert await conn.call("Svc.Add", [1, 1], 5, None, Any) == 2
                assert not conn.resumed
            finally:
                await conn.aclose()


async def test_connection_migration_to_a_new_client_address() -> None:
    async with quic_server(Svc()) as qs:
        conn = await quic_connect(parse_url(qs.url), cafile=qs.certfile)
        try:
            before = await conn.call("Svc.Peer", [], 5, None, Any)
            old_port = int(before.rsplit(":", 1)[1])
            _host, new_port = await conn.migrate("127.0.0.1")
            assert new_port != old_port
            # the old socket is closed: replies can only reach the client at its new address
            assert await conn.call("Svc.Add", [20, 22], 5, None, Any) == 42
            after = await conn.call("Svc.Peer", [], 5, None, Any)
            assert after == f"127.0.0.1:{new_port}"  # the server follows the new path
            assert not conn.closed
        finally:
            await conn.aclose()


async def test_a_client_through_wirecall_connect_reuses_its_ticket() -> None:
    async with quic_server(Svc()) as qs:
        TICKETS.clear()
        for i in range(2):
            async with await wirecall.connect(qs.url, cafile=qs.certfile) as c:
                assert await c.call("Svc.Add", i, 1) == i + 1
        assert TICKETS  # kept for the process: the next connect resumes
