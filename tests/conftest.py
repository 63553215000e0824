"""Shared fixtures (helpers live in ``tests/support``); tests under tests/interop get the
``interop`` marker (real Go programs, grpcio interop cases, nginx)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import hypothesis  # noqa: F401  (imported early: see note)
import pytest

# Note: hypothesis is imported up front because its plugin would otherwise import it at
# the end of the run, when a CPython 3.11 race (gh-106905) can break ast.parse if another
# thread is compiling at that moment.
import wirecall
from support.servers import ROOT, ServerProcess, ThreadServer, free_port  # noqa: F401

INTEROP = ROOT / "tests" / "interop"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEROP in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.interop)


@pytest.fixture
def server_process() -> Iterator[type[ServerProcess]]:
    started: list[ServerProcess] = []

    class Tracked(ServerProcess):
        def start(self, timeout: float = 15.0) -> str:
            started.append(self)
            return super().start(timeout)

    yield Tracked
    for p in started:
        p.stop()


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    """``url = await serve(obj, ..., url="tcp://127.0.0.1:0", **server_kw)``."""
    servers: list[wirecall.Server] = []

    async def start(*services: Any, url: str = "tcp://127.0.0.1:0", **kw: Any) -> str:
        s = wirecall.Server(**kw)
        for svc in services:
            s.register(svc)
        servers.append(s)
        [real] = await s.start(url)
        start.server = s  # type: ignore[attr-defined]
        return real

    yield start
    for s in servers:
        await s.close(drain_timeout=1)
