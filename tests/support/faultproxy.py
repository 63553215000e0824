"""A small fault-injecting TCP proxy (toxiproxy's toxics, in asyncio, loopback only).

::

    proxy = await FaultProxy.start("127.0.0.1", upstream_port)
    proxy.latency = 0.05        # each chunk from the upstream is delayed 50 ms
    proxy.mode = "reset"        # new and existing connections are reset (RST)
    proxy.mode = "blackhole"    # bytes are swallowed both ways, nothing is closed
    proxy.mode = "pass"
    await proxy.close()

``proxy.port`` is where clients connect. Only 127.0.0.0/8 and ::1 are accepted as upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct

__all__ = ["FaultProxy"]


class FaultProxy:
    def __init__(self, host: str, port: int) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the fault proxy only talks to loopback, not {host}")
        self.host, self.upstream_port = host, port
        self.latency = 0.0
        self.mode = "pass"  # pass | reset | blackhole
        self.port = 0
        self.connections = 0
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @classmethod
    async def start(cls, host: str, port: int) -> FaultProxy:
        self = cls(host, port)
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @staticmethod
    def _reset(w: asyncio.StreamWriter) -> None:
        sock = w.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        w.transport.abort()

    def reset_all(self) -> None:
        for w in list(self._writers):
            self._reset(w)

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, delay: bool) -> None:
        try:
            while True:
                data = await r.read(65536)
                if not data:
                    break
                if self.mode == "reset":
                    self.reset_all()
                    return
                if self.mode == "blackhole":
                    continue
                if delay and self.latency:
                    await asyncio.sleep(self.latency)
                w.write(data)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                w.close()

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == "reset":
            self._reset(cw)
            return
        try:
            ur, uw = await asyncio.open_connection(self.host, self.upstream_port)
        except OSError:
            self._reset(cw)
            return
        self._writers |= {cw, uw}
        try:
            await asyncio.gather(self._pipe(cr, uw, False), self._pipe(ur, cw, True))
        finally:
            self._writers -= {cw, uw}

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self.reset_all()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
