"""examples/security.py: tls:// and https:// with mTLS and Auth; each caller gets the status
its credentials deserve."""

from __future__ import annotations

import subprocess
import sys

from support.servers import ROOT


def test_security_example() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "security.py")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    for scheme in ("tls", "https"):
        part = out.split(f"-- {scheme}://", 1)[1].split("-- ", 1)[0]
        assert "nobody: Calculator.Add -> UNAUTHENTICATED" in part
        assert "wrong token: Calculator.Add -> UNAUTHENTICATED: unauthenticated: invalid" in part
        assert "alice: Calculator.Add -> 5" in part
        assert "alice: Admin.WhoAmI -> PERMISSION_DENIED" in part
        assert "mTLS billing: Admin.WhoAmI -> spiffe://example/billing" in part
        assert "ops: Admin.WhoAmI -> (token)" in part
