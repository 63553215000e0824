"""Per-connection budgets (docs/limits.md): a server with tighter limits than the defaults,
a well-behaved client, and three peers that go over a budget. Each offender is told why in
a GOAWAY and closed; the well-behaved client never notices.

    python examples/limits.py
"""

from __future__ import annotations

import asyncio
import struct

import wirecall
from wirecall import Limits


class Calculator:
    @wirecall.method(inline=True)
    def Add(self, a: int, b: int) -> int:
        return a + b

    async def Slow(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"


PREFACE = b"WRPC" + struct.pack("!BBHI", 1, 1, 0, 4 << 20)  # version 1, msgpack, 4 MiB


def frame(ftype: int, call_id: int, payload: bytes) -> bytes:
    return struct.pack("!IBBHI", len(payload), ftype, 0, 0, call_id) + payload


def request(call_id: int, method: bytes, params: bytes) -> bytes:
    return frame(1, call_id, struct.pack("!H", len(method)) + method + params)


async def offender(host: str, port: int, data: bytes, then: bytes = b"") -> str:
    """Send ``data`` (and ``then`` 100 times), read until closed; the GOAWAY's reason."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(data)
    for _ in range(100 if then else 0):
        writer.write(then)
    got = await asyncio.wait_for(reader.read(-1), 10)
    writer.close()
    off = 12  # the server's preface
    while off + 12 <= len(got):
        length, ftype = struct.unpack_from("!IB", got, off)
        if ftype == 6:  # GOAWAY: last call id, status, message
            _last, status = struct.unpack_from("!IH", got, off + 12)
            message = got[off + 18 : off + 12 + length].decode()
            return f"{wirecall.Status(status).name}: {message}"
        off += 12 + length
    return "closed without a GOAWAY"


async def main() -> None:
    server = wirecall.Server(limits=Limits(frame_timeout=1.0, max_control_frames_per_second=50))
    server.register(Calculator())
    [url] = await server.start("tcp://127.0.0.1:0")
    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    client = await wirecall.connect(url)
    print("limits:", server.limits)
    print("well-behaved: 2 + 3 =", await client.call("Calculator.Add", 2, 3))

    half = request(1, b"Calculator.Add", b"\x92\x01\x02" + b"\0" * 1000)[:500]
    print("half a frame, then silence ->", await offender(host, int(port), PREFACE + half))

    ping = frame(5, 0, b"12345678")
    print("a PING flood ->", await offender(host, int(port), PREFACE, ping))

    slow = request(7, b"Calculator.Slow", b"\x91\x01")
    print("call id 7 twice ->", await offender(host, int(port), PREFACE + slow + slow))

    print("well-behaved again: 4 + 5 =", await client.call("Calculator.Add", 4, 5))
    await client.close()
    await server.close()


if __name__ == "__main__":
    asyncio.run(main())
