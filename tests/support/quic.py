"""A ``quic://`` server on 127.0.0.1 with a throwaway self-signed certificate."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from wirecall import Server
from wirecall.transport.quic import write_self_signed


@dataclass
class QuicServer:
    server: Server
    url: str
    certfile: str
    keyfile: str


@contextlib.asynccontextmanager
async def quic_server(*services: Any, **options: Any) -> AsyncIterator[QuicServer]:
    """Serve ``services`` (objects, or ``(object, name)`` pairs) on ``quic://127.0.0.1:0``."""
    with tempfile.TemporaryDirectory(prefix="wirecall-quic-") as d:
        crt, key = write_self_signed(d)
        server = Server(**options.pop("server_options", {}))
        for s in services:
            if isinstance(s, tuple):
                server.register(s[0], name=s[1])
            else:
                server.register(s)
        [url] = await server.start("quic://127.0.0.1:0", certfile=crt, keyfile=key, **options)
        try:
            yield QuicServer(server, url, crt, key)
        finally:
            await server.close(drain_timeout=2)


@contextlib.asynccontextmanager
async def serving(scheme: str, svc: Any, name: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Serve ``svc`` as ``name`` on ``tcp://`` or ``quic://`` (127.0.0.1, a free port);
    yield the URL and the client options it needs (the certificate to trust for quic)."""
    if scheme == "quic":
        async with quic_server((svc, name)) as qs:
            yield qs.url, {"cafile": qs.certfile}
        return
    server = Server()
    server.register(svc, name=name)
    [url] = await server.start(f"{scheme}://127.0.0.1:0")
    try:
        yield url, {}
    finally:
        await server.close(drain_timeout=1)
