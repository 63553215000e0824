"""examples/observability.py: one trace across two hops, access log, dashboard snapshot and
metrics, as the example prints them."""

from __future__ import annotations

import subprocess
import sys

from support.servers import ROOT


def test_observability_example() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "observability.py")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "ordered apple (5 left)" in out
    assert ("trace: Shop.Order(client) -> Shop.Order(server) -> Inventory.Stock(client) -> "
            "Inventory.Stock(server)") in out
    assert "access: http  Shop.Order       NOT_FOUND" in out
    assert "dashboard: Inventory.Stock  tcp   2 calls, errors 50%" in out
    assert ('metrics: wirecall_server_calls_total{method="Order",service="Shop",status="OK",'
            'wire="http"} 1.0') in out
    assert out.rstrip().endswith("done")
