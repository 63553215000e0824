"""examples/cluster_discovery.py runs against a real etcd and a real ZooKeeper, and without a
registry (static://), and shows what it says."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from support.etcd import etcd_server  # noqa: F401  (fixtures)
from support.servers import ROOT
from support.zookeeper import zookeeper_server  # noqa: F401

EXAMPLE = str(ROOT / "examples" / "cluster_discovery.py")


@pytest.mark.parametrize("registry", ["etcd", "zk", None])
def test_cluster_example(registry: str | None, request: pytest.FixtureRequest) -> None:
    args = []
    if registry is not None:
        server: Any = request.getfixturevalue("etcd_server" if registry == "etcd"
                                              else "zookeeper_server")
        args = ["--registry", server.url]
    r = subprocess.run([sys.executable, EXAMPLE, *args], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert ": 3 endpoints" in out
    assert "spread: {'s0': " in out and "'s2': " in out
    assert "hedged call: 42" in out
    assert "cluster example done" in out
    if registry is not None:
        assert "a 4th server joined; it answered True" in out
        assert "s0 left gracefully under load: 600 calls, 0 failed" in out
        assert "'endpoint_removed': 1" in out
