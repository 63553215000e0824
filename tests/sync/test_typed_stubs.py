"""Typed stubs (issue #10): ``SyncClient.stub(API)`` returns values (mypy agrees when the
blocking view is declared with plain ``def``), and a ``typing.Protocol`` is accepted by both
clients, checked by mypy --strict and run against a real server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Protocol

import wirecall.sync
from wirecall import Server
from wirecall.tutorial.calculator import Args, Calculator

PROGRAM = '''
from typing import Protocol

import msgspec

import wirecall
import wirecall.sync


class Stock(msgspec.Struct):
    sku: str
    qty: int


class InventoryAPI(Protocol):          # the async view
    async def Get(self, sku: str) -> Stock: ...


class InventorySync(Protocol):         # the blocking view
    def Get(self, sku: str) -> Stock: ...


def blocking(c: wirecall.sync.SyncClient) -> int:
    inv = c.stub(InventorySync)
    return inv.Get("a").qty


async def asynchronous(c: wirecall.Client) -> int:
    inv = c.stub(InventoryAPI)
    return (await inv.Get("a")).qty
'''


def _mypy(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--config-file=",
         "good.py", "bad.py"], capture_output=True, text=True, timeout=240, cwd=folder)


def test_protocol_stubs_type_check_with_values_for_the_blocking_client(tmp_path: Path) -> None:
    (tmp_path / "good.py").write_text(PROGRAM)
    (tmp_path / "bad.py").write_text(
        PROGRAM + "\n\ndef wrong(c: wirecall.sync.SyncClient) -> str:\n"
        "    return c.stub(InventorySync).Get(1).sku\n")
    r = _mypy(tmp_path)  # one run for both: good.py clean, bad.py flagged
    assert "good.py" not in r.stdout, r.stdout
    assert r.returncode == 1 and "Found 1 error in 1 file" in r.stdout, r.stdout
    assert 'error: Argument 1 to "Get" of "InventorySync" has incompatible type "int"' \
        in r.stdout, r.stdout


class CalcSync(Protocol):
    def Add(self, args: Args) -> int: ...


def test_a_protocol_stub_calls_a_real_server() -> None:
    import asyncio
    import threading

    ready = threading.Event()
    box: dict[str, object] = {}

    def serve() -> None:
        async def main() -> None:
            server = Server()
            server.register(Calculator())
            [box["url"]] = await server.start("tcp://127.0.0.1:0")
            box["server"], box["loop"] = server, asyncio.get_running_loop()
            ready.set()
            await server.serve_forever()

        asyncio.run(main())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    assert ready.wait(10)
    try:
        with wirecall.sync.connect(str(box["url"])) as c:
            calc = c.stub(CalcSync, name="Calculator")
            assert calc.Add(Args(3, 4)) == 7
    finally:
        loop = box["loop"]
        asyncio.run_coroutine_threadsafe(box["server"].close(), loop).result(10)  # type: ignore[attr-defined,arg-type]
        t.join(10)
