"""examples/idgen_cluster.py runs and shows what it says (and the CLI answers a node)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support.idgen import NodeProcess
from support.servers import ROOT


def test_idgen_cluster_example() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "idgen_cluster.py")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "-> worker 2, sequence 0" in out
    assert "grpc Batch: 1000 IDs" in out
    assert "IdClient: 5000 IDs, 5000 unique, from 10 batch calls" in out
    assert "segment order: [1000, 1001, 1002, 1003, 1004]" in out
    assert "unknown tag: NotFound" in out
    assert "idgen example done" in out


def test_cli_serve_and_next(tmp_path: Path) -> None:
    node = NodeProcess("--worker-id", "12", "--data-dir", str(tmp_path)).start()
    try:
        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "wirecall.cli", "idgen", *args],
                                  capture_output=True, text=True, timeout=30)
        r = cli("next", node.url, "-n", "3", "--decode")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert len(lines) == 3 and all("worker=12" in line for line in lines)
        ids = [int(line.split()[0]) for line in lines]
        assert ids == sorted(ids) and len(set(ids)) == 3
        r = cli("next", node.url, "-n", "0")
        assert r.returncode != 0 and "-n must be >= 1" in r.stderr
        r = cli("serve", "--worker-id", "1", "--layout", "time=41,bogus=3")
        assert r.returncode == 2 and "unknown field 'bogus=3'" in r.stderr
        r = cli("serve", "--worker-id", "5000")
        assert r.returncode == 2 and "worker id 5000 outside 0..1023" in r.stderr
    finally:
        node.stop()
