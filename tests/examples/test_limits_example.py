"""examples/limits.py: tighter budgets, three offenders told why, the well-behaved client
served before and after."""

from __future__ import annotations

import subprocess
import sys

from support.servers import ROOT


def test_limits_example() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "limits.py")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "well-behaved: 2 + 3 = 5" in out
    assert ("half a frame, then silence -> RESOURCE_EXHAUSTED: frame not completed within 1s "
            "(limits.frame_timeout)") in out
    assert "a PING flood -> RESOURCE_EXHAUSTED: more than 50 control frames" in out
    assert "call id 7 twice -> INTERNAL: call id 7 reused while that call is in flight" in out
    assert "well-behaved again: 4 + 5 = 9" in out
