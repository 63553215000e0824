"""examples/protocol_stack.py runs and shows each layer: quic:// with TLS, a resumed 0-RTT
repeat client, a migrated client, Avro evolution and a FlatBuffers table."""

from __future__ import annotations

import re
import subprocess
import sys

from support.servers import ROOT


def test_protocol_stack_example() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "protocol_stack.py")],
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert re.search(r"serving quic://127\.0\.0\.1:\d+ \(TLS 1\.3, ALPN wirecall\)", out)
    assert "Shop.Add(10, 5) = 15" in out
    assert "repeat client: resumed=True 0-RTT accepted=True (1 + 2 = 3)" in out
    moved = re.search(r"moved to 127\.0\.0\.1:(\d+): quic from 127\.0\.0\.1:(\d+)", out)
    assert moved and moved.group(1) == moved.group(2)  # the server sees the new address
    assert "avro, old client -> new server: order 7: tea (priority 5)" in out
    assert "flatbuffers Shop.Double(Vec(3, 4)) = Vec(6, 8)" in out
    assert "protocol stack example done" in out
