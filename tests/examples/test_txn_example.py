"""examples/txn_transfer.py: a saga, a compensated saga, a TCC and a 2-phase message."""

from __future__ import annotations

import subprocess
import sys

from support.servers import ROOT


def test_txn_transfer_example() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "txn_transfer.py")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "saga ok:        succeeded alice=70, bob=130" in out
    assert "saga failing:   failed    alice=70, bob=130" in out
    assert "the receiving account is closed" in out
    assert "tcc tried:                alice=70, bob=80 (held 50)" in out
    assert "tcc confirmed:  succeeded alice=70, bob=80" in out
    assert "message:        succeeded alice=80, bob=70" in out
    assert "total: 150" in out
