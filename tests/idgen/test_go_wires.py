"""IdGen over Go's wires, end to end: ``gob://`` (net/rpc) and ``jsonrpc://`` (net/rpc/jsonrpc)
served by an ID node (static worker id), called by a real Go client (``go/idgenclient``, several
goroutines on one connection) and by wirecall's Python client. Batch takes two parameters;
over Go's one-argument wires they travel as one Go struct ``{Tag string; N int}`` whose field
names bind to the parameters ``tag`` and ``n`` (and ``{StartMs, TimeMs}`` to a probe
service's ``start_ms``, ``time_ms``); Decode's reply decodes into a Go struct with exported
fields (``ID``, ``TimeMs``, ``Worker``, ``Sequence``) on both wires. Every ID is unique and
each batch increasing, whichever wire it came by."""

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
from wirecall.idgen.snowflake import Layout
from wirecall.server import Server
from wirecall.service import method

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


class Probe:
    """Another service on the node: the binding rule is the server's, not IdGen's."""

    @method(inline=True)
    def Span(self, start_ms: int, time_ms: int) -> int:
        return time_ms - start_ms


@pytest.fixture
async def node_urls(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    server = Server()
    server.register(Probe())
    node = IdNode(NodeConfig(listen=["gob://127.0.0.1:0", "jsonrpc://127.0.0.1:0"],
                             worker_id=5, data_dir=tmp_path), server=server)
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


def case_ids(lines: list[dict[str, object]], case: str) -> list[int]:
    return [i for ln in lines if ln["case"] == case for i in ln["ids"]]  # type: ignore[attr-defined]


async def test_go_client_next_and_batch_over_gob_and_jsonrpc(go_client: Path,
                                                             node_urls: dict[str, str]) -> None:
    urls = node_urls
    assert set(urls) == {"gob", "jsonrpc"}
    seen: list[int] = []
    for scheme in ("gob", "jsonrpc"):
        lines = await run_go(go_client, urls[scheme], "-g", "4", "-rounds", "5", "-n", "1000",
                             "-probe")
        refused = ("bad_n", "unknown_field")
        assert [ln for ln in lines if ln["error"] is not None and ln["case"] not in refused] == []
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
        (case,) = [ln for ln in lines if ln["case"] == "bad_n"]
        assert case["error"] == "n must be between 1 and 100000, got 0", scheme
        (case,) = [ln for ln in lines if ln["case"] == "unknown_field"]
        assert case["error"] == "unexpected argument 'Size' for IdGen.Batch", scheme
        assert nexts[-1]["goroutine"] == -2 and nexts[-1]["error"] is None
        # Decode's reply in the Go struct Decoded{ID, TimeMs, Worker, Sequence} (printed by
        # encoding/json: TimeMs under its tag), every field set, on both wires
        (dec,) = [ln for ln in lines if ln["case"] == "decode"]
        want = Layout().decode(dec["id"])  # type: ignore[arg-type]
        assert dec["decoded"] == {"ID": want.id, "time_ms": want.time_ms, "Worker": 5,
                                  "Sequence": want.sequence}, (scheme, dec)
        assert want.time_ms > 0
        # a map keyed by the parameter names binds too; Probe.Span gets StartMs, TimeMs
        (case,) = [ln for ln in lines if ln["case"] == "batch_map"]
        assert isinstance(case["ids"], list) and len(case["ids"]) == 3, scheme
        (case,) = [ln for ln in lines if ln["case"] == "span"]
        assert case["span"] == 250 and case["error"] is None, (scheme, case)
        seen += [ln["id"] for ln in nexts] + [i for b in batches for i in b]  # type: ignore[misc]
        seen += case_ids(lines, "batch_map")
    # and the Python client over the same two wires: Batch with named arguments
    for scheme in ("gob", "jsonrpc"):
        async with Client(urls[scheme]) as c:
            many = await c.call("IdGen.Batch", tag="orders", n=2000)
            one = await c.call("IdGen.Next", "orders")
            with pytest.raises(RpcError, match="n must be between 1 and 100000"):
                await c.call("IdGen.Batch", tag="orders", n=100_001)
        assert len(many) == 2000 and many == sorted(many) and one > many[-1]
        seen += [*many, one]
    assert len(seen) == len(set(seen)) == 2 * (4 * 5 * 1001 + 2 + 3) + 2 * 2001
    assert {i >> 12 & 1023 for i in seen} == {5}  # all from worker 5
