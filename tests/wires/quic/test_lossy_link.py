"""The benchmark's lossy link (``benchmarks/lossy_link.py``): two network namespaces joined
by TUN devices and a forwarder that delays and drops packets. Checked with real UDP traffic
between the namespaces: the delay shows in the round trip, the loss in the replies, and
both namespaces are gone afterwards. (netem is not in this sandbox's kernel: see
docs/protocol-stack.md.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "benchmarks"
sys.path.insert(0, str(BENCH))

from lossy_link import TunLink  # noqa: E402

PROBE = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(float(sys.argv[2]))
ok, rtts = 0, []
for i in range(int(sys.argv[1])):
    t = time.perf_counter()
    s.sendto(b"%d" % i, ("10.178.0.1", 9999))
    try:
        while s.recv(16) != b"%d" % i:
            pass
        ok += 1
        rtts.append(time.perf_counter() - t)
    except TimeoutError:
        pass
print(ok, sorted(rtts)[len(rtts) // 2] if rtts else -1)
"""

ECHO = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.178.0.1", 9999))
print("ready", flush=True)
while True:
    d, a = s.recvfrom(64)
    s.sendto(d, a)
"""


def probe(ns: str, n: int, wait: float = 0.3) -> tuple[int, float]:
    r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", PROBE, str(n), str(wait)],
                       capture_output=True, text=True, timeout=60, check=True)
    ok, rtt = r.stdout.split()
    return int(ok), float(rtt)


def namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                          check=True).stdout


def test_the_tun_link_delays_drops_and_cleans_up() -> None:
    if os.geteuid() != 0:
        pytest.fail("the lossy link needs root (CAP_NET_ADMIN) for ip netns and /dev/net/tun")
    a, b = f"wcta{os.getpid() % 10000}", f"wctb{os.getpid() % 10000}"
    with TunLink(a, b, "10.178.0.1", "10.178.0.2") as link:
        assert a in namespaces() and b in namespaces()
        echo = subprocess.Popen(["ip", "netns", "exec", a, sys.executable, "-c", ECHO],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
            link.set(10, 0)
            ok, rtt = probe(b, 20)
            assert ok == 20
            assert 0.019 <= rtt < 0.2  # 10 ms each way
            link.set(1, 100)
            ok, _ = probe(b, 5, 0.1)
            assert ok == 0  # every packet dropped
            link.set(1, 50)  # each way: about a quarter of the round trips survive
            ok, _ = probe(b, 80, 0.08)
            assert 5 <= ok <= 45
        finally:
            echo.kill()
            echo.wait(5)
    time.sleep(0.1)
    assert a not in namespaces() and b not in namespaces()
