"""The coordinator answers on every wire, and calls branches on every wire: a saga submitted
over tcp://, http:// (JSON-RPC), ws:// and grpc:// to a coordinator process, with its
branches served by another process over http://, grpc:// and jsonrpc:// (Go's JSON-RPC)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.servers import free_port
from support.txn import Proc
from txn.conftest import FAST, gid
from wirecall.txn.client import TxnClient

pytestmark = pytest.mark.timeout(90)

BRANCHES = '''
class Echo:
    async def Do(self, gid: str, branch_id: str, op: str, payload: object) -> str:
        return "done"

    async def Undo(self, gid: str, branch_id: str, op: str, payload: object) -> str:
        return "undone"
'''


@pytest.fixture(scope="module")
def procs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, Proc]]:
    tmp = tmp_path_factory.mktemp("wires")
    (tmp / "echo_branches.py").write_text(BRANCHES)
    coord = Proc([sys.executable, "-m", "wirecall.cli", "txn", "serve", "--store",
                  f"sqlite:///{tmp / 'txn.db'}", "--poll", "0.1",
                  *(arg for scheme in ("tcp", "http", "grpc") for arg in
                    ("--listen", f"{scheme}://127.0.0.1:{free_port()}")),
                  "--listen", f"ws://127.0.0.1:{free_port()}/ws"])
    branches = Proc([sys.executable, "-m", "wirecall.cli", "serve", "echo_branches:Echo",
                     *(arg for scheme in ("http", "grpc", "jsonrpc") for arg in
                       ("--listen", f"{scheme}://127.0.0.1:{free_port()}"))])
    branches.env["PYTHONPATH"] = f"{tmp}:{branches.env['PYTHONPATH']}"
    coord.start(listeners=4)
    branches.start(listeners=3)
    yield coord, branches
    coord.stop()
    branches.stop()


@pytest.mark.parametrize("coord_wire", ["tcp", "http", "grpc", "ws"])
async def test_saga_over_every_wire(procs: tuple[Proc, Proc], coord_wire: str,
                                    tmp_path: Path) -> None:
    coord, branches = procs
    url = next(u for u in coord.urls if u.startswith(f"{coord_wire}://"))
    async with await TxnClient.connect(url) as txn:
        steps = [{"url": b, "action": "Echo.Do", "compensate": "Echo.Undo"}
                 for b in branches.urls]
        g = gid()
        r = await txn.saga(g, steps, FAST, wait=20)
        assert r["status"] == "succeeded", r
        q = await txn.query(g)
        assert [h["outcome"] for h in q["history"]] == ["success"] * 3
        assert {b["url"].split(":")[0] for b in q["branches"]} == {"http", "grpc", "jsonrpc"}
