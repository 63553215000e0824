"""``wirecall txn``: serve with no store argument (SQLite in the working directory), and the
operators' list / show / retry / abort against a running coordinator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support.servers import free_port
from support.txn import CoordinatorProcess, Proc
from txn.conftest import gid

pytestmark = pytest.mark.timeout(60)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wirecall.cli", "txn", *args],
                          capture_output=True, text=True, timeout=30)


def test_serve_without_a_store_uses_sqlite_in_the_working_directory(tmp_path: Path) -> None:
    port = free_port()
    p = Proc([sys.executable, "-m", "wirecall.cli", "txn", "serve", "--listen",
              f"tcp://127.0.0.1:{port}"], cwd=tmp_path)
    url = p.start()
    try:
        assert url == f"tcp://127.0.0.1:{port}"
        assert "store sqlite:///wirecall-txn.db\n" in p.output
        assert (tmp_path / "wirecall-txn.db").exists()
        r = cli("list", "--url", url)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split()[:3] == ["gid", "mode", "status"]
    finally:
        p.stop()


def test_list_show_retry_abort(coordinator: CoordinatorProcess) -> None:
    import asyncio

    from wirecall.txn.client import TxnClient

    g = gid()
    dead = f"tcp://127.0.0.1:{free_port()}"  # nothing listens: the saga keeps retrying

    async def submit() -> None:
        async with await TxnClient.connect(coordinator.url) as txn:
            await txn.saga(g, [{"url": dead, "action": "X.Do", "compensate": "X.Undo"}],
                           {"retry_interval": 5})

    asyncio.run(submit())
    url = coordinator.url
    listed = cli("list", "--status", "submitted", "--url", url)
    assert listed.returncode == 0 and g in listed.stdout
    shown = cli("show", g, "--url", url)
    assert shown.returncode == 0
    doc = json.loads(shown.stdout)
    assert doc["global"]["status"] == "submitted"
    assert [b["op"] for b in doc["branches"]] == ["action", "compensate"]
    assert doc["history"][0]["outcome"] == "retry"
    retried = cli("retry", g, "--url", url)
    assert json.loads(retried.stdout)["status"] == "submitted"
    aborted = cli("abort", g, "--url", url)
    assert json.loads(aborted.stdout)["status"] == "aborting"
    missing = cli("show", gid(), "--url", url)
    assert missing.returncode != 0 and "NOT_FOUND" in missing.stderr
    bad = cli("show", "no spaces allowed", "--url", url)
    assert bad.returncode != 0 and "INVALID_ARGUMENT" in bad.stderr
