"""IdGen over Go's wires, end to end: ``gob://`` (net/rpc) and ``jsonrpc://`` (net/rpc/jsonrpc)
served by an ID node (static worker id), called by a real Go client (``go/idgenclient``, several
goroutines on one connection) and by wirecall's Python client. Batch takes two parameters;
over Go's one-argument wires they travel as one argument keyed by parameter name (a map over
gob, a struct with json tags over JSON-RPC). Every ID is unique and each batch increasing,
whichever wire it came by."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from interop.goharness import BUILD, go_binary, go_env
from wirecall.client import Client
from wirecall.errors import RpcError
from wirecall.idgen.node import IdNode, NodeConfig

SRC = Path(__file__).resolve().parent / "go" / "idgenclient"


def build_client() -> Path:
    """Build ``go/idgenclient`` (cached by a hash of its source, like the interop programs)."""
    files = sorted(SRC.glob("*.go"))
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]
    BUILD.mkdir(parents=True, exist_ok=True)
    exe = BUILD / f"idgenclient-{digest}"
    if not exe.exists():
        tmp = exe.with_suffix(".tmp")
        res = subprocess.run([go_binary(), "build", "-o", str(tmp), "."], cwd=SRC,
                             env=go_env(), capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, f"go build idgenclient failed:\n{res.stderr}"
        tmp.replace(exe)
    return exe


@pytest.fixture(scope="module")
def go_client() -> Path:
    return build_client()


@pytest.fixture
async def node_urls(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    node = IdNode(NodeConfig(listen=["gob://127.0.0.1:0", "jsonrpc://127.0.0.1:0"],
                             worker_id=5, data_dir=tmp_path))
    urls = await node.start()
    yield {u.partition("://")[0]: u for u in urls}
    await node.close()


async def run_go(exe: Path, url: str, *args: str) -> list[dict[str, object]]:
    scheme, _, addr = url.partition("://")
    proc = await asyncio.create_subprocess_exec(
        str(exe), "-addr", addr, "-mode", scheme, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


async def test_go_client_next_and_batch_over_gob_and_jsonrpc(go_client: Path,
                                                             node_urls: dict[str, str]) -> None:
    urls = node_urls
    assert set(urls) == {"gob", "jsonrpc"}
    seen: list[int] = []
    for scheme in ("gob", "jsonrpc"):
        lines = await run_go(go_client, urls[scheme], "-g", "4", "-rounds", "5", "-n", "1000")
        assert [ln for ln in lines if ln["error"] is not None and ln["case"] != "bad_n"] == []
        nexts = [ln for ln in lines if ln["case"] == "next"]
        batches = [ln["ids"] for ln in lines if ln["case"] == "batch"]
        assert len(nexts) == 4 * 5 + 2 and len(batches) == 4 * 5, scheme
        for b in batches:
            assert isinstance(b, list) and len(b) == 1000
            assert b == sorted(b) and len(set(b)) == 1000, scheme
        # per goroutine (sequential calls), each call's IDs are above the previous ones
        for g in range(4):
            mine = [ln for ln in lines if ln.get("goroutine") == g]
            flat: list[int] = []
            for ln in mine:
                flat += [ln["id"]] if ln["case"] == "next" else ln["ids"]  # type: ignore[list-item]
            assert flat == sorted(flat), (scheme, g)
        # a bad argument is the service's INVALID_ARGUMENT text, and the connection goes on
        (bad,) = [ln for ln in lines if ln["case"] == "bad_n"]
        assert bad["error"] == "n must be between 1 and 100000, got 0"
        assert nexts[-1]["goroutine"] == -2 and nexts[-1]["error"] is None
        if scheme == "jsonrpc":
            (dec,) = [ln for ln in lines if ln["case"] == "decode"]
            d = dec["decoded"]
            assert isinstance(d, dict) and d["worker"] == 5 and d["id"] == dec["id"]
        seen += [ln["id"] for ln in nexts] + [i for b in batches for i in b]  # type: ignore[misc]
    # and the Python client over the same two wires: Batch with named arguments
    for scheme in ("gob", "jsonrpc"):
        async with Client(urls[scheme]) as c:
            many = await c.call("IdGen.Batch", tag="orders", n=2000)
            one = await c.call("IdGen.Next", "orders")
            with pytest.raises(RpcError, match="n must be between 1 and 100000"):
                await c.call("IdGen.Batch", tag="orders", n=100_001)
        assert len(many) == 2000 and many == sorted(many) and one > many[-1]
        seen += [*many, one]
    assert len(seen) == len(set(seen)) == 2 * (4 * 5 * 1001 + 2) + 2 * 2001
    assert {i >> 12 & 1023 for i in seen} == {5}  # all from worker 5
