"""examples/workers.py runs and prints what it promises (real supervisor and workers)."""

from __future__ import annotations

import subprocess
import sys

from support.servers import ROOT


def test_workers_example() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "workers.py")],
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "tcp: Add(3, 4) = 7" in out and "grpc: Add(3, 4) = 7" in out
    assert "worker restarted: 1 new process" in out
    assert "grpc after restart: Add(5, 6) = 11" in out
    assert "supervisor exit status: 0" in out
