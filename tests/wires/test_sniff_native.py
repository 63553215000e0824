"""``any://`` hands a native client's preface and plain requests, however they are cut
across reads, to the native protocol and its fast lane."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

import wirecall
from support.native_wire import DEC, Hot, client_preface, raw_requests, read_replies
from wirecall.protocol import frames as fr


@pytest.mark.parametrize("chunk", [1, 7])
async def test_any_listener_hands_preface_and_plain_requests_to_the_native_protocol(
    chunk: int,
) -> None:
    server = wirecall.Server()
    server.register(Hot())
    [url] = await server.start("any://127.0.0.1:0")
    port = int(url.rsplit(":", 1)[1])
    loop = asyncio.get_running_loop()

    def talk() -> list[fr.Event]:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            wire = client_preface() + raw_requests([(1, "Hot.Add", [1, 2])])
            head = wire[:16]  # preface and a bit of the first frame, then everything at once
            for i in range(0, len(head), chunk):
                s.sendall(head[i : i + chunk])
                time.sleep(0.01)
            s.sendall(wire[16:] + raw_requests([(2, "Hot.Add", [3, 4]),
                                                  (3, "Hot.Echo", ["x"])]))
            return read_replies(s, 3)

    try:
        evs = await loop.run_in_executor(None, talk)
    finally:
        await server.close(drain_timeout=1)
    assert isinstance(evs[0], fr.PrefaceReceived)
    assert [(e.call_id, DEC(e.body)) for e in evs[1:]] == [  # type: ignore[attr-defined]
        (1, 3), (2, 7), (3, "x")]


async def test_any_listener_first_read_with_everything(serve: Any) -> None:
    url = await serve(Hot(), url="any://127.0.0.1:0")
    async with await wirecall.connect(url) as c:
        assert await asyncio.gather(*(c.call("Hot.Add", i, i) for i in range(50))) == [
            2 * i for i in range(50)]
