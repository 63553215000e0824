"""Certificates reloaded without a restart: a changed file is picked up by the next handshake
(polling), SIGHUP reloads at once, a broken file keeps the old certificate; connections already
open keep working throughout."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import ssl
from pathlib import Path

import wirecall
from support.tls import Certs, Pair


async def _served_cn(url: str, ca: str) -> str:
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=ca)
    _, writer = await asyncio.open_connection(host, int(port), ssl=ctx,
                                              server_hostname="localhost")
    cert = writer.get_extra_info("peercert")
    writer.close()
    return next(v for rdn in cert["subject"] for k, v in rdn if k == "commonName")


def _install(pair: Pair, dest: Path) -> None:
    for src, name in ((pair.cert, "live.pem"), (pair.key, "live.key")):
        tmp = dest / (name + ".tmp")
        shutil.copy(src, tmp)
        os.replace(tmp, dest / name)  # atomic, as a certificate manager does


async def _wait_for(url: str, ca: str, cn: str) -> None:
    for _ in range(100):
        if await _served_cn(url, ca) == cn:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the server never presented {cn!r}")


class Echo:
    async def Say(self, text: str) -> str:
        return text


async def test_file_change_is_picked_up_and_open_connections_survive(certs: Certs,
                                                                     tmp_path: Path) -> None:
    _install(certs.server, tmp_path)
    server = wirecall.Server()
    server.register(Echo())
    [url] = await server.start("tls://127.0.0.1:0", certfile=str(tmp_path / "live.pem"),
                               keyfile=str(tmp_path / "live.key"), tls_reload=0.05)
    try:
        assert await _served_cn(url, certs.ca) == "localhost"
        async with await wirecall.connect(url, cafile=certs.ca) as c:
            assert await c.call("Echo.Say", "before", timeout=5) == "before"
            await asyncio.sleep(0.02)
            _install(certs.server2, tmp_path)
            await _wait_for(url, certs.ca, "localhost-2")
            assert await c.call("Echo.Say", "after", timeout=5) == "after"  # same connection
            # a broken file: logged, the last good certificate stays
            (tmp_path / "live.pem").write_text("not a certificate")
            await asyncio.sleep(0.3)
            assert await _served_cn(url, certs.ca) == "localhost-2"
    finally:
        await server.close(drain_timeout=1)


async def test_sighup_reloads_at_once(certs: Certs, tmp_path: Path) -> None:
    _install(certs.server, tmp_path)
    server = wirecall.Server()
    server.register(Echo())
    [url] = await server.start("https://127.0.0.1:0", certfile=str(tmp_path / "live.pem"),
                               keyfile=str(tmp_path / "live.key"), tls_reload=0)  # no polling
    try:
        assert await _served_cn(url, certs.ca) == "localhost"
        _install(certs.server2, tmp_path)
        await asyncio.sleep(0.2)
        assert await _served_cn(url, certs.ca) == "localhost"  # polling is off
        os.kill(os.getpid(), signal.SIGHUP)
        await _wait_for(url, certs.ca, "localhost-2")
    finally:
        await server.close(drain_timeout=1)
